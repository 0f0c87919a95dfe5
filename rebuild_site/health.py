"""Status checks of the parts the site depends on, for the staff-only /health/ page."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from models_app.bpo.sandbox import Sandbox


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


def timed(name: str, probe) -> Check:
    started = time.monotonic()
    try:
        detail = probe()
        ok = True
    except Exception as error:  # a health page reports every failure, whatever its type
        detail = f"{type(error).__name__}: {error}"
        ok = False
    return Check(name, ok, detail, time.monotonic() - started)


def database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return f"{connection.vendor} ({connection.settings_dict['NAME']})"


def _broker() -> str:
    from rebuild_site.celery import app

    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=2)
        return broker.as_uri()


def _worker() -> str:
    from rebuild_site.celery import app
    from rebuild_site.tasks import worker_health

    replies = app.control.ping(timeout=2.0)
    if not replies:
        raise RuntimeError("no Celery worker answered the ping within 2 s")
    names = ", ".join(sorted(name for reply in replies for name in reply))
    # A ping proves the worker is alive; a task proves it can reach the database and storage.
    seen = worker_health.delay().get(timeout=10)
    failing = {name: detail for name, detail in seen.items() if not detail.startswith("ok")}
    if failing:
        raise RuntimeError(f"{names} answered, but: {failing}")
    return f"{names}; database and storage reachable from the worker"


def storage() -> str:
    name = f"health/probe-{uuid.uuid4().hex}.txt"
    saved = default_storage.save(name, ContentFile(b"ok"))
    try:
        with default_storage.open(saved, "rb") as handle:
            if handle.read() != b"ok":
                raise RuntimeError("the probe file read back differs from what was written")
    finally:
        default_storage.delete(saved)
    return type(default_storage._wrapped).__name__


def sandbox() -> str:
    """Run `true` in the sandbox that model code runs in; say plainly when it is off."""
    chosen = Sandbox.named(settings.SANDBOX)
    chosen.check()
    if not chosen.enabled:
        return f"SANDBOX is {settings.SANDBOX}: {chosen.description}"
    return "bubblewrap ran `true` confined (no network, unprivileged uid, own folders only)"


def run_checks() -> list[Check]:
    return [
        timed("Database", database),
        timed("Broker (Redis)", _broker),
        timed("Celery worker", _worker),
        timed("Storage", storage),
        timed("Model sandbox", sandbox),
    ]
