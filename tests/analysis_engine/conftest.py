"""Analyses of the demonstration model, built once per test session.

The NSG-shaped output.tar.gz is made the way NSG makes it: the demo's run package is
unzipped, its mechanisms compiled with nrnivmodl, `python init.py` run (2 generations of 2),
and the job folder packed with `./` member names beside NSG's control files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from analysis_app.engine import analyse
from models_app.bpo.archive import extract_zip
from models_app.bpo.package import build_package

ROOT = Path(__file__).resolve().parents[2]
DEMO_NAME = "CA1_pyr_cACpyr_ballstick3_20261101120000"
DEMO = ROOT / "models_app" / "demo" / DEMO_NAME
KEY = "CA1_PC_demo"
RUN_NAME = "CA1_pyr_cACpyr_ballstick3_20261125120000"
# The demo's best run, as stored in checkpoints/seed1.pkl.
SEED1_STORED_FITNESS = 8.47


def run_environment() -> dict[str, str]:
    env = dict(os.environ, BLUEPYOPT_SEED="1", MPLBACKEND="Agg")
    for name in ("USEIPYP", "DISPLAY"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def copy_demo(dest: Path, *, checkpoints: bool = True) -> Path:
    """A copy of the demo model folder to change; without checkpoints/ when asked."""
    folder = dest / DEMO_NAME
    shutil.copytree(
        DEMO,
        folder,
        ignore=shutil.ignore_patterns(
            "x86_64", "__pycache__", *(() if checkpoints else ("*.pkl",))
        ),
    )
    return folder


def unpacked_package(dest: Path, *, max_ngen: int = 2) -> Path:
    """The demo's run package built and unzipped in ``dest/job``; returns the run folder."""
    zip_path = dest / "package.zip"
    build_package(DEMO, run_name=RUN_NAME, offspring_size=2, max_ngen=max_ngen, out=zip_path)
    extract_zip(zip_path, dest / "job")
    shutil.copyfile(zip_path, dest / "job" / "inputfile")
    return dest / "job" / RUN_NAME


def pack_nsg_output(job: Path, tarball: Path) -> Path:
    """``job`` as NSG's output.tar.gz: control files beside the run folder, names ``./...``."""
    control = {
        "_COMMANDLINE": "python3 init.py\n",
        "_JOBINFO.TXT": "JobHandle=NGBW-JOB-BLUEPYOPT_EXPANSE-TEST\n",
        "scheduler.conf": "fname=init.py\nnrnivmodloption=1\nnodes=1\n",
        "batch_command.cmdline": f"cd {RUN_NAME}\nnrnivmodl mechanisms\nrunit python3 init.py\n",
        "start.txt": "Job starting at Tue Nov 25 12:00:00 PST 2026\n",
        "done.txt": "Job finished at Tue Nov 25 12:05:00 PST 2026\n",
    }
    for name, text in control.items():
        (job / name).write_text(text)
    for name in ("stdout.txt", "stderr.txt", "scheduler_stdout.txt", "scheduler_stderr.txt"):
        (job / name).touch()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(job, arcname=".")
    return tarball


@pytest.fixture(scope="session")
def nsg_output(tmp_path_factory) -> Path:
    """NSG's output.tar.gz of a real 2 x 2 run of the demo's package."""
    dest = tmp_path_factory.mktemp("nsg_job")
    run_folder = unpacked_package(dest)
    env = run_environment()
    for command in (["nrnivmodl", "mechanisms"], [sys.executable, "init.py"]):
        result = subprocess.run(
            command, cwd=run_folder, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        with open(dest / "job" / "stdout.txt", "a") as stdout:
            stdout.write(result.stdout)
    assert (run_folder / "checkpoints" / "checkpoint.pkl").is_file()
    # nrnivmodl's folders on NSG hold links; the analysis must skip them.
    (run_folder / "x86_64" / "libnrnmech-link.so").symlink_to("libnrnmech.so")
    return pack_nsg_output(dest / "job", dest / "output.tar.gz")


@pytest.fixture(scope="session")
def analysis_cache(tmp_path_factory) -> Path:
    """The compiled mechanisms cache of the two analyses below only (empty at first)."""
    return tmp_path_factory.mktemp("analysis_cache")


@pytest.fixture(scope="session")
def mechanisms_cache(tmp_path_factory) -> Path:
    """The compiled mechanisms cache of the other tests."""
    return tmp_path_factory.mktemp("mechanisms_cache")


@pytest.fixture(scope="session")
def catalogue_analysis(tmp_path_factory, analysis_cache):
    """The catalogue demo model's best run (checkpoints/seed1.pkl), the first analysis."""
    out = tmp_path_factory.mktemp("catalogue") / "analysis"
    progress = out.parent / "progress.json"
    return analyse(DEMO, out, mechanisms_cache=analysis_cache, progress_file=progress)


@pytest.fixture(scope="session")
def nsg_analysis(tmp_path_factory, nsg_output, analysis_cache, catalogue_analysis):
    """The NSG output's checkpoint, analysed after the catalogue model (same mechanisms)."""
    out = tmp_path_factory.mktemp("nsg") / "analysis"
    return analyse(nsg_output, out, mechanisms_cache=analysis_cache, top=2)
