"""Run packages for the local backend's tests, built by code.

The NEURON ones come from the demo model through ``build_package``, as the site builds them;
the others are tiny zips whose init.py needs nothing but Python.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from models_app.bpo.package import build_package

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models_app" / "demo" / "CA1_pyr_cACpyr_ballstick3_20261101120000"
RUN_NAME = "CA1_pyr_cACpyr_ballstick3_20260101000000"
CRASH_MESSAGE = "deliberate crash of the test model"


def load_checkpoint(path: Path) -> dict:
    with open(path, "rb") as file:
        return pickle.load(file, encoding="latin1")


def tar_members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def tar_text(path: Path, member: str) -> str:
    with tarfile.open(path) as tar:
        extracted = tar.extractfile(member)
        assert extracted is not None
        return extracted.read().decode()


def processes_under(folder: Path) -> set[int]:
    """Pids of the live processes whose working directory is inside ``folder``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if (cwd == folder or folder in cwd.parents) and is_alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def is_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (a zombie runs nothing any more)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def python_package(path: Path, init_script: str, *, top: str = "job") -> Path:
    """A package whose init.py is ``init_script``: no model, no mechanisms."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{top}/", b"")
        archive.writestr(f"{top}/init.py", textwrap.dedent(init_script))
    path.write_bytes(buffer.getvalue())
    return path


# Starts a grandchild and then waits: its whole process tree must be stopped.
SLEEPING_INIT = """
    import subprocess, sys, time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print("started", child.pid, flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope="session")
def mechanisms_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mechanisms-cache")


@pytest.fixture(scope="session")
def demo_package(tmp_path_factory) -> Path:
    """The demo optimisation, 4 offspring, 2 generations: about 3 s serial."""
    out = tmp_path_factory.mktemp("packages") / "demo.zip"
    build_package(DEMO, run_name=RUN_NAME, offspring_size=4, max_ngen=2, out=out)
    return out


@pytest.fixture(scope="session")
def long_package(tmp_path_factory) -> Path:
    """The demo optimisation, 8 offspring, 4 generations: long enough to be stopped."""
    out = tmp_path_factory.mktemp("packages") / "long.zip"
    build_package(DEMO, run_name=RUN_NAME, offspring_size=8, max_ngen=4, out=out)
    return out


@pytest.fixture(scope="session")
def crash_package(tmp_path_factory) -> Path:
    """The demo model whose opt_neuron.py raises after creating its evaluator."""
    source = tmp_path_factory.mktemp("crashing") / DEMO.name
    shutil.copytree(DEMO, source, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    script = source / "opt_neuron.py"
    text = script.read_text()
    assert "\nopt = bluepyopt" in text
    script.write_text(
        text.replace(
            "\nopt = bluepyopt", f"\nraise RuntimeError({CRASH_MESSAGE!r})\nopt = bluepyopt", 1
        )
    )
    out = source.parent / "crash.zip"
    build_package(source, run_name=RUN_NAME, offspring_size=2, max_ngen=2, out=out)
    return out


@pytest.fixture(scope="session")
def isolated_package(tmp_path_factory) -> Path:
    """The demo package with BluePyOpt's default isolated protocols, as the HBP models have:

    each protocol then runs in a process forked from the evaluating one, which a daemonic
    pool worker could not start.
    """
    source = tmp_path_factory.mktemp("isolated") / DEMO.name
    shutil.copytree(DEMO, source, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    evaluator = source / "model" / "evaluator.py"
    text = evaluator.read_text()
    assert text.count("isolate_protocols=False") == 1
    evaluator.write_text(text.replace("isolate_protocols=False", "isolate_protocols=True"))
    out = source.parent / "isolated.zip"
    build_package(source, run_name=RUN_NAME, offspring_size=4, max_ngen=2, out=out)
    return out
