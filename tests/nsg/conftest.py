"""The NSG emulator as a real subprocess on loopback, and clients talking to it."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from nsg_app.nsg import NsgClient, RetryPolicy, Timeouts

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_KEY = "TestApp-0123456789ABCDEF0123456789ABCDEF"
USERS = {"alice": "secret", "bob": "pw"}
# 0.1 h (the smallest runtime_) becomes 0.72 s, 2 h become 14.4 s.
TIME_SCALE = 0.002
FAST_RETRY = RetryPolicy(attempts=3, base_delay_seconds=0.01, max_delay_seconds=3.0)
TEST_TIMEOUTS = Timeouts(connect=5.0, read=30.0, upload_read=60.0)


@dataclass
class RunningEmulator:
    process: subprocess.Popen
    base_url: str
    data_dir: Path
    log_path: Path

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/cipresrest/v1")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def add_fault(self, user: str, kind: str, **fields) -> None:
        response = requests.post(
            f"{self.root_url}/_emulator/faults/{user}", data={"kind": kind, **fields}, timeout=5
        )
        response.raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.root_url}/_emulator/faults", timeout=5).raise_for_status()

    def requests_of(self, user: str) -> list[dict]:
        response = requests.get(f"{self.root_url}/_emulator/requests/{user}", timeout=5)
        response.raise_for_status()
        return response.json()

    def forget_requests(self) -> None:
        requests.delete(f"{self.root_url}/_emulator/requests", timeout=5).raise_for_status()

    def client(self, user: str = "alice", password: str | None = None, **options) -> NsgClient:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("timeouts", TEST_TIMEOUTS)
        return NsgClient(self.base_url, APP_KEY, user, password or USERS[user], **options)


def start_emulator(data_dir: Path, log_path: Path) -> RunningEmulator:
    command = [sys.executable, "-m", "nsg_app.emulator", "--host", "127.0.0.1", "--port", "0"]
    for user, password in USERS.items():
        command += ["--user", f"{user}:{password}"]
    command += [
        "--appkey",
        APP_KEY,
        "--stage-seconds",
        "0",
        "--min-poll-seconds",
        "0",
        "--time-scale",
        str(TIME_SCALE),
        "--enable-test-endpoints",
        "--data-dir",
        str(data_dir),
        "--verbose",
    ]
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed when we return
    try:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True
        )
    finally:
        log.close()
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+/cipresrest/v1)$", line.strip())
    if match is None:
        process.kill()
        process.wait()
        raise RuntimeError(f"emulator did not start: {line!r}\n{log_path.read_text()}")
    return RunningEmulator(process, match.group(1), data_dir, log_path)


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nsg-emulator")
    running = start_emulator(folder / "data", folder / "emulator.log")
    yield running
    running.stop()


@pytest.fixture
def emulator(emulator_process):
    """The shared emulator, with no faults and an empty request log."""
    emulator_process.clear_faults()
    emulator_process.forget_requests()
    yield emulator_process
    emulator_process.clear_faults()


@pytest.fixture
def client(emulator):
    with emulator.client("alice") as nsg:
        yield nsg


@pytest.fixture
def bob_client(emulator):
    with emulator.client("bob") as nsg:
        yield nsg


@pytest.fixture
def emulator_factory(tmp_path):
    """Start emulators of one's own (e.g. two in turn on the same data dir)."""
    started: list[RunningEmulator] = []

    def start(data_dir: Path | None = None) -> RunningEmulator:
        running = start_emulator(data_dir or tmp_path / "data", tmp_path / "emulator.log")
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
