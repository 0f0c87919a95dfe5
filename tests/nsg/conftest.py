"""The NSG emulator as a real subprocess on loopback, and clients talking to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.emulator import RunningEmulator, shared_emulator, start_emulator


@pytest.fixture(scope="session")
def emulator_process():
    return shared_emulator()


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
