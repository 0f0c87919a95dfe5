"""run_package with packages that need no NEURON: refusals, failures, signals, the tarball."""

from __future__ import annotations

import os
import signal
import threading
import zipfile

import pytest

from nsg_app.local import RunStatus, read_progress, run_package
from nsg_app.local.runner import resolve_cores

from .conftest import SLEEPING_INIT, is_alive, processes_under, python_package, tar_members


def run(package, work_dir, tmp_path, **options):
    options.setdefault("runtime_seconds", 60)
    return run_package(
        package,
        work_dir,
        cores=1,
        mechanisms_cache=tmp_path / "cache",
        progress_file=work_dir / "progress.json",
        **options,
    )


def test_a_zip_with_two_top_folders_fails_before_running(tmp_path):
    package = tmp_path / "two.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("a/init.py", "print(1)")
        archive.writestr("b/init.py", "print(2)")
    result = run(package, tmp_path / "work", tmp_path)
    assert result.status is RunStatus.FAILED and result.exit_code is None
    assert "exactly one" in result.reason
    assert result.reason in result.stderr_path.read_text()
    members = tar_members(result.output_path)
    assert {"./inputfile", "./_JOBINFO.TXT", "./start.txt", "./done.txt", "./stderr.txt"} <= set(
        members
    )
    assert read_progress(tmp_path / "work" / "progress.json").phase == "failed"


def test_an_unsafe_zip_fails_with_the_archive_problem(tmp_path):
    package = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("job/init.py", "")
        archive.writestr("../escape.py", "")
    result = run(package, tmp_path / "work", tmp_path)
    assert result.status is RunStatus.FAILED
    assert "cannot be unpacked" in result.reason and ".." in result.reason
    assert not (tmp_path / "escape.py").exists()


def test_a_package_without_init_py_fails(tmp_path):
    package = tmp_path / "noinit.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("job/run.py", "")
    result = run(package, tmp_path / "work", tmp_path)
    assert result.status is RunStatus.FAILED and "no init.py" in result.reason
    assert "./job/run.py" in tar_members(result.output_path)


def test_a_script_runs_in_its_top_folder_and_its_output_is_kept(tmp_path):
    package = python_package(
        tmp_path / "ok.zip",
        """
        import os, sys
        print("working in", os.path.basename(os.getcwd()))
        print("to stderr", file=sys.stderr)
        open("made.txt", "w").write("made")
        """,
    )
    result = run(package, tmp_path / "work", tmp_path)
    assert result.status is RunStatus.COMPLETED and result.exit_code == 0
    assert "no checkpoints/checkpoint.pkl" in result.reason and not result.checkpoint_found
    assert "working in job" in result.stdout_path.read_text()
    assert result.stderr_path.read_text() == "to stderr\n"
    members = tar_members(result.output_path)
    assert members[0] == "."
    assert {"./job/made.txt", "./stdout.txt", "./stderr.txt", "./done.txt"} <= set(members)
    assert "./STDOUT" not in members and "./output.tar.gz" not in members
    job_info = (tmp_path / "work" / "_JOBINFO.TXT").read_text()
    assert "user_input_dir=job" in job_info and "Tool=LOCAL_BLUEPYOPT" in job_info


def test_a_non_zero_exit_is_a_failure_with_the_traceback(tmp_path):
    package = python_package(
        tmp_path / "crash.zip",
        """
        print("noise before")
        def explode():
            raise KeyError("missing thing")
        explode()
        """,
    )
    result = run(package, tmp_path / "work", tmp_path)
    assert result.status is RunStatus.FAILED and result.exit_code == 1
    assert result.reason == "init.py exited with code 1: KeyError: 'missing thing'"
    assert result.stderr_tail.splitlines()[0] == "Traceback (most recent call last):"


def test_sigterm_to_the_runner_cancels_and_kills_the_tree(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the runner handles SIGTERM only in the main thread")
    package = python_package(tmp_path / "sleep.zip", SLEEPING_INIT)
    work = tmp_path / "work"
    seen: set[int] = set()

    def send_sigterm_once_started() -> bool:
        if "started" in (work / "STDOUT").read_text() and not seen:
            seen.update(processes_under(work))
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    handler = signal.getsignal(signal.SIGTERM)
    result = run(package, work, tmp_path, cancel_check=send_sigterm_once_started)
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    assert result.status is RunStatus.CANCELLED and "SIGTERM" in result.reason
    # The script and its child (and, around them, the sandbox's own processes).
    assert len(seen) >= 2 and not [pid for pid in seen if is_alive(pid)]
    assert result.exit_code == -signal.SIGTERM
    stderr = result.stderr_path.read_text()
    assert "CANCELLED AT" in stderr and "DUE TO" not in stderr


def test_a_script_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    package = python_package(
        tmp_path / "stubborn.zip",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("started", flush=True)
        time.sleep(120)
        """,
    )
    result = run(package, tmp_path / "work", tmp_path, runtime_seconds=1)
    assert result.status is RunStatus.TIME_LIMIT
    assert result.exit_code == -signal.SIGKILL
    assert 1 <= result.elapsed_seconds < 8


def test_a_work_dir_holding_a_run_is_refused(tmp_path):
    package = python_package(tmp_path / "ok.zip", "print(1)")
    run(package, tmp_path / "work", tmp_path)
    with pytest.raises(FileExistsError):
        run(package, tmp_path / "work", tmp_path)


def test_bad_settings_are_refused(tmp_path):
    package = python_package(tmp_path / "ok.zip", "print(1)")
    with pytest.raises(FileNotFoundError):
        run(tmp_path / "missing.zip", tmp_path / "work", tmp_path)
    with pytest.raises(ValueError):
        run(package, tmp_path / "work", tmp_path, runtime_seconds=0)
    with pytest.raises(ValueError):
        resolve_cores(-1)
    assert resolve_cores(0) == resolve_cores(None) == os.cpu_count()
