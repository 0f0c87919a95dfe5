"""kill -9 of the whole `make run`, then `make run` again: nothing in flight is lost.

The real launcher runs on the test database, a VAR_DIR of its own (its private Redis keeps
its append-only file there) and a free port, with its default two worker processes.
Through the site, a user has a local run of the demo model going, two analyses running
and the save of a third queued behind them (both worker processes are busy). Then every
process of the launcher is SIGKILLed at once: the site, both workers, beat, Redis and the
analyses' engines; only the local run, in a session of its own, lives on. The launcher is
started again on the same VAR_DIR and database: the run ends completed and stored once,
the analyses done, the save saved, the stranded analyses re-driven by the first sweep
that may take them (beat's sweep every NSG_POLL_EVERY_SECONDS, 1 s in the tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from analysis_app.models import Analysis
from models_app.models import Optimisation
from models_app.services import package_create
from nsg_app.local.processes import process_running
from nsg_app.models import Job
from rebuild_site.services import free_port
from tests.analysis.conftest import remove_stored_folder, stored_files
from tests.fixtures.processes import (
    alive,
    command_line,
    descendants,
    kill_tree_sparing,
    tree_of_processes_mentioning,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pass-word-123"
# Time the tests allow the work itself after its re-drive (a demo analysis, a collection)
# on a shared 2-core machine; the re-drive's own moment is checked more tightly below.
WORK_SECONDS = 240
# How late a sweep may come after the moment it may take a row: a sweep message waits for
# a free worker process while both run other tasks (the save, a collection).
SWEEP_SLACK_SECONDS = 15


class Launcher:
    """`python -m rebuild_site.launcher` as `make run` starts it, and its output."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rebuild_site.launcher",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while "The site is at" not in self.output():
            assert self.process.poll() is None, f"the launcher stopped:\n{self.output()}"
            assert time.monotonic() < deadline, f"the launcher did not start:\n{self.output()}"
            time.sleep(0.2)

    def kill_everything(self, *, sparing: int | None = None) -> set[int]:
        killed = kill_tree_sparing(self.process.pid, sparing)
        self.process.wait(timeout=30)
        return killed


@pytest.fixture
def launch(tmp_path, worker_database_url):
    """Start the launcher (again) on one VAR_DIR, database and port; whatever happens,
    every process any of them started is killed at the end, and so is the local run."""
    var_dir = tmp_path / "var"
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    env.update(
        DATABASE_URL=worker_database_url,
        VAR_DIR=str(var_dir),
        # The compiled mechanisms are shared with the other tests: nothing to wait for.
        MECHANISMS_CACHE_DIR=str(settings.MECHANISMS_CACHE_DIR),
        PYTHONUNBUFFERED="1",
    )
    started: list[Launcher] = []

    def start() -> Launcher:
        launcher = Launcher(env, port, tmp_path / f"launcher-{len(started) + 1}.log")
        started.append(launcher)
        launcher.wait_until_up()
        return launcher

    start.port = port
    start.var_dir = var_dir
    yield start
    for launcher in started:
        launcher.kill_everything()
    # The local run and anything else still working in this test's folder.
    for pid in tree_of_processes_mentioning(str(var_dir)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class SiteUser:
    """A user's browser session on the launcher's site (plain HTTP, with Django's CSRF)."""

    def __init__(self, port: int, username: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        self.post("/login/", {"username": username, "password": PASSWORD})
        assert "sessionid" in self.session.cookies, "the log-in failed"

    def post(self, path: str, data: dict) -> requests.Response:
        self.session.get(f"{self.base}/login/", timeout=30)  # sets the CSRF cookie
        response = self.session.post(
            f"{self.base}{path}",
            data={**data, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]},
            timeout=60,
            allow_redirects=False,
        )
        assert response.status_code == 302, f"POST {path}: {response.status_code}"
        return response

    def analyse(self, model: Optimisation) -> Analysis:
        response = self.post(
            "/analyses/", {"source": "catalogue", "optimisation": model.pk, "top": 1}
        )
        return Analysis.objects.get(pk=int(re.search(r"/(\d+)/$", response.headers["Location"])[1]))


def _wait(what: str, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _fresh(row):
    row.refresh_from_db()
    return row


def test_kill_9_of_the_whole_make_run_then_a_restart_loses_nothing(launch, make_user):
    alice = make_user("alice", password=PASSWORD)
    first = launch()
    user = SiteUser(launch.port, "alice")
    demo = Optimisation.objects.get(source=Optimisation.Source.DEMO, owner=None)
    stored_runs = f"BluePyOptOne/resultsLocal/{alice.username}"
    runs_before = set(default_storage.listdir(stored_runs)[0]) if _exists(stored_runs) else set()

    # An analysis done, to be saved later.
    saved = user.analyse(demo)
    _wait("the first analysis", lambda: _fresh(saved).status == Analysis.Status.DONE, 300)

    # A local run of the demo, long enough to outlive the kill.
    package = package_create(optimisation=demo, owner=alice, offspring_size=6, max_ngen=12)
    response = user.post(
        f"/jobs/run-here/{package.pk}/", {"cores_per_node": 1, "runtime_hours": 1, "seed": 7}
    )
    job = Job.objects.get(pk=int(re.search(r"/jobs/(\d+)/$", response.headers["Location"])[1]))
    _wait(
        "the run to be going",
        lambda: _fresh(job).state == Job.State.ACTIVE and job.runner_pid and job.progress,
        180,
    )

    # Two analyses running (one per worker process), the save of the first queued behind.
    analyses = [user.analyse(demo), user.analyse(demo)]
    save_folder = f"restart-{saved.pk}"
    saved_prefix = f"BluePyOptAnalysis/{alice.username}/{save_folder}"
    user.post(f"/analyses/{saved.pk}/save/", {"folder": save_folder})
    try:
        _wait(
            "both analyses to run",
            lambda: all(
                _fresh(a).status == Analysis.Status.RUNNING and a.heartbeat_at for a in analyses
            ),
            180,
        )
        assert _fresh(saved).save_status == Analysis.SaveStatus.SAVING
        assert _fresh(job).state == Job.State.ACTIVE

        killed = first.kill_everything(sparing=job.runner_pid)
        killed_at = timezone.now()

        assert [pid for pid in killed if alive(pid)] == []
        assert "Stopped." not in first.output()  # nothing had a chance to stop cleanly
        assert process_running(job.runner_pid, job.runner_start_ticks), "the run died too"
        stranded = {
            "job": _fresh(job).state,
            "analyses": [_fresh(a).status for a in analyses],
            "save": _fresh(saved).save_status,
        }
        assert stranded == {"job": "active", "analyses": ["running"] * 2, "save": "saving"}
        last_heartbeats = [a.heartbeat_at for a in analyses]

        launch()  # `make run` again
        up_at = timezone.now()

        _wait(
            "every job and analysis at its end",
            lambda: (
                _fresh(job).state == Job.State.COLLECTED
                and all(_fresh(a).status == Analysis.Status.DONE for a in analyses)
                and _fresh(saved).save_status == Analysis.SaveStatus.SAVED
            ),
            settings.ANALYSIS_STALE_SECONDS + settings.NSG_POLL_EVERY_SECONDS + WORK_SECONDS,
        )

        # Each analysis was taken again by the first sweep that could take it.
        for analysis, last_heartbeat in zip(analyses, last_heartbeats, strict=True):
            may_take_at = max(
                up_at, last_heartbeat + timedelta(seconds=settings.ANALYSIS_STALE_SECONDS)
            )
            assert (
                killed_at
                < analysis.queued_at
                <= may_take_at
                + timedelta(seconds=settings.NSG_POLL_EVERY_SECONDS + SWEEP_SLACK_SECONDS)
            )
            assert analysis.fitness and "analysis.json" in analysis.result_files

        # The run: one runner, never started twice, its results stored once and whole.
        assert job.stages.filter(message__startswith="Started on this machine").count() == 1
        assert job.stages.filter(stage="COMPLETED").count() == 1
        assert job.seed == 7
        runs_after = set(default_storage.listdir(stored_runs)[0])
        assert runs_after - runs_before == {job.folder}
        manifest = json.loads(default_storage.open(f"{job.results_prefix}/manifest.json").read())
        assert manifest["seed"] == 7
        assert {entry["name"] for entry in manifest["files"]} >= {"STDOUT", "output.tar.gz"}
        for entry in manifest["files"]:
            content = default_storage.open(f"{job.results_prefix}/{entry['name']}", "rb").read()
            assert len(content) == entry["size"]
            assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        assert sorted(job.result_files.values_list("name", flat=True)) == sorted(
            entry["name"] for entry in manifest["files"]
        )

        # The save: one folder, with the analysis' files and its figures.
        assert saved.saved_to == saved_prefix
        in_folder = stored_files(saved_prefix)
        assert set(saved.result_files) <= in_folder
        assert any(name.startswith("figures/") for name in in_folder)
        assert Analysis.objects.filter(saved_to__startswith=saved_prefix).count() == 1
    finally:
        remove_stored_folder(saved_prefix)


def _exists(prefix: str) -> bool:
    try:
        default_storage.listdir(prefix)
    except FileNotFoundError:
        return False
    return True


def test_kill_9_of_make_run_itself_takes_every_part_with_it(launch):
    """`kill -9` of make run's own process (its parts run in sessions of their own)."""
    first = launch()
    parts = descendants(first.process.pid)
    commands = " ".join(command_line(pid) for pid in parts)
    assert all(part in commands for part in ("redis-server", "runserver", "worker", "beat"))

    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=30)

    _wait("the parts of the killed make run to die", lambda: not any(map(alive, parts)), 60)
    second = launch()  # the port is free again, and only one Redis uses var/redis
    redis = [pid for pid in descendants(second.process.pid) if "redis-server" in command_line(pid)]
    assert len(redis) == 1
    response = requests.get(f"http://127.0.0.1:{launch.port}/login/", timeout=30)
    assert response.status_code == 200 and "Log in" in response.text
