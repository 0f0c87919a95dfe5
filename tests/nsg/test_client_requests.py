"""What the client sends, and how it retries: checked in the emulator's request log."""

from __future__ import annotations

import time

import pytest

from nsg_app.nsg import NsgClient, RetryPolicy, ServerError, Transport, UsageLimit
from tests.fixtures.emulator import APP_KEY
from tests.nsg.packages import HELLO_SCRIPT, package


def header(entry: dict, name: str) -> str | None:
    return next((v for k, v in entry["headers"].items() if k.lower() == name), None)


def recording_client(emulator, retry: RetryPolicy, slept: list[float]) -> NsgClient:
    """A client that notes its backoff delays instead of sleeping."""
    transport = Transport(
        app_key=APP_KEY, username="alice", password="secret", retry=retry, sleep=slept.append
    )
    return NsgClient(emulator.base_url, APP_KEY, "alice", "secret", transport=transport)


def test_sends_app_key_and_basic_auth_but_no_accept_header(emulator, client):
    client.list_jobs()
    [entry] = emulator.requests_of("alice")
    assert entry["method"] == "GET"
    assert entry["path"] == "/cipresrest/v1/job/alice?expand=true"
    assert header(entry, "cipres-appkey") == APP_KEY
    assert header(entry, "authorization") == "***"  # the emulator hides the value
    assert header(entry, "accept") is None


def test_submission_is_multipart_with_prefixed_fields(emulator, client):
    status = client.submit(
        "PY_EXPANSE",
        package(HELLO_SCRIPT),
        vparams={"filename_": "init.py", "runtime_": 0.5, "nrnivmodl_o_": False},
        metadata={"clientJobId": "wf-42"},
    )
    [entry] = emulator.requests_of("alice")
    assert entry["method"] == "POST"
    assert header(entry, "content-type").startswith("multipart/form-data; boundary=")
    assert header(entry, "accept") is None
    assert status.stage == "QUEUE" and not status.terminal
    assert status.metadata == {"clientJobId": "wf-42"}
    assert status.client_job_id == "wf-42"
    assert status.date_submitted.tzinfo is not None
    assert status.messages[0].stage == "QUEUE"
    assert status.min_poll_interval_seconds == 0
    client.delete_job(status)


def test_get_is_retried_after_500_then_succeeds(emulator, client):
    emulator.add_fault("alice", "http500", count="2")
    assert isinstance(client.list_jobs(), list)
    assert [e["method"] for e in emulator.requests_of("alice")] == ["GET"] * 3


def test_delete_is_retried(emulator, client):
    status = client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"})
    emulator.forget_requests()
    emulator.add_fault("alice", "http500", count="1")
    client.delete_job(status)
    assert [e["method"] for e in emulator.requests_of("alice")] == ["DELETE", "DELETE"]


def test_post_is_never_retried(emulator, client):
    jobs_before = len(client.list_jobs())
    emulator.forget_requests()
    emulator.add_fault("alice", "http500", count="1")
    with pytest.raises(ServerError):
        client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"})
    assert [e["method"] for e in emulator.requests_of("alice")] == ["POST"]
    assert len(client.list_jobs()) == jobs_before


def test_post_is_not_retried_on_429_either(emulator, client):
    emulator.add_fault("alice", "usage_limit", count="1", reset_minutes="0")
    with pytest.raises(UsageLimit):
        client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"})
    assert len(emulator.requests_of("alice")) == 1


def test_429_retry_after_is_honoured(emulator, client):
    emulator.add_fault("alice", "usage_limit", count="1", reset_minutes="0", retry_after="1")
    started = time.monotonic()
    client.list_jobs()
    assert time.monotonic() - started >= 1.0
    assert len(emulator.requests_of("alice")) == 2


def test_429_reset_minutes_is_honoured(emulator):
    emulator.add_fault("alice", "usage_limit", count="1", reset_minutes="0.02")  # 1.2 s
    slept = []
    with recording_client(emulator, RetryPolicy(attempts=2), slept) as nsg:
        nsg.list_jobs()
    assert slept == [pytest.approx(1.2)]


def test_429_hint_beyond_the_cap_is_raised_at_once(emulator):
    emulator.add_fault("alice", "usage_limit", count="1", reset_minutes="10")
    retry = RetryPolicy(attempts=4, base_delay_seconds=0.01, max_delay_seconds=60)
    with emulator.client(retry=retry) as nsg:
        with pytest.raises(UsageLimit) as caught:
            nsg.list_jobs()
    assert caught.value.retry_after_seconds == 600
    assert len(emulator.requests_of("alice")) == 1


def test_backoff_doubles_from_the_base_delay(emulator):
    emulator.add_fault("alice", "http500", count="3")
    slept = []
    retry = RetryPolicy(attempts=4, base_delay_seconds=0.5, max_delay_seconds=1.5)
    with recording_client(emulator, retry, slept) as nsg:
        nsg.list_jobs()
    assert slept == [0.5, 1.0, 1.5]
