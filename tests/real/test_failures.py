"""The real HBP model with most of its mechanisms missing, as a partial catalogue download
has it: the analysis names the failed protocol and the mechanism NEURON does not know.

Reads the reference models from $MODELS (default ``<repository>/../shared/reference/models``)
and fails, never skips, when they are not there. About a minute: the two mechanisms left
are compiled, then every protocol fails at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from analysis_app.engine import AnalysisError, analyse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "W_20230711100058"
KEPT_MOD_FILES = ("h.mod", "kmb.mod")  # 2 of its 12, like the download that had only 2
_SUFFIX = re.compile(r"^\s*(?:SUFFIX|POINT_PROCESS)\s+(\w+)", re.MULTILINE)


def models_folder() -> Path:
    return Path(os.environ.get("MODELS") or ROOT.parent / "shared" / "reference" / "models")


@pytest.fixture
def partial_model(tmp_path) -> tuple[Path, set[str]]:
    """A copy of the real model without most .mod files; the mechanisms that went with them."""
    original = models_folder() / MODEL_NAME
    assert original.is_dir(), (
        f"The reference model {original} is missing: set MODELS to the folder holding "
        f"{MODEL_NAME}/."
    )
    copy = tmp_path / MODEL_NAME
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    removed = set()
    for mod in sorted((copy / "mechanisms").glob("*.mod")):
        if mod.name not in KEPT_MOD_FILES:
            removed.update(_SUFFIX.findall(mod.read_text(errors="replace")))
            mod.unlink()
    assert sorted(path.name for path in (copy / "mechanisms").glob("*.mod")) == sorted(
        KEPT_MOD_FILES
    )
    return copy, removed


def test_the_real_model_names_the_protocol_and_the_missing_mechanism(partial_model, tmp_path):
    folder, removed = partial_model
    protocols = set(json.loads((folder / "config" / "protocols.json").read_text())[MODEL_NAME])

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
