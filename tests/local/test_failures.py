"""A run whose protocols fail in NEURON: `manage.py run_local` says which protocol failed and
NEURON's own error. The package is the model's, unmodified: the injection finds the error."""

from __future__ import annotations

import re
import zipfile
from io import StringIO

import pytest
from django.core.management import call_command

from models_app.bpo.package import build_package
from nsg_app.local.cli import read_result
from tests.fixtures.demo import demo_missing_mechanism, protocol_failure_pattern

from .conftest import RUN_NAME

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "in-process"])
def test_run_local_names_the_failed_protocol_and_neuron_s_error(
    tmp_path, mechanisms_cache, isolate
):
    model = demo_missing_mechanism(tmp_path / "model", isolate=isolate)
    package = tmp_path / "package.zip"
    build_package(model, run_name=RUN_NAME, offspring_size=2, max_ngen=2, out=package)
    with zipfile.ZipFile(package) as archive:  # what goes to NSG: the model's own code
        evaluator = archive.read(f"{RUN_NAME}/model/evaluator.py").decode()
    assert f"isolate_protocols={isolate}" in evaluator
    stdout = StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command(
            "run_local",
            str(package),
            "-o",
            str(tmp_path / "run"),
            "--cores",
            "2",
            "--mechanisms-cache",
            str(mechanisms_cache),
            stdout=stdout,
        )

    assert exited.value.code == 1
    printed = stdout.getvalue()
    status = next(line for line in printed.splitlines() if line.startswith("Status:"))
    assert status.startswith("Status:     failed: init.py exited with code 1: Protocol ")
    assert re.search(protocol_failure_pattern(), status), printed
    result = read_result(tmp_path / "run" / "result.json")
    assert re.search(protocol_failure_pattern(), result.reason)
    # STDERR keeps BluePyOpt's traceback, followed by the same explanation
    stderr = (tmp_path / "run" / "STDERR").read_text()
    assert "Failed to run Neuron Sweep Protocol" in stderr
    assert re.search(protocol_failure_pattern(), stderr.strip().splitlines()[-1])
