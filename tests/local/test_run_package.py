"""run_package on the demo model: checkpoints, parallel = serial, progress, stopping, failing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from models_app.bpo import mechanisms
from models_app.bpo.archive import extract_tar
from nsg_app.local import RunStatus, read_progress, run_package

from .conftest import (
    CRASH_MESSAGE,
    RUN_NAME,
    is_alive,
    load_checkpoint,
    processes_under,
    tar_members,
    tar_text,
)

pytestmark = pytest.mark.slow

SEED = {"BLUEPYOPT_SEED": "7"}
CHECKPOINT = f"{RUN_NAME}/checkpoints/checkpoint.pkl"


def run(package: Path, work_dir: Path, cache: Path, **options):
    options.setdefault("runtime_seconds", 300)
    return run_package(
        package,
        work_dir,
        mechanisms_cache=cache,
        progress_file=work_dir / "progress.json",
        extra_env=SEED,
        **options,
    )


@pytest.fixture(scope="module")
def parallel_run(demo_package, mechanisms_cache, tmp_path_factory):
    return run(demo_package, tmp_path_factory.mktemp("parallel"), mechanisms_cache, cores=2)


@pytest.fixture(scope="module")
def serial_run(demo_package, mechanisms_cache, tmp_path_factory):
    return run(demo_package, tmp_path_factory.mktemp("serial"), mechanisms_cache, cores=1)


def test_a_run_ends_with_a_checkpoint_in_an_nsg_like_tarball(parallel_run, tmp_path):
    result = parallel_run
    assert result.status is RunStatus.COMPLETED, result.stderr_tail
    assert result.exit_code == 0
    assert result.checkpoint_found
    assert result.stdout_path.name == "STDOUT" and result.stdout_path.is_file()
    assert result.stderr_path.name == "STDERR" and result.stderr_path.is_file()
    members = tar_members(result.output_path)
    assert all(name == "." or name.startswith("./") for name in members)
    for control in ("_JOBINFO.TXT", "start.txt", "done.txt", "stdout.txt", "stderr.txt"):
        assert f"./{control}" in members
    assert f"./{CHECKPOINT}" in members
    assert "./progress.json" not in members
    assert tar_text(result.output_path, "./stdout.txt") == result.stdout_path.read_text()
    assert "gen\tnevals" in result.stdout_path.read_text()
    # The results collector unpacks it with the project's safe extraction.
    extracted = extract_tar(result.output_path, tmp_path / "collected")
    assert (extracted.path / CHECKPOINT).is_file()


def test_two_cores_give_the_serial_logbook_for_the_same_seed(parallel_run, serial_run):
    assert serial_run.status is RunStatus.COMPLETED, serial_run.stderr_tail
    parallel = load_checkpoint(parallel_run.run_folder / "checkpoints" / "checkpoint.pkl")
    serial = load_checkpoint(serial_run.run_folder / "checkpoints" / "checkpoint.pkl")
    assert [dict(record) for record in parallel["logbook"]] == [
        dict(record) for record in serial["logbook"]
    ]
    assert [list(individual) for individual in parallel["population"]] == [
        list(individual) for individual in serial["population"]
    ]
    assert read_progress(parallel_run.stdout_path.parent / "progress.json").cores == 2


def test_isolated_protocols_run_in_the_workers_with_the_same_results(
    isolated_package, mechanisms_cache, serial_run, tmp_path
):
    result = run(isolated_package, tmp_path, mechanisms_cache, cores=2)
    assert result.status is RunStatus.COMPLETED, result.stderr_tail
    isolated = load_checkpoint(result.run_folder / "checkpoints" / "checkpoint.pkl")
    serial = load_checkpoint(serial_run.run_folder / "checkpoints" / "checkpoint.pkl")
    assert [dict(record) for record in isolated["logbook"]] == [
        dict(record) for record in serial["logbook"]
    ]


def test_the_progress_file_ends_with_the_checkpoint_logbook(parallel_run):
    logbook = load_checkpoint(parallel_run.run_folder / "checkpoints" / "checkpoint.pkl")["logbook"]
    progress = read_progress(parallel_run.stdout_path.parent / "progress.json")
    assert progress is not None
    assert progress.phase == "completed"
    assert progress.generation == len(logbook) == logbook[-1]["gen"] == 2
    assert progress.max_ngen == 2 and progress.offspring_size == 4
    assert progress.best == pytest.approx(logbook[-1]["min"], rel=1e-12)
    assert progress.average == pytest.approx(logbook[-1]["avg"], rel=1e-12)
    assert progress.std == pytest.approx(logbook[-1]["std"], rel=1e-12)
    assert progress.evaluations_done == sum(record["nevals"] for record in logbook)
    assert progress.evaluations_expected == progress.evaluations_done
    assert progress.evaluations_in_generation == 0
    assert 0 < progress.evaluation_seconds < parallel_run.process_seconds


def test_cancel_kills_the_whole_process_tree(long_package, mechanisms_cache, tmp_path):
    seen: set[int] = set()

    def cancel_once_evaluating() -> bool:
        progress = read_progress(tmp_path / "progress.json")
        if progress is None or progress.evaluations_done < 1:
            return False
        seen.update(processes_under(tmp_path))
        return True

    result = run(
        long_package, tmp_path, mechanisms_cache, cores=2, cancel_check=cancel_once_evaluating
    )
    assert result.status is RunStatus.CANCELLED
    assert "Cancelled" in result.reason
    # init.py, opt_neuron.py and the two evaluation workers
    assert len(seen) >= 4, seen
    assert not [pid for pid in seen if is_alive(pid)]
    assert not processes_under(tmp_path)
    assert "CANCELLED AT" in result.stderr_path.read_text()
    assert not result.checkpoint_found
    assert read_progress(tmp_path / "progress.json").phase == "cancelled"


def test_the_time_limit_stops_the_run_like_slurm(long_package, mechanisms_cache, tmp_path):
    result = run(long_package, tmp_path, mechanisms_cache, cores=2, runtime_seconds=2)
    assert result.status is RunStatus.TIME_LIMIT
    assert "time limit" in result.reason
    assert result.elapsed_seconds < 10
    stderr = result.stderr_path.read_text()
    assert "CANCELLED AT" in stderr and "DUE TO TIME LIMIT" in stderr
    assert "DUE TO TIME LIMIT" in tar_text(result.output_path, "./stderr.txt")
    assert not processes_under(tmp_path)


def test_a_crashing_model_fails_with_its_traceback(crash_package, mechanisms_cache, tmp_path):
    result = run(crash_package, tmp_path, mechanisms_cache, cores=2)
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 1
    assert CRASH_MESSAGE in result.reason
    assert result.stderr_tail.startswith("Traceback (most recent call last):")
    assert f"RuntimeError: {CRASH_MESSAGE}" in result.stderr_tail
    assert "opt_neuron.py" in result.stderr_tail
    assert result.output_path.is_file() and not result.checkpoint_found


def test_the_second_run_reuses_the_compiled_mechanisms(crash_package, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = run(crash_package, tmp_path / "first", cache, cores=1)
    assert first.mechanisms_from_cache is False

    compiler_calls = []
    real_run = subprocess.run

    def spy(command, *args, **kwargs):
        compiler_calls.append(command)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(mechanisms.subprocess, "run", spy)
    second = run(crash_package, tmp_path / "second", cache, cores=1)
    assert second.mechanisms_from_cache is True
    assert compiler_calls == []
    assert (second.run_folder / mechanisms.architecture() / "libnrnmech.so").is_file()
    assert "reused from the cache" in second.stdout_path.read_text()
