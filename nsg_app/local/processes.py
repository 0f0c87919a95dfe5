"""Telling a live local run from a finished one after a restart, by its process id.

A process id is reused once its process is gone, so a run is recorded as (pid, start
time): the start time, in clock ticks since boot, is field 22 of /proc/<pid>/stat, and a
later process with the same id has a later start time.
"""

from __future__ import annotations

import contextlib
import os
import signal


def process_start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def process_running(pid: int | None, start_ticks: int | None) -> bool:
    """Whether the process recorded as (pid, start_ticks) still runs (zombies do not)."""
    if not pid or start_ticks is None:
        return False
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return False
    return fields[0] != "Z" and int(fields[19]) == start_ticks


def end_process_group(pid: int, start_ticks: int | None) -> None:
    """SIGKILL the session a run's runner leads, if that runner is still the one recorded."""
    if process_running(pid, start_ticks):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
