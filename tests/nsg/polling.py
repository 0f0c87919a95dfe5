"""Wait for emulated jobs without sleeping longer than needed."""

from __future__ import annotations

import time
from collections.abc import Callable

from nsg_app.nsg import JobStatus, NsgClient


def wait_until(condition: Callable[[], object], *, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_for_terminal(client: NsgClient, status: JobStatus, *, timeout: float = 60.0) -> JobStatus:
    current = status

    def finished():
        nonlocal current
        current = client.job_status(current)
        return current.terminal

    wait_until(finished, timeout=timeout, what=f"{status.handle} to finish")
    return current
