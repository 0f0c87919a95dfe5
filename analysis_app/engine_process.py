"""The analysis engine run as a process of its own: ``python -m analysis_app.engine``.

Why a child process: NEURON loads compiled mechanisms into its process for good and its
state is global, and a Celery prefork worker's processes must not run simulations (nor
fork pools) themselves. The child starts a session of its own, so that when the time is
up its whole process group (the engine, its simulation process and their forks) is killed
at once. The Celery task and ``manage.py analyse`` both come through ``run_engine``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis_app.engine import ANALYSIS_FILE, ERROR_FILE, read_progress
from analysis_app.engine.errors import INTERNAL, TIMEOUT
from models_app.bpo.sandbox import BWRAP, die_with_parent, kill_group
from models_app.bpo.untrusted import (
    MB,
    UntrustedFileError,
    read_untrusted_json,
    read_untrusted_tail,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.5
# The engine enforces the time limit itself; this much later the parent kills it.
GRACE_SECONDS = 30.0
LOG_NAME = "engine.log"
_LOG_TAIL = 20_000
# analysis.json holds downsampled traces and the hoc cells; error.json a log's tail.
MAX_ANALYSIS_BYTES = 256 * MB
MAX_ERROR_BYTES = 8 * MB


@dataclass(frozen=True)
class EngineOutcome:
    """How the engine process ended: its analysis.json content, or its error.json content."""

    out_dir: Path
    analysis: dict[str, Any] | None
    error: dict[str, Any] | None  # {"kind", "message", "details"}

    @property
    def succeeded(self) -> bool:
        return self.analysis is not None


def run_engine(
    *,
    source: Path,
    out_dir: Path,
    progress_file: Path,
    mechanisms_cache: Path,
    timeout: float,
    top: int = 1,
    checkpoint: str | None = None,
    work_dir: Path,
    max_unpacked_bytes: int,
    on_progress: Callable[[dict[str, Any] | None], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
    sandbox: str = BWRAP,
) -> EngineOutcome:
    """Analyse ``source`` into ``out_dir`` in a child process, and wait for it.

    ``on_progress`` is called about every ``poll_seconds`` with the progress file's content
    (None before the engine wrote one). The source is unpacked in ``work_dir`` (the
    analysis's own work folder, never the system's temporary one), to at most
    ``max_unpacked_bytes``. ``sandbox`` ("bwrap" or "off") is how the engine runs the
    model's code (the SANDBOX setting). Never raises for a failed analysis: the outcome
    holds the engine's error (kind, message, details).
    """
    out_dir = Path(out_dir)
    progress_file = Path(progress_file)
    progress_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "analysis_app.engine",
        str(source),
        "-o",
        str(out_dir),
        "--top",
        str(top),
        "--progress-file",
        str(progress_file),
        "--mechanisms-cache",
        str(mechanisms_cache),
        "--timeout",
        f"{timeout:g}",
        "--work-dir",
        str(work_dir),
        "--max-unpacked-bytes",
        str(max_unpacked_bytes),
        "--sandbox",
        sandbox,
    ]
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    log_file = progress_file.parent / LOG_NAME
    timed_out = False
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A worker SIGKILLed mid-analysis takes its engine along: the sweep gives the
            # analysis to another worker, and two engines must not run it.
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout + GRACE_SECONDS
        try:
            while True:
                try:
                    code = process.wait(timeout=poll_seconds)
                except subprocess.TimeoutExpired:
                    code = None
                if on_progress is not None:
                    on_progress(_progress(progress_file))
                if code is not None:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
        finally:
            # Whatever happened here (an exception, the worker stopping), nothing of the
            # analysis is left running.
            kill_group(process)
    return _outcome(out_dir, process.returncode, log_file, timed_out=timed_out, timeout=timeout)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    python_path = [str(PROJECT_ROOT)]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["MPLBACKEND"] = "Agg"
    return env


def _progress(path: Path) -> dict[str, Any] | None:
    try:
        return read_progress(path)
    except (OSError, ValueError):
        return None


def _outcome(
    out_dir: Path, code: int | None, log_file: Path, *, timed_out: bool, timeout: float
) -> EngineOutcome:
    if timed_out:
        return EngineOutcome(
            out_dir,
            None,
            {
                "kind": TIMEOUT,
                "message": f"The analysis took longer than its time limit of {timeout:g} s "
                "and was stopped.",
                "details": {"timeout_seconds": timeout, "log": _tail(log_file)},
            },
        )
    if code == 0:
        analysis = _document(out_dir, ANALYSIS_FILE, MAX_ANALYSIS_BYTES)
        if analysis is not None:
            return EngineOutcome(out_dir, analysis, None)
    error = _document(out_dir, ERROR_FILE, MAX_ERROR_BYTES)
    if error is not None:
        if error.get("kind") and error.get("message"):
            error.setdefault("details", {})
            return EngineOutcome(out_dir, None, error)
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited ({code})"
    return EngineOutcome(
        out_dir,
        None,
        {
            "kind": INTERNAL,
            "message": f"The analysis process {how} without a result; its log may say why.",
            "details": {"exit_code": code, "log": _tail(log_file)},
        },
    )


def _document(out_dir: Path, name: str, max_bytes: int) -> dict[str, Any] | None:
    """The engine's JSON file ``name`` in ``out_dir``; None when missing or unusable."""
    try:
        document = read_untrusted_json(out_dir / name, root=out_dir, max_bytes=max_bytes)
    except (OSError, UntrustedFileError):
        return None
    return document if isinstance(document, dict) else None


def _tail(path: Path) -> str:
    return read_untrusted_tail(path, root=path.parent, max_chars=_LOG_TAIL)
