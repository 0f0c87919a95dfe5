"""The live progress of a local run, read from the small JSON file its processes write.

The optimisation process writes the file itself (``inject/rebuild_local_optimisation.py``)
after each evaluation and each generation; the runner writes it before (preparing) and after
(the final status). Writes replace the file atomically. Readers (the web process, the
terminal progress bar) only read it and never wait on the run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from models_app.bpo.untrusted import KB, UntrustedFileError, read_untrusted_json

from .inject.rebuild_local_optimisation import (
    RUNNING,
    now_text,
    progress_document,
    write_progress_document,
)

PREPARING = "preparing"
# A progress document is under a kilobyte.
MAX_PROGRESS_BYTES = 64 * KB
# The final phases are the run statuses (runner.RunStatus values).
FINAL_PHASES = frozenset({"completed", "failed", "cancelled", "time_limit"})
PHASES = FINAL_PHASES | {PREPARING, RUNNING}


@dataclass(frozen=True)
class Progress:
    """One reading of the progress file. Fitness figures are those of the logbook's last record."""

    phase: str
    started_at: datetime
    updated_at: datetime
    message: str = ""
    cores: int | None = None
    generation: int = 0  # the last generation recorded in the logbook
    max_ngen: int | None = None
    offspring_size: int | None = None
    evaluations_done: int = 0
    evaluations_in_generation: int = 0  # done so far in the generation under way
    evaluations_expected: int | None = None
    best: float | None = None  # logbook "min"
    average: float | None = None  # logbook "avg"
    std: float | None = None
    worst: float | None = None  # logbook "max"
    evaluation_seconds: float = 0.0  # wall time spent inside the optimisation's map calls
    evaluations_started_at: datetime | None = None
    # On an ipyparallel cluster: evaluations done by each engine (id -> count), engines lost.
    engines: dict[int, int] = field(default_factory=dict)
    engines_lost: tuple[int, ...] = ()

    @property
    def finished(self) -> bool:
        return self.phase in FINAL_PHASES

    @property
    def fraction_done(self) -> float | None:
        if self.phase == "completed":
            return 1.0
        if not self.evaluations_expected:
            return None
        return min(self.evaluations_done / self.evaluations_expected, 1.0)


def read_progress(path: str | os.PathLike[str]) -> Progress | None:
    """The progress in ``path``, or None when it is missing, unreadable or not a progress file."""
    document = _written_document(Path(path))
    if document is None:
        return None
    try:
        return _progress(document)
    except (KeyError, TypeError, ValueError):
        return None


def _written_document(path: Path) -> dict[str, Any] | None:
    """The JSON object in the progress file, or None. The run's own processes (the model's
    code among them) write it, so it is read as an untrusted file: regular, bounded."""
    try:
        document = read_untrusted_json(path, root=path.parent, max_bytes=MAX_PROGRESS_BYTES)
    except (OSError, UntrustedFileError):
        return None
    return document if isinstance(document, dict) else None


def _progress(document: dict[str, Any]) -> Progress:
    phase = document["phase"]
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    return Progress(
        phase=phase,
        started_at=_moment(document["started_at"]),
        updated_at=_moment(document["updated_at"]),
        message=str(document.get("message") or ""),
        cores=_whole(document.get("cores")),
        generation=_whole(document.get("generation")) or 0,
        max_ngen=_whole(document.get("max_ngen")),
        offspring_size=_whole(document.get("offspring_size")),
        evaluations_done=_whole(document.get("evaluations_done")) or 0,
        evaluations_in_generation=_whole(document.get("evaluations_in_generation")) or 0,
        evaluations_expected=_whole(document.get("evaluations_expected")),
        best=_real(document.get("best")),
        average=_real(document.get("average")),
        std=_real(document.get("std")),
        worst=_real(document.get("worst")),
        evaluation_seconds=_real(document.get("evaluation_seconds")) or 0.0,
        evaluations_started_at=(
            _moment(document["evaluations_started_at"])
            if document.get("evaluations_started_at")
            else None
        ),
        engines=_engine_counts(document.get("engines")),
        engines_lost=tuple(
            number
            for number in (_count(value) for value in _list(document.get("engines_lost")))
            if number is not None
        ),
    )


# Written by the run's process: a bounded number of engines is read, the rest ignored.
_MAX_ENGINES = 4096


def _engine_counts(value: object) -> dict[int, int]:
    if not isinstance(value, dict):
        return {}
    counts = {}
    for key, count in list(value.items())[:_MAX_ENGINES]:
        engine, number = _count(key), _count(count)
        if engine is not None and number is not None:
            counts[engine] = number
    return dict(sorted(counts.items()))


def _count(value: object) -> int | None:
    """A whole number, or a string of digits (JSON's object keys), else None."""
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _list(value: object) -> list:
    return value[:_MAX_ENGINES] if isinstance(value, list) else []


def _moment(text: object) -> datetime:
    if not isinstance(text, str):
        raise TypeError("a time must be ISO 8601 text")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _whole(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a whole number: {value!r}")
    return value


def _real(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def estimate_time_left(progress: Progress, now: datetime | None = None) -> timedelta | None:
    """Time until the last evaluation, at the pace of the evaluations so far; None if unknown.

    The pace is wall time per evaluation since the optimisation started evaluating, so it
    already reflects the number of cores. It ignores the start-up before the first
    evaluation and the packing after the last one (a few seconds).
    """
    if progress.finished:
        return timedelta(0)
    if (
        progress.evaluations_expected is None
        or progress.evaluations_started_at is None
        or progress.evaluations_done <= 0
    ):
        return None
    now = now or datetime.now(UTC)
    spent = (progress.updated_at - progress.evaluations_started_at).total_seconds()
    pace = max(spent, 0.0) / progress.evaluations_done
    remaining = max(progress.evaluations_expected - progress.evaluations_done, 0)
    since_update = max((now - progress.updated_at).total_seconds(), 0.0)
    return timedelta(seconds=max(remaining * pace - since_update, 0.0))


def write_runner_phase(
    path: Path,
    *,
    phase: str,
    message: str,
    started_at: str,
    cores: int,
) -> None:
    """Record the runner's phase, keeping the figures the optimisation wrote last."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    document = progress_document(cores=cores, started_at=started_at, phase=phase)
    written = _written_document(path)
    if written is not None and written.get("started_at") == started_at:
        document.update({key: written[key] for key in document.keys() & written.keys()})
    document.update(phase=phase, message=message, updated_at=now_text())
    write_progress_document(path, document)


def relay_progress(content: bytes, path: Path, *, started_at: str) -> bool:
    """Copy a progress document written inside the sandbox to ``path``, if it is one.

    The document comes from the model's processes: it is written out only when it reads as
    this run's progress (the same start), re-encoded, never as the bytes it came in.
    """
    try:
        document = json.loads(content.decode("utf-8"))
        if not isinstance(document, dict) or document.get("started_at") != started_at:
            return False
        _progress(document)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        return False
    known = progress_document(cores=None, started_at=started_at).keys()
    write_progress_document(path, {key: document[key] for key in known if key in document})
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files left beside ``path`` by a writer that was killed mid-write."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
