"""``python -m nsg_app.local``: progress on the terminal, result.json, exit codes, cancel file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from nsg_app.local import cli
from nsg_app.local.cli import main, read_result

from .conftest import ROOT, SLEEPING_INIT, python_package


def start_cli(*arguments: str, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nsg_app.local", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, BLUEPYOPT_SEED="1"),
        **options,
    )


@pytest.mark.slow
def test_the_command_shows_progress_and_exits_0(demo_package, mechanisms_cache, tmp_path):
    process = start_cli(
        str(demo_package),
        "-o",
        str(tmp_path / "run"),
        "--cores",
        "2",
        "--mechanisms-cache",
        str(mechanisms_cache),
    )
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stdout + stderr
    assert "preparing:" in stdout
    assert "gen 2/2 | evals 8/8 | best" in stdout
    assert "Status:     completed" in stdout
    result = read_result(tmp_path / "run" / "result.json")
    assert result is not None and result.checkpoint_found and result.cores == 2
    assert (tmp_path / "run" / "progress.json").is_file()


def test_the_cancel_file_cancels_and_the_exit_code_says_so(tmp_path):
    package = python_package(tmp_path / "sleep.zip", SLEEPING_INIT)
    cancel = tmp_path / "cancel-now"
    progress = tmp_path / "elsewhere" / "progress.json"
    progress.parent.mkdir()
    process = start_cli(
        str(package),
        "-o",
        str(tmp_path / "run"),
        "--cores",
        "1",
        "--progress-file",
        str(progress),
        "--cancel-file",
        str(cancel),
        "--mechanisms-cache",
        str(tmp_path / "cache"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stdout_file = tmp_path / "run" / "STDOUT"
        if stdout_file.exists() and "started" in stdout_file.read_text():
            break
        time.sleep(0.1)
    cancel.touch()
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 4, stdout + stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "cancelled"
    assert json.loads(progress.read_text())["phase"] == "cancelled"


def test_unusable_arguments_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.zip"), "-o", str(tmp_path / "run")]) == 2
    assert "No package" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path / "p.zip"), "-o", str(tmp_path), "--cores", "-1"])
    assert exited.value.code == 2


def test_a_runner_bug_still_leaves_a_failed_result(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("bug in the runner")

    monkeypatch.setattr(cli, "run_package", broken)
    assert main([str(tmp_path / "p.zip"), "-o", str(tmp_path / "run")]) == 1
    result = read_result(tmp_path / "run" / "result.json")
    assert result.status.value == "failed" and "bug in the runner" in result.reason
    assert "Traceback" in capsys.readouterr().err
