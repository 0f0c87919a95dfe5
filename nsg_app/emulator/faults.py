"""Faults the emulator can inject, per user, so tests can see how a client copes.

Request faults act on the user's authenticated requests:
  http500      answer 500 (error code 100)
  slow         wait `delay` seconds before answering
  malformed    send a broken XML document instead of the real one (status 200)
  usage_limit  answer 429 (error code 103) with a <limitStatus>; `reset_minutes` goes
               into it and `retry_after` (seconds), when given, into a Retry-After header
Job faults act on the user's next submitted jobs:
  staging_failure  the job ends at INPUTSTAGING, terminal and failed
  walltime         the job's time limit becomes `seconds` (default 0): Slurm kills it

Each fault lasts for `count` requests (or jobs), or for ever when no count is given.
Written on the command line as USER:KIND[:name=value,...], e.g. `alice:http500:count=2`.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

REQUEST_FAULTS = ("slow", "usage_limit", "http500", "malformed")
JOB_FAULTS = ("staging_failure", "walltime")
FAULT_KINDS = REQUEST_FAULTS + JOB_FAULTS
_NUMBER_FIELDS = ("delay", "reset_minutes", "retry_after", "seconds")


@dataclass
class Fault:
    kind: str
    count: int | None = None  # None: for ever
    delay: float = 0.0
    reset_minutes: float = 1.0
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def from_fields(cls, kind: str, fields: dict[str, str]) -> Fault:
        """Build a fault from text fields (command line or form); ValueError if bad."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        fault = cls(kind=kind)
        for name, value in fields.items():
            if name == "count":
                fault.count = int(value) if value not in {"", "always"} else None
                if fault.count is not None and fault.count < 1:
                    raise ValueError("count must be at least 1")
            elif name in _NUMBER_FIELDS:
                number = float(value)
                if number < 0:
                    raise ValueError(f"{name} must not be negative")
                setattr(fault, name, number)
            else:
                raise ValueError(f"unknown fault field {name!r}")
        return fault


def parse_fault_option(text: str) -> tuple[str, Fault]:
    """`USER:KIND[:name=value,...]` -> (user, fault)."""
    user, _, rest = text.partition(":")
    kind, _, options = rest.partition(":")
    if not user or not kind:
        raise ValueError(f"expected USER:KIND[:name=value,...], got {text!r}")
    fields = {}
    for item in filter(None, options.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected name=value in {text!r}")
        fields[name.strip()] = value.strip()
    return user, Fault.from_fields(kind, fields)


class FaultRegistry:
    """Active faults per user; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {}

    def add(self, user: str, fault: Fault) -> None:
        with self._lock:
            faults = self._faults.setdefault(user, [])
            faults[:] = [existing for existing in faults if existing.kind != fault.kind]
            faults.append(fault)

    def clear(self, user: str | None = None) -> None:
        with self._lock:
            if user is None:
                self._faults.clear()
            else:
                self._faults.pop(user, None)

    def take(self, user: str, kind: str) -> Fault | None:
        """The user's active fault of this kind, using up one of its count."""
        with self._lock:
            faults = self._faults.get(user, [])
            for fault in faults:
                if fault.kind != kind:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        faults.remove(fault)
                return Fault(**asdict(fault))
        return None

    def snapshot(self) -> dict[str, list[dict]]:
        with self._lock:
            return {user: [asdict(f) for f in faults] for user, faults in self._faults.items()}
