"""The packaged run really works: python init.py writes a checkpoint."""

import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from models_app.bpo.mechanisms import compile_mechanisms, install_mechanisms
from models_app.services import package_create


@pytest.mark.slow
@pytest.mark.django_db
def test_python_init_py_with_offspring_2_and_2_generations_writes_a_checkpoint(
    tmp_path, alice, demo_model
):
    package = package_create(optimisation=demo_model, owner=alice, offspring_size=2, max_ngen=2)
    with default_storage.open(package.file, "rb") as handle:
        zipfile.ZipFile(handle).extractall(tmp_path)
    run = tmp_path / package.run_name
    install_mechanisms(compile_mechanisms(run / "mechanisms", cache_dir=tmp_path / "cache"), run)

    result = subprocess.run(
        [sys.executable, "init.py"], cwd=run, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = Path(run / "checkpoints" / "checkpoint.pkl")
    with open(checkpoint, "rb") as handle:
        state = pickle.load(handle, encoding="latin1")
    assert len(state["logbook"]) == 2
