"""The demonstration optimisation shipped in models_app/demo runs like a real HBP model.

Each test works on a copy of the folder in tmp_path: the mechanisms are compiled there and
opt_neuron.py is run as a user (or an HPC job) would, with the same Python.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_NAME = "CA1_pyr_cACpyr_ballstick3_20261101120000"
DEMO = ROOT / "models_app" / "demo" / DEMO_NAME
META = ROOT / "models_app" / "demo" / f"{DEMO_NAME}_meta.json"
KEY = "CA1_PC_demo"
NRNIVMODL = Path(sys.executable).parent / "nrnivmodl"

# The legacy signature of the 2018-2023 HBP models; current BluePyOpt passes
# axon_stub_length=..., so it needs **kwargs to run.
LEGACY_REPLACE_AXON = re.compile(r"def replace_axon\(\s*sim=None,\s*icell=None\s*\)")
CHECKPOINT_KEYS = {
    "population",
    "generation",
    "parents",
    "halloffame",
    "history",
    "logbook",
    "rndstate",
}


def load_checkpoint(path: Path) -> dict:
    with open(path, "rb") as cp_file:
        return pickle.load(cp_file, encoding="latin1")


def run_env() -> dict:
    env = dict(os.environ, BLUEPYOPT_SEED="1")
    for name in ("USEIPYP", "DISPLAY", "MPLBACKEND", "PYTHONPATH"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def copy_demo(dest: Path, fix: bool) -> Path:
    """Copy the demo folder, optionally apply the replace_axon fix, compile the mechanisms"""
    folder = dest / DEMO_NAME
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    if fix:
        template = folder / "model" / "template.py"
        text, count = LEGACY_REPLACE_AXON.subn(
            "def replace_axon(sim=None, icell=None, **kwargs)", template.read_text()
        )
        assert count == 1
        template.write_text(text)
    build = subprocess.run(
        [str(NRNIVMODL), "mechanisms"],
        cwd=folder,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return folder


def opt_neuron(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "opt_neuron.py", *args],
        cwd=folder,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def fixed_copy(tmp_path_factory) -> Path:
    return copy_demo(tmp_path_factory.mktemp("demo_fixed"), fix=True)


@pytest.fixture(scope="module")
def started(fixed_copy) -> Path:
    """The fixed copy after a 2 x 2 optimisation"""
    result = opt_neuron(
        fixed_copy,
        "--start",
        "--offspring_size=2",
        "--max_ngen=2",
        "--checkpoint",
        "./checkpoints/checkpoint.pkl",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return fixed_copy


def test_shipped_folder_is_a_complete_optimisation():
    """Layout, one config key used by opt_neuron.py, the meta file and the best run"""
    for name in ("features", "parameters", "protocols", "morph"):
        config = json.loads((DEMO / "config" / f"{name}.json").read_text())
        assert list(config) == [KEY]
    assert f"model.evaluator.create('{KEY}'" in (DEMO / "opt_neuron.py").read_text()
    morph = json.loads((DEMO / "config" / "morph.json").read_text())[KEY]
    assert (DEMO / "morphology" / morph).is_file()
    assert list((DEMO / "mechanisms").glob("*.mod"))
    for path in (
        "__init__.py",
        "model/__init__.py",
        "model/analysis.py",
        "model/evaluator.py",
        "model/template.py",
    ):
        assert (DEMO / path).is_file()
    # shipped without build products, figures or traces
    leftovers = [
        p.name for p in DEMO.iterdir() if p.name in ("x86_64", "figures") or p.name.startswith("r_")
    ]
    assert leftovers == []
    assert not list(DEMO.rglob("__pycache__"))
    # the legacy signature is kept on purpose
    assert len(LEGACY_REPLACE_AXON.findall((DEMO / "model" / "template.py").read_text())) == 1

    meta = json.loads(META.read_text())
    assert meta["fitting_name"] == KEY
    assert meta["e-type"] == "cACpyr" and meta["cell_type"] == "pyramidal"
    cp = load_checkpoint(DEMO / "checkpoints" / meta["best_run"])
    assert CHECKPOINT_KEYS <= set(cp)
    assert len(cp["logbook"]) == meta["max_ngen"]
    assert (DEMO / "checkpoints" / meta["best_cell"]).is_file()


@pytest.mark.slow
def test_start_writes_a_checkpoint(started):
    cp = load_checkpoint(started / "checkpoints" / "checkpoint.pkl")
    assert CHECKPOINT_KEYS <= set(cp)
    assert cp["logbook"].select("gen") == [1, 2]
    assert len(cp["halloffame"]) > 0


@pytest.mark.slow
def test_continue_cp_resumes_the_checkpoint(started):
    result = opt_neuron(
        started,
        "--continue_cp",
        "--offspring_size=2",
        "--max_ngen=3",
        "--checkpoint",
        "./checkpoints/checkpoint.pkl",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cp = load_checkpoint(started / "checkpoints" / "checkpoint.pkl")
    assert cp["logbook"].select("gen") == [1, 2, 3]


@pytest.mark.slow
def test_analyse_writes_figures_and_hoc_headless(started):
    result = opt_neuron(started, "--analyse", "--checkpoint", "./checkpoints")
    assert result.returncode == 0, result.stdout + result.stderr
    for run in ("checkpoint", "seed1"):
        for kind in ("responses", "objectives", "evolution"):
            assert (started / "figures" / f"neuron_{kind}_{run}_0.pdf").stat().st_size > 0
        hoc = (started / "checkpoints" / f"cell_{run}_0.hoc").read_text()
        assert f"begintemplate {KEY}" in hoc and "proc replace_axon()" in hoc
        trace = started / f"r_{run}_0" / "step_0.5.soma.v.txt"
        assert trace.read_text().splitlines()[0] == "t v"


@pytest.mark.slow
def test_unfixed_legacy_replace_axon_fails_with_type_error(tmp_path):
    folder = copy_demo(tmp_path, fix=False)
    result = opt_neuron(
        folder,
        "--start",
        "--offspring_size=2",
        "--max_ngen=2",
        "--checkpoint",
        "./checkpoints/checkpoint.pkl",
    )
    assert result.returncode != 0
    error = re.search(r"TypeError: .*replace_axon\(\).*axon_stub_length", result.stderr)
    assert error, result.stderr
    assert not (folder / "checkpoints" / "checkpoint.pkl").exists()
