"""Local runs on a real ipyparallel cluster on loopback (a controller and two engines).

The unmodified package evaluates on the engines (USEIPYP=1 and its profile); what a user
notices: the same optimisation as the serial run for a seed, the engines and their
evaluations in result.json and on the terminal, a lost engine reported while the run goes
on, a clear failure when no engine is left, and a clear message for every cluster that
cannot serve the run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models_app.bpo.sandbox import kill_group
from nsg_app.local import RunStatus, read_progress, run_package
from nsg_app.local.cli import read_result
from nsg_app.local.cluster import (
    CLIENT_FILE,
    ENGINE_FILE,
    ClusterError,
    check_cluster,
    client_connection_file,
)
from tests.fixtures.cluster import running_cluster

from .conftest import ROOT, load_checkpoint

pytestmark = pytest.mark.slow

SEED = "7"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


def runs_folder(cluster) -> Path:
    return cluster.ipython_dir.parent / "runs"


def logbook(run_folder: Path) -> list[dict]:
    checkpoint = load_checkpoint(run_folder / "checkpoints" / "checkpoint.pkl")
    return [dict(record) for record in checkpoint["logbook"]]


@pytest.fixture(scope="module")
def serial_logbook(demo_package, mechanisms_cache, tmp_path_factory):
    result = run_package(
        demo_package,
        tmp_path_factory.mktemp("serial"),
        cores=1,
        runtime_seconds=300,
        mechanisms_cache=mechanisms_cache,
        extra_env={"BLUEPYOPT_SEED": SEED},
    )
    assert result.succeeded, result.reason
    return logbook(result.run_folder)


@pytest.fixture(scope="module")
def command_line_run(cluster, demo_package, mechanisms_cache):
    """``manage.py run_local PACKAGE.zip -o DIR --cluster CONNECTION_FILE``, as a user types it."""
    output = runs_folder(cluster) / "command-line"
    process = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "run_local",
            str(demo_package),
            "-o",
            str(output),
            "--cluster",
            str(cluster.connection_file),
            "--mechanisms-cache",
            str(mechanisms_cache),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DEBUG": "1", "BLUEPYOPT_SEED": SEED, "SANDBOX": "bwrap"},
    )
    return process, output


def test_the_command_line_runs_the_package_on_the_engines_with_a_progress_bar(command_line_run):
    process, output = command_line_run
    assert process.returncode == 0, process.stdout + process.stderr
    assert "preparing: Checking the cluster's engines" in process.stdout
    assert "gen 2/2 | evals 8/8 | best" in process.stdout
    assert "Status:     completed" in process.stdout
    engines_line = next(line for line in process.stdout.splitlines() if line.startswith("Engines:"))
    assert engines_line.startswith("Engines:    2 (0: ")
    # The package itself was told to use the cluster, as on the HPC systems.
    stdout = (output / "STDOUT").read_text()
    assert "2 engines ready" in stdout


def test_result_json_records_the_engines_and_the_evaluations_each_did(command_line_run):
    _, output = command_line_run
    result = read_result(output / "result.json")
    assert result is not None and result.succeeded and result.checkpoint_found
    engines = result.cluster["engines"]
    assert sorted(engine["id"] for engine in engines) == [0, 1]
    # 4 offspring x 2 generations, spread over both engines.
    assert sum(engine["evaluations"] for engine in engines) == 8
    assert all(engine["evaluations"] > 0 for engine in engines)
    assert all(engine["neuron"] and not engine["lost"] for engine in engines)
    # named by this machine's name, not the sandbox's
    assert {engine["host"] for engine in engines} == {socket.gethostname()}
    assert result.cluster["engines_lost"] == []
    assert result.cores == 2
    progress = read_progress(output / "progress.json")
    assert progress.evaluations_done == 8 and sum(progress.engines.values()) == 8


def test_the_cluster_gives_the_serial_logbook_for_the_same_seed(command_line_run, serial_logbook):
    _, output = command_line_run
    result = read_result(output / "result.json")
    assert logbook(result.run_folder) == serial_logbook


def _run_in_thread(package, work_dir, cache, cluster, **env):
    outcome = {}

    def target():
        outcome["result"] = run_package(
            package,
            work_dir,
            cores=1,
            runtime_seconds=600,
            mechanisms_cache=cache,
            progress_file=work_dir.parent / f"{work_dir.name}-progress.json",
            extra_env={"BLUEPYOPT_SEED": SEED, **env},
            cluster=cluster.connection_file,
        )

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _wait_for_evaluations(progress_file: Path, count: int, thread, timeout=240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        progress = read_progress(progress_file)
        if progress is not None and progress.evaluations_done >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} evaluations were not done in {timeout} s")


def test_an_engine_killed_during_a_run_is_reported_and_the_others_finish_it(
    long_package, mechanisms_cache, tmp_path
):
    with running_cluster(tmp_path) as cluster:
        # The serial logbook of the long package, for the same seed.
        serial = run_package(
            long_package,
            tmp_path / "serial",
            cores=1,
            runtime_seconds=600,
            mechanisms_cache=mechanisms_cache,
            extra_env={"BLUEPYOPT_SEED": SEED},
        )
        work_dir = tmp_path / "runs" / "killed"
        thread, outcome = _run_in_thread(long_package, work_dir, mechanisms_cache, cluster)
        _wait_for_evaluations(work_dir.parent / "killed-progress.json", 10, thread)
        kill_group(cluster.engines[0])
        thread.join(timeout=300)
        result = outcome["result"]
    assert result.status is RunStatus.COMPLETED, result.reason + result.stderr_tail
    lost = result.cluster["engines_lost"]
    assert len(lost) == 1
    assert (
        "of the cluster was lost; the other engines take over" in (work_dir / "STDERR").read_text()
    )
    engines = {engine["id"]: engine for engine in result.cluster["engines"]}
    assert engines[lost[0]]["lost"] is True
    assert sum(engine["evaluations"] for engine in engines.values()) == 8 * 4
    # Evaluations of the lost engine went to the other one: the same optimisation.
    assert logbook(result.run_folder) == logbook(serial.run_folder)


def test_a_run_whose_engines_are_all_lost_fails_with_a_clear_message(
    long_package, mechanisms_cache, tmp_path
):
    with running_cluster(tmp_path) as cluster:
        work_dir = tmp_path / "runs" / "all-lost"
        thread, outcome = _run_in_thread(
            long_package,
            work_dir,
            mechanisms_cache,
            cluster,
            REBUILD_LOCAL_CLUSTER_WAIT_SECONDS="3",
        )
        _wait_for_evaluations(work_dir.parent / "all-lost-progress.json", 4, thread)
        for engine in cluster.engines:
            kill_group(engine)
        thread.join(timeout=300)
        result = outcome["result"]
    assert result.status is RunStatus.FAILED
    assert "Every engine of the cluster was lost" in result.reason
    assert "none came back within 3 s" in result.reason
    assert sorted(result.cluster["engines_lost"]) == [0, 1]


# --- clusters that cannot serve a run ---------------------------------------------------


def test_a_controller_that_does_not_answer_is_named(tmp_path):
    with running_cluster(tmp_path, engines=1) as cluster:
        connection_file = tmp_path / CLIENT_FILE
        connection_file.write_bytes(cluster.connection_file.read_bytes())
    with pytest.raises(ClusterError) as raised:
        check_cluster(connection_file, top=tmp_path / "runs")
    (problem,) = raised.value.problems
    assert f"The controller named by {connection_file.resolve()} does not answer" in problem
    assert "Is ipcontroller running?" in problem


def test_engines_that_cannot_see_the_run_folder_are_named(cluster, tmp_path):
    # tmp_path is not among the folders the sandboxed engines see.
    with pytest.raises(ClusterError) as raised:
        check_cluster(cluster.connection_file, top=tmp_path)
    assert len(raised.value.problems) == 2
    for problem in raised.value.problems:
        assert f"cannot see the run folder {tmp_path}" in problem
        assert "(a shared folder)" in problem


def test_a_run_on_a_cluster_that_cannot_serve_it_fails_before_it_starts(
    cluster, demo_package, mechanisms_cache, tmp_path
):
    # Outside the engines' view: the run fails with their message, init.py never ran.
    result = run_package(
        demo_package,
        tmp_path / "unseen",
        cores=1,
        runtime_seconds=300,
        mechanisms_cache=mechanisms_cache,
        cluster=cluster.connection_file,
    )
    assert result.status is RunStatus.FAILED and result.exit_code is None
    assert "cannot see the run folder" in result.reason
    assert "cannot see the run folder" in (tmp_path / "unseen" / "STDERR").read_text()


def test_connection_files_are_checked_before_anything_connects(tmp_path, cluster):
    with pytest.raises(ClusterError, match="No ipyparallel connection file or profile folder"):
        client_connection_file(tmp_path / "missing.json")
    with pytest.raises(ClusterError, match="is not an ipyparallel profile"):
        client_connection_file(tmp_path)
    engine_file = tmp_path / ENGINE_FILE
    engine_file.write_bytes(cluster.engine_file.read_bytes())
    with pytest.raises(ClusterError, match="the client's is ipcontroller-client.json"):
        client_connection_file(engine_file)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ClusterError, match="is not a readable connection file"):
        client_connection_file(broken)
    # A profile folder names its client file.
    assert client_connection_file(cluster.profile_dir) == cluster.connection_file.resolve()
    assert json.loads(cluster.connection_file.read_text())["interface"].startswith(
        "tcp://127.0.0.1"
    )


def test_engines_holding_another_package_s_mechanisms_say_they_must_be_restarted(
    cluster, command_line_run
):
    # After the demo run, both engines hold its mechanisms; NEURON cannot unload them.
    folder = runs_folder(cluster) / "another-model"
    folder.mkdir()
    with pytest.raises(ClusterError) as raised:
        check_cluster(cluster.connection_file, top=folder, digest="0" * 64)
    assert len(raised.value.problems) == 2
    for problem in raised.value.problems:
        assert "already holds the compiled mechanisms of another package" in problem
        assert "restart this engine" in problem


def test_a_controller_without_engines_says_how_to_add_some(tmp_path):
    with running_cluster(tmp_path, engines=0) as cluster:
        with pytest.raises(ClusterError) as raised:
            check_cluster(cluster.connection_file, top=tmp_path / "runs", engine_wait=2)
    (problem,) = raised.value.problems
    assert "answers but has no engines (none registered within 2 s)" in problem
    assert f"ipengine --file {cluster.engine_file}" in problem
