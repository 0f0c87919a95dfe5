"""Test set-up: the settings' environment, a private Redis, a real Celery worker.

The environment is set here, at import, because pytest-django configures Django after the
first conftest is imported (the settings module reads the environment once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_VAR = ROOT / "var" / "test"
TEST_VAR.mkdir(parents=True, exist_ok=True)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rebuild_site.settings")
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
    from tests.fixtures.github import RepositoryServer

    _redis = start_private_redis(Path(tempfile.mkdtemp(prefix="redis-", dir=TEST_VAR)))
    os.environ["REDIS_URL"] = _redis.url
    # The stand-in for GitHub runs for the whole session so that the worker, started once,
    # knows its address from the environment like the site does.
    _repository = RepositoryServer(Path(tempfile.mkdtemp(prefix="github-", dir=TEST_VAR)))
    _repository.start()
    os.environ["MODEL_REPOSITORY_URL"] = _repository.raw_url
    os.environ["MODEL_REPOSITORY_INDEX_URL"] = _repository.index_url
    # Load the settings now that the environment is complete; pytest-django then sets up
    # Django in its own pytest_configure, which runs after this one.
    from django.conf import settings

    settings.DATABASES  # noqa: B018


def pytest_unconfigure(config):
    if _redis is not None:
        _redis.stop()
    if _repository is not None:
        _repository.stop()


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


@pytest.fixture(scope="session")
def running_worker(django_db_setup, django_db_blocker, redis_url):
    """A real Celery worker process on the test database, the private Redis and test media."""
    from rebuild_site.celery import app

    with django_db_blocker.unblock():
        database_url = _database_url_for_workers()
    env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url)
    log = open(TEST_VAR / "celery-worker.log", "wb")
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
            f"test-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited; see {log.name}")
        if app.control.ping(timeout=0.5):
            break
    else:
        worker.kill()
        raise RuntimeError(f"the Celery worker did not answer a ping in 60 s; see {log.name}")
    yield worker
    os.killpg(worker.pid, 15)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, 9)
        worker.wait()
    log.close()


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
