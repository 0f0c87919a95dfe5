"""A protocol that fails in NEURON: the analysis names the protocol and NEURON's error."""

from __future__ import annotations

import re

import pytest

from analysis_app.engine import AnalysisError, analyse, read_progress
from tests.fixtures.demo import MISSING_MECHANISM, demo_missing_mechanism, protocol_failure_pattern

pytestmark = pytest.mark.slow


def test_a_mechanism_no_mod_file_defines_is_named_with_its_protocol(tmp_path, mechanisms_cache):
    folder = demo_missing_mechanism(tmp_path / "model")
    progress_file = tmp_path / "progress.json"

    with pytest.raises(AnalysisError) as caught:
        analyse(
            folder,
            tmp_path / "analysis",
            mechanisms_cache=mechanisms_cache,
            progress_file=progress_file,
        )

    error = caught.value
    assert error.kind == "model_error"
    assert re.search(protocol_failure_pattern(), error.message), error.message
    assert error.message.startswith(f"Protocol {error.details['protocol']} failed:")
    assert "Failed to run Neuron Sweep Protocol" not in error.message
    assert "mechanisms.py" in error.details["traceback"]  # where NEURON refused it
    progress = read_progress(progress_file)
    assert progress["stage"] == "failed" and progress["message"] == error.message
    assert MISSING_MECHANISM in progress["message"]
    assert not (tmp_path / "analysis" / "analysis.json").exists()
