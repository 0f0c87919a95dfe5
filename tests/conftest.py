"""Test set-up: the settings' environment, a private Redis, a real Celery worker.

The environment is set here, at import, because pytest-django configures Django after the
first conftest is imported (the settings module reads the environment once).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A folder of its own per test session (database, media, logs), so that two sessions on
# one checkout never share a database; removed at the end unless KEEP_TEST_VAR is set.
TEST_VAR = ROOT / "var" / "test" / f"session-{os.getpid()}"
TEST_VAR.mkdir(parents=True, exist_ok=True)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebuild_site.settings")
# The tests set what they need; a developer's .env must not change what they see.
os.environ["ENV_FILE"] = ""
os.environ["DEBUG"] = "1"
os.environ["VAR_DIR"] = str(TEST_VAR)
os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="media-", dir=TEST_VAR)
os.environ.pop("S3_BUCKET", None)
os.environ.pop("S3_ENDPOINT_URL", None)
# Playwright's sync API runs an event loop in the test thread; the ORM calls made by the
# tests around it are still synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

_redis = None
_repository = None


def pytest_configure(config):
    global _redis, _repository
    from rebuild_site.services import start_private_redis
    from tests.fixtures.emulator import APP_KEY, start_shared_emulator
    from tests.fixtures.github import RepositoryServer

    _redis = start_private_redis(Path(tempfile.mkdtemp(prefix="redis-", dir=TEST_VAR)))
    os.environ["REDIS_URL"] = _redis.url
    # The stand-in for GitHub runs for the whole session so that the worker, started once,
    # knows its address from the environment like the site does.
    _repository = RepositoryServer(Path(tempfile.mkdtemp(prefix="github-", dir=TEST_VAR)))
    _repository.start()
    os.environ["MODEL_REPOSITORY_URL"] = _repository.raw_url
    os.environ["MODEL_REPOSITORY_INDEX_URL"] = _repository.index_url
    # The NSG emulator stands in for NSG, for the client's tests and the site's alike.
    emulator = start_shared_emulator(Path(tempfile.mkdtemp(prefix="nsg-", dir=TEST_VAR)))
    os.environ["NSG_BASE_URL"] = emulator.base_url
    os.environ["NSG_APP_KEY"] = APP_KEY
    os.environ["NSG_MIN_POLL_SECONDS"] = "0"
    os.environ["NSG_POLL_EVERY_SECONDS"] = "1"
    os.environ["COLLECT_STALE_SECONDS"] = "4"
    os.environ["REDRIVE_AFTER_SECONDS"] = "4"
    os.environ["ANALYSIS_STALE_SECONDS"] = "15"
    # Load the settings now that the environment is complete; pytest-django then sets up
    # Django in its own pytest_configure, which runs after this one.
    from django.conf import settings

    settings.DATABASES  # noqa: B018


def pytest_unconfigure(config):
    if _redis is not None:
        _redis.stop()
    if _repository is not None:
        _repository.stop()
    from tests.fixtures.emulator import _shared

    if _shared is not None:
        _shared.stop()
    if not os.environ.get("KEEP_TEST_VAR"):
        shutil.rmtree(TEST_VAR, ignore_errors=True)


@pytest.fixture
def github():
    """The GitHub stand-in, emptied for each test."""
    _repository.clear()
    yield _repository
    _repository.clear()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


def _database_url_for_workers() -> str:
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def start_worker(database_url: str, name: str, *, queues: str = "celery") -> subprocess.Popen:
    """A real Celery worker process on the test database, the private Redis and test media."""
    from rebuild_site.celery import app

    env = dict(os.environ, DATABASE_URL=database_url)
    log = open(TEST_VAR / f"{name}.log", "ab")  # noqa: SIM115 - the worker writes to it
    hostname = f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "rebuild_site",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--hostname",
            hostname,
            "--without-gossip",
            "--without-mingle",
            "--queues",
            queues,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    expected = hostname.replace("%h", os.uname().nodename)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited; see {TEST_VAR / f'{name}.log'}")
        replies = app.control.ping(timeout=0.5)
        if any(expected in reply for reply in replies):
            return worker
    stop_process_group(worker)
    raise RuntimeError(
        f"the Celery worker did not answer a ping in 60 s; see {TEST_VAR / f'{name}.log'}"
    )


def stop_process_group(process: subprocess.Popen, *, kill: bool = False) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def worker_database_url(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return _database_url_for_workers()


@pytest.fixture(scope="session")
def running_worker(worker_database_url, running_runner):
    """The site's worker (default queue); local runs go to `running_runner`, as under
    `make run` and docker-compose."""
    worker = start_worker(worker_database_url, "celery-worker")
    yield worker
    stop_process_group(worker)


@pytest.fixture(scope="session")
def running_runner(worker_database_url):
    """The worker of local runs (settings.RUNS_QUEUE)."""
    from django.conf import settings

    runner = start_worker(worker_database_url, "celery-runner", queues=settings.RUNS_QUEUE)
    yield runner
    stop_process_group(runner)


@pytest.fixture
def running_beat(worker_database_url, tmp_path):
    """Celery beat, sending the periodic poll every NSG_POLL_EVERY_SECONDS (1 s here).

    Per test, not per session: other tests drive the poll by hand and must not race it.
    """
    env = dict(os.environ, DATABASE_URL=worker_database_url)
    schedule = tmp_path / "beat-schedule"
    log = open(TEST_VAR / "celery-beat.log", "ab")  # noqa: SIM115 - beat writes to it
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "rebuild_site",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(schedule),
            "--pidfile",
            "",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    yield beat
    stop_process_group(beat)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on loopback, for the storage tests that run on S3."""
    from tests.fixtures.s3 import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str, *, staff: bool = False, password: str = "pass-word-123"):
        user = get_user_model().objects.create_user(username, f"{username}@example.org", password)
        if staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        return user

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def staff(make_user):
    return make_user("stella", staff=True)
