"""`make run`'s launcher: the site, a worker and beat start; Ctrl-C stops every process."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rebuild_site.services import free_port
from tests.fixtures.processes import alive, command_line, descendants

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_launcher_serves_login_runs_worker_and_beat_and_stops_everything(tmp_path):
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MEDIA_ROOT", "DATABASE_URL"}
    }
    env.update(VAR_DIR=str(tmp_path / "var"), DEBUG="1", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "launcher.log"
    with open(log_path, "wb") as log:
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rebuild_site.launcher",
                "--port",
                str(port),
                "--concurrency",
                "1",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while "The site is at" not in log_path.read_text() and time.monotonic() < deadline:
                assert launcher.poll() is None, log_path.read_text()
                time.sleep(0.5)
            output = log_path.read_text()
            assert f"http://127.0.0.1:{port}/" in output
            assert re.search(r"Log in as demo with password \S+", output)

            response = requests.get(f"http://127.0.0.1:{port}/login/", timeout=10)
            assert response.status_code == 200 and "Log in" in response.text

            redis_url = re.search(r"at (redis://127\.0\.0\.1:\d+/0)", output).group(1)
            ping = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "rebuild_site",
                    "inspect",
                    "ping",
                    "--timeout",
                    "10",
                ],
                cwd=ROOT,
                env={**env, "REDIS_URL": redis_url},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "pong" in ping.stdout, ping.stdout + ping.stderr
            processes = descendants(launcher.pid)
            commands = " ".join(
                Path(f"/proc/{pid}/cmdline").read_text() for pid in processes if alive(pid)
            )
            assert "beat" in commands and "worker" in commands and "runserver" in commands
            assert "redis-server" in commands
        finally:
            launcher.send_signal(signal.SIGINT)
            launcher.wait(timeout=60)
    time.sleep(0.5)
    assert [pid for pid in processes if alive(pid)] == []
    assert "Stopped." in log_path.read_text()


def test_make_run_says_plainly_when_the_sandbox_is_off(capsys):
    from rebuild_site.launcher import _ensure_bubblewrap

    _ensure_bubblewrap({"SANDBOX": "off"})

    said = capsys.readouterr().out
    assert "WARNING: SANDBOX=off: the sandbox is OFF" in said
    assert "runs unconfined as this user" in said


def test_make_run_says_model_code_runs_in_the_sandbox(capsys):
    from rebuild_site.launcher import _ensure_bubblewrap

    _ensure_bubblewrap({})

    assert capsys.readouterr().out == "Model code runs in the bubblewrap sandbox.\n"


@pytest.mark.slow
def test_make_run_cluster_starts_sandboxed_engines_that_local_runs_use(tmp_path):
    """`make run CLUSTER=2`: a controller and two engines in the sandbox, seeing the runs'
    folder; a dead engine is replaced; Ctrl-C stops them with the rest."""
    from nsg_app.local.cluster import check_cluster

    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "MEDIA_ROOT", "DATABASE_URL", "LOCAL_CLUSTER", "SANDBOX"}
    }
    var = tmp_path / "var"
    env.update(VAR_DIR=str(var), DEBUG="1", PYTHONUNBUFFERED="1", CLUSTER="2")
    log_path = tmp_path / "launcher.log"
    with open(log_path, "wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "rebuild_site.launcher", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 180
            while "The site is at" not in log_path.read_text() and time.monotonic() < deadline:
                assert launcher.poll() is None, log_path.read_text()
                time.sleep(0.5)
            output = log_path.read_text()
            assert "a controller on 127.0.0.1 and 2 engines" in output
            connection_file = Path(re.search(r"LOCAL_CLUSTER=(\S+?)\)", output).group(1))
            engine_file = re.search(r"ipengine --file (\S+)", output).group(1)
            assert Path(engine_file).is_file()
            runs = (var / "local-runs").resolve()
            check = check_cluster(connection_file, top=runs)
            assert len(check.engines) == 2
            # Engines run in the sandbox: their own PID namespace (the pid an engine reports
            # is no process of this machine's engines) and, under root, the sandbox's uid.
            # They keep this machine's host name, which the job page shows.
            assert {engine.host for engine in check.engines} == {socket.gethostname()}
            engines_here = [
                pid
                for pid in descendants(launcher.pid)
                if "ipyparallel.engine" in command_line(pid)
            ]
            assert {engine.pid for engine in check.engines}.isdisjoint(engines_here)
            if os.geteuid() == 0:
                engine_uids = {
                    Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
                    for pid in engines_here
                    if Path(f"/proc/{pid}/exe").resolve().name.startswith("python")
                }
                assert engine_uids == {"65534"}
            # The site's worker gets the cluster too.
            worker = next(
                pid
                for pid in descendants(launcher.pid)
                if "runner@" in Path(f"/proc/{pid}/cmdline").read_text()
            )
            worker_env = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
            assert f"LOCAL_CLUSTER={connection_file}".encode() in worker_env

            # The engine's sandbox (bwrap leads its group). Not the engine's nanny: it leads a
            # group of its own too, and killing it alone does not end the engine.
            engine_group = next(
                pid
                for pid in descendants(launcher.pid)
                if Path(f"/proc/{pid}/exe").resolve().name == "bwrap"
                and "ipyparallel.engine" in command_line(pid)
                and os.getpgid(pid) == pid
            )
            os.killpg(engine_group, signal.SIGKILL)
            deadline = time.monotonic() + 120
            while "started a fresh one" not in log_path.read_text():
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.5)
            processes = descendants(launcher.pid)
        finally:
            launcher.send_signal(signal.SIGINT)
            launcher.wait(timeout=60)
    time.sleep(0.5)
    assert [pid for pid in processes if alive(pid)] == []
    assert "Stopped." in log_path.read_text()
