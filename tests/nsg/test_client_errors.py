"""The client's typed errors, against the emulator's real replies and faults."""

from __future__ import annotations

import dataclasses
import io
import socket
import time

import pytest

from nsg_app.nsg import (
    AuthenticationError,
    CommunicationError,
    DownloadIncomplete,
    NotFound,
    NsgClient,
    RetryPolicy,
    ServerError,
    Timeouts,
    UsageLimit,
    UserMismatch,
    ValidationError,
)
from tests.fixtures.emulator import APP_KEY
from tests.nsg.packages import HELLO_SCRIPT, package
from tests.nsg.polling import wait_for_terminal

NO_RETRY = RetryPolicy(attempts=1)


def test_wrong_password_is_authentication_error(emulator):
    with emulator.client("alice", password="wrong") as nsg:
        with pytest.raises(AuthenticationError) as caught:
            nsg.list_jobs()
    assert caught.value.code == 2
    assert caught.value.http_status == 401
    assert caught.value.display_message == "Authentication Error"


def test_wrong_app_key_is_authentication_error(emulator):
    with NsgClient(emulator.base_url, "Other-1234", "alice", "secret") as nsg:
        with pytest.raises(AuthenticationError):
            nsg.list_jobs()


def test_unknown_job_is_not_found(client):
    with pytest.raises(NotFound) as caught:
        client.job_status("NGBW-JOB-PY_EXPANSE-00000000000000000000000000000000")
    assert caught.value.code == 4
    assert caught.value.display_message == "Job not found."


def test_another_users_job_is_user_mismatch(client, bob_client):
    status = bob_client.submit(
        "PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"}
    )
    with pytest.raises(UserMismatch) as by_handle:
        client.job_status(status.handle)
    with pytest.raises(UserMismatch) as by_url:
        client.job_status(status)
    assert by_handle.value.code == by_url.value.code == 6
    bob_client.delete_job(status)


def test_validation_error_names_each_bad_parameter(client):
    with pytest.raises(ValidationError) as caught:
        client.submit(
            "BLUEPYOPT_TG",
            package(HELLO_SCRIPT),
            vparams={
                "number_nodes_": 0,
                "number_cores_": 25,
                "runtime_": 48.5,
                "cmdlineopts_": "-nogui",
            },
        )
    error = caught.value
    assert error.code == 5 and error.http_status == 400
    assert set(error.param_errors) == {"number_nodes_", "number_cores_", "runtime_", "cmdlineopts_"}
    assert error.param_errors["number_cores_"] == "Number of cores per node must be less than 24."


def test_expanse_allows_128_cores_but_not_129(client):
    vparams = {"filename_": "init.py", "number_cores_": 128, "number_nodes_": 72, "runtime_": 0.1}
    assert client.validate("BLUEPYOPT_EXPANSE", package(HELLO_SCRIPT), vparams=vparams)
    with pytest.raises(ValidationError) as caught:
        client.validate("BLUEPYOPT_EXPANSE", b"x", vparams={**vparams, "number_cores_": 129})
    assert set(caught.value.param_errors) == {"number_cores_"}


def test_unknown_tool_and_missing_input_are_rejected(client):
    with pytest.raises(ValidationError) as caught:
        client.submit("NO_SUCH_TOOL", b"", vparams={"runtime_": 1})
    assert set(caught.value.param_errors) == {"tool", "infile_"}


def test_generic_tool_requires_a_filename(client):
    with pytest.raises(ValidationError) as caught:
        client.validate("NEURON_EXPANSE", package(HELLO_SCRIPT))
    assert set(caught.value.param_errors) == {"filename_"}


def test_validate_returns_the_command_line(client):
    jobs_before = len(client.list_jobs())
    commandline = client.validate(
        "PY_EXPANSE",
        package(HELLO_SCRIPT),
        vparams={"filename_": "init.py", "cmdlineopts_": "-nogui --steps 3"},
    )
    assert commandline == "inputfile python3 init.py -nogui --steps 3"
    assert len(client.list_jobs()) == jobs_before  # nothing was created


def test_vparam_names_are_checked_before_sending(client):
    with pytest.raises(ValueError):
        client.validate("PY_EXPANSE", b"x", vparams={"vparam.runtime_": 1})
    with pytest.raises(ValueError):
        client.validate("PY_EXPANSE", b"x", vparams={"runtime": 1})
    with pytest.raises(TypeError):
        client.validate("PY_EXPANSE", "input.zip", vparams={"runtime_": 1})


def test_usage_limit_carries_limit_status(emulator):
    emulator.add_fault("alice", "usage_limit", reset_minutes="30")
    with emulator.client(retry=NO_RETRY) as nsg:
        with pytest.raises(UsageLimit) as caught:
            nsg.list_jobs()
    error = caught.value
    assert error.code == 103 and error.http_status == 429
    assert error.limit_status.reset_minutes == 30
    assert error.limit_status.remaining == 0
    assert error.limit_status.reset_date is not None
    assert error.retry_after_seconds == 1800


def test_server_error_after_retries(emulator, client):
    emulator.add_fault("alice", "http500")
    with pytest.raises(ServerError) as caught:
        client.list_jobs()
    assert caught.value.code == 100 and caught.value.http_status == 500
    assert len(emulator.requests_of("alice")) == 3  # FAST_RETRY makes 3 attempts


def test_malformed_xml_is_communication_error(emulator, client):
    emulator.add_fault("alice", "malformed", count="1")
    with pytest.raises(CommunicationError) as caught:
        client.list_jobs()
    assert caught.value.code == 101
    client.list_jobs()  # the fault was used up


def test_slow_reply_times_out(emulator):
    emulator.add_fault("alice", "slow", delay="1.5", count="1")
    timeouts = Timeouts(connect=2, read=0.3, upload_read=0.3)
    with emulator.client(retry=NO_RETRY, timeouts=timeouts) as nsg:
        with pytest.raises(CommunicationError):
            nsg.list_jobs()


def test_slow_reply_is_retried(emulator):
    emulator.add_fault("alice", "slow", delay="1", count="1")
    timeouts = Timeouts(connect=2, read=0.3, upload_read=0.3)
    with emulator.client(timeouts=timeouts) as nsg:
        assert isinstance(nsg.list_jobs(), list)


def test_refused_connection_is_communication_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retry = RetryPolicy(attempts=2, base_delay_seconds=0.01)
    with NsgClient(f"http://127.0.0.1:{port}/cipresrest/v1", APP_KEY, "a", "b", retry=retry) as nsg:
        started = time.monotonic()
        with pytest.raises(CommunicationError) as caught:
            nsg.list_jobs()
    assert caught.value.code == 101
    assert time.monotonic() - started < 5


def test_download_length_mismatch_is_detected(client):
    status = wait_for_terminal(
        client,
        client.submit("PY_EXPANSE", package(HELLO_SCRIPT), vparams={"filename_": "init.py"}),
    )
    stdout = next(f for f in client.list_results(status) if f.filename == "STDOUT")
    with pytest.raises(DownloadIncomplete) as caught:
        client.download(dataclasses.replace(stdout, length=stdout.length + 1), io.BytesIO())
    assert isinstance(caught.value, CommunicationError)
    assert client.download(stdout, io.BytesIO()) == stdout.length
