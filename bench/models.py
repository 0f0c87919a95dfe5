"""The models the benchmarks run on, and how their own scripts are run.

- the demo (``models_app/demo``), small and fast, with variants built from it by each bench;
- the reference model: the real HBP CA1 optimisation of ``../shared/reference/models``
  (read-only, never copied into the repository; ``MODELS`` names another models folder).

Benchmarks that take a model take one of ``MODEL_NAMES``; each works on a temporary copy.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from models_app.bpo.layout import is_never_copied

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models_app" / "demo" / "CA1_pyr_cACpyr_ballstick3_20261101120000"
REFERENCE_NAME = "W_20230711100058"
MODELS_VARIABLE = "MODELS"
DEFAULT_MODELS = ROOT.parent / "shared" / "reference" / "models"
MODEL_NAMES = ("demo", "reference")
SEED = "1"


def reference_model() -> Path:
    """The reference model's folder (under ``$MODELS``, default ../shared/reference/models)."""
    folder = Path(os.environ.get(MODELS_VARIABLE) or DEFAULT_MODELS) / REFERENCE_NAME
    if not (folder / "opt_neuron.py").is_file():
        raise FileNotFoundError(
            f"The reference model is not at {folder}; set {MODELS_VARIABLE} to the folder "
            f"that holds {REFERENCE_NAME}/."
        )
    return folder


def model_folder(model: str) -> Path:
    """The original folder of the model named ``model`` (one of MODEL_NAMES)."""
    if model == "demo":
        return DEMO
    if model == "reference":
        return reference_model()
    raise ValueError(f"Unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}.")


def copy_model(source: Path, destination: Path) -> Path:
    """A writable copy of ``source`` without what never travels with a model (x86_64/, caches)."""
    shutil.copytree(
        source,
        destination,
        ignore=lambda directory, names: [
            name for name in names if is_never_copied(Path(directory) / name)
        ],
    )
    # The reference folder is read-only, and copytree keeps the modes.
    for folder, _, files in os.walk(destination):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return destination


def script_environment() -> dict[str, str]:
    """The environment a model's own scripts run in, as their users ran them: this Python's
    tools first on PATH, the seed set, no display, nothing of the local runner or of NSG."""
    env = dict(os.environ, BLUEPYOPT_SEED=SEED, MPLBACKEND="Agg")
    for name in ("USEIPYP", "IPYTHON_PROFILE", "PYTHONPATH", "REBUILD_LOCAL_CORES", "DISPLAY"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
