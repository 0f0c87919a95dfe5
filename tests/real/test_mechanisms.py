"""A real model's mechanisms, compiled with NEURON's headers precompiled
(models_app/bpo/nrn_cxx.py), are byte for byte those nrnivmodl builds alone."""

from __future__ import annotations

import pytest

from tests.fixtures.mechanisms import built_files, compiled_both_ways

pytestmark = pytest.mark.slow


def test_the_mechanisms_build_to_the_same_bytes_with_the_header(real_model, tmp_path):
    mechanisms = real_model.folder / "mechanisms"
    mod_files = sorted(mechanisms.glob("*.mod"))
    plain, pch, used = compiled_both_ways(mechanisms, tmp_path)
    plain_files = built_files(plain)
    assert len(plain_files) == len(mod_files) + 2  # and mod_func.o, libnrnmech.so
    assert built_files(pch) == plain_files
    # all but the few compiled while the header was being built
    assert len(used) >= len(mod_files) // 2
