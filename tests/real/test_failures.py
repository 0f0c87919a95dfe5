"""The real HBP model with most of its mechanisms missing, as a partial catalogue download
has it: the analysis names the failed protocol and the mechanism NEURON does not know.

Once per model of the tier's MODELS folder (tests/real/conftest.py). About a minute: the two
mechanisms left are compiled, then every protocol fails at once.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from analysis_app.engine import AnalysisError, analyse

pytestmark = pytest.mark.slow

KEPT_MOD_FILES = 2  # like the catalogue download that had 2 of its 12
_SUFFIX = re.compile(r"^\s*(?:SUFFIX|POINT_PROCESS)\s+(\w+)", re.MULTILINE)


@pytest.fixture
def partial_model(real_model, tmp_path) -> tuple[Path, set[str]]:
    """A copy of the real model without most .mod files; the mechanisms that went with them."""
    original = real_model.folder
    copy = tmp_path / real_model.name
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    removed = set()
    for mod in sorted((copy / "mechanisms").glob("*.mod"))[:-KEPT_MOD_FILES]:
        removed.update(_SUFFIX.findall(mod.read_text(errors="replace")))
        mod.unlink()
    assert len(list((copy / "mechanisms").glob("*.mod"))) == KEPT_MOD_FILES
    return copy, removed


def test_the_real_model_names_the_protocol_and_the_missing_mechanism(
    real_model, partial_model, tmp_path
):
    folder, removed = partial_model
    protocols = set(real_model.protocols)

    with pytest.raises(AnalysisError) as caught:
        analyse(
            folder,
            tmp_path / "analysis",
            mechanisms_cache=tmp_path / "mechanisms-cache",
            timeout=600,
        )

    error = caught.value
    assert error.kind == "model_error", error.message
    found = re.match(
        r"Protocol (\S+) failed: ValueError: argument not a density mechanism name\.?: (\w+)$",
        error.message,
    )
    assert found, error.message
    assert found[1] in protocols
    assert found[2] in removed
    assert "Failed to run Neuron Sweep Protocol" not in error.message
