"""``python -m nsg_app.local PACKAGE.zip -o DIR``: run a package here and show its progress.

Runs synchronously, with a one-line progress bar on the terminal (plain text, redrawn with a
carriage return; one line per change when the output is not a terminal). Ends with a
summary, ``DIR/result.json`` (``LocalRunResult.as_dict()``) and an exit code: 0 completed,
1 failed, 3 time limit, 4 cancelled, 2 for unusable arguments.

A Celery task starts this as a child process (a prefork worker's daemon processes may not
have children of their own), follows ``--progress-file`` and asks for a cancel by creating
``--cancel-file`` (or by sending SIGTERM). ``add_arguments`` and ``run_from_arguments``
serve the ``run_local`` management command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from models_app.bpo.sandbox import BWRAP, MODES, Sandbox
from models_app.bpo.untrusted import MB, UntrustedFileError, read_untrusted_json

from . import outputs
from .progress import PREPARING, Progress, estimate_time_left, read_progress
from .runner import LocalRunResult, RunStatus, run_package

EXIT_CODES = {
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.TIME_LIMIT: 3,
    RunStatus.CANCELLED: 4,
}
USAGE_ERROR = 2
RESULT_NAME = "result.json"
MAX_RESULT_BYTES = 1 * MB
PROGRESS_NAME = "progress.json"
DEFAULT_RUNTIME_HOURS = 0.5  # NSG's usual default for runtime_
_BAR_WIDTH = 20


def default_mechanisms_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rebuild-scm" / "mechanisms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="the run package zip")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="working folder of the run, where STDOUT, STDERR and output.tar.gz are written "
        "(created if missing; must not hold an earlier run)",
    )
    parser.add_argument(
        "--cores",
        type=_whole_number,
        default=0,
        help="evaluation processes (default 0: every CPU)",
    )
    parser.add_argument(
        "--runtime-hours",
        type=_positive_number,
        default=DEFAULT_RUNTIME_HOURS,
        help=f"time limit in hours, as NSG's runtime_ (default {DEFAULT_RUNTIME_HOURS})",
    )
    parser.add_argument(
        "--mechanisms-cache",
        type=Path,
        default=None,
        help=f"compiled mechanisms are kept here (default {default_mechanisms_cache()})",
    )
    parser.add_argument(
        "--progress-file",
        type=Path,
        default=None,
        help=f"where the live progress is written (default DIR/{PROGRESS_NAME})",
    )
    parser.add_argument(
        "--sandbox",
        choices=MODES,
        default=None,
        help="how the model's code runs: bwrap (confined; the default, or the SANDBOX "
        "setting under manage.py) or off (unconfined, as this user: only for models you trust)",
    )
    parser.add_argument(
        "--cluster",
        type=Path,
        default=None,
        metavar="CONNECTION_FILE",
        help="evaluate on the engines of an ipyparallel cluster: its client connection file "
        "(ipcontroller-client.json) or profile folder; the engines must see the output "
        "folder at the same path (--cores is then ignored)",
    )
    parser.add_argument(
        "--cancel-file",
        type=Path,
        default=None,
        help="the run is cancelled as soon as this file exists",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nsg_app.local",
        description="Run a BluePyOpt run package on this machine, as NSG would.",
    )
    add_arguments(parser)
    return run_from_arguments(parser.parse_args(argv))


def run_from_arguments(args: argparse.Namespace, *, stream: TextIO | None = None) -> int:
    stream = stream or sys.stdout
    output: Path = args.output
    progress_file: Path = args.progress_file or output / PROGRESS_NAME
    cancel_file: Path | None = args.cancel_file
    display = TerminalProgress(progress_file, stream)

    def should_stop() -> bool:
        # Called by the runner about twice a second: the moment to redraw the bar too.
        display.update()
        return cancel_file is not None and cancel_file.exists()

    try:
        result = run_package(
            args.package,
            output,
            cores=args.cores,
            runtime_seconds=args.runtime_hours * 3600,
            mechanisms_cache=args.mechanisms_cache or default_mechanisms_cache(),
            progress_file=progress_file,
            cancel_check=should_stop,
            sandbox=Sandbox(getattr(args, "sandbox", None) or BWRAP),
            cluster=getattr(args, "cluster", None),
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as error:
        # Whoever started this process reads result.json: leave one even after a bug.
        traceback.print_exc()
        result = _internal_error_result(output, error)
    display.update()
    display.close()
    write_result(output / RESULT_NAME, result)
    stream.write(summary(result, output / RESULT_NAME))
    stream.flush()
    return EXIT_CODES[result.status]


def _internal_error_result(output: Path, error: Exception) -> LocalRunResult:
    stderr_tail = "".join(traceback.format_exception(error))[-4000:]
    return LocalRunResult(
        status=RunStatus.FAILED,
        exit_code=None,
        reason=f"The local runner broke: {type(error).__name__}: {error}",
        stdout_path=output / outputs.STDOUT_NAME,
        stderr_path=output / outputs.STDERR_NAME,
        output_path=output / outputs.OUTPUT_NAME,
        checkpoint_found=False,
        elapsed_seconds=0.0,
        stderr_tail=stderr_tail,
    )


def write_result(path: Path, result: LocalRunResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_result(path: Path) -> LocalRunResult | None:
    """The result.json a finished run wrote, or None when missing or unreadable."""
    try:
        # In the run's working folder, where the model's code could have put something else.
        document = read_untrusted_json(path, root=path.parent, max_bytes=MAX_RESULT_BYTES)
        return LocalRunResult.from_dict(document)
    except (OSError, UntrustedFileError, ValueError, KeyError, TypeError, AttributeError):
        return None


def summary(result: LocalRunResult, result_file: Path) -> str:
    checkpoint = "written" if result.checkpoint_found else "none"
    lines = [
        f"Status:     {result.status.value}: {result.reason}",
        f"Elapsed:    {_clock(result.elapsed_seconds)} (preparing "
        f"{result.preparation_seconds:.1f} s, init.py {result.process_seconds:.1f} s, "
        f"{result.cores} cores)",
        f"Checkpoint: {checkpoint}",
        f"STDOUT:     {result.stdout_path}",
        f"STDERR:     {result.stderr_path}",
        f"Output:     {result.output_path}",
        f"Result:     {result_file}",
    ]
    if result.cluster is not None:
        lines.insert(2, f"Engines:    {engines_line(result.cluster)}")
    if result.status is RunStatus.FAILED and result.stderr_tail:
        lines += ["", "End of STDERR:", result.stderr_tail]
    return "\n".join(lines) + "\n"


def engines_line(cluster: dict) -> str:
    """``2 (0: 7 evaluations, 1: 9 evaluations; lost: 0)``: the engines of a cluster run."""
    engines = [engine for engine in cluster.get("engines", []) if isinstance(engine, dict)]
    parts = [
        f"{engine.get('id')}: {engine.get('evaluations', 0)} evaluations" for engine in engines
    ]
    lost = cluster.get("engines_lost") or []
    text = f"{len(engines)} ({', '.join(parts)}"
    if lost:
        text += f"; lost: {', '.join(map(str, lost))}"
    return text + ")"


class TerminalProgress:
    """Draws the progress file as one line: redrawn in place on a terminal."""

    def __init__(self, progress_file: Path, stream: TextIO) -> None:
        self.progress_file = progress_file
        self.stream = stream
        self.interactive = stream.isatty()
        self._started = time.monotonic()
        self._width = 0
        self._last_state: tuple | None = None

    def update(self) -> None:
        progress = read_progress(self.progress_file)
        line = progress_line(progress, elapsed_seconds=time.monotonic() - self._started)
        if self.interactive:
            padding = " " * max(self._width - len(line), 0)
            self.stream.write(f"\r{line}{padding}")
            self._width = len(line)
        else:
            state = (
                None
                if progress is None
                else (
                    progress.phase,
                    progress.message,
                    progress.generation,
                    progress.evaluations_done,
                )
            )
            if state == self._last_state:
                return
            self._last_state = state
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive and self._width:
            self.stream.write("\n")
            self.stream.flush()


def progress_line(
    progress: Progress | None, *, elapsed_seconds: float, now: datetime | None = None
) -> str:
    """``[#####.....] gen 1/3 | evals 6/12 | best 3.21 | elapsed 0:00:15 | left ~0:00:10``."""
    elapsed = f"elapsed {_clock(elapsed_seconds)}"
    if progress is None:
        return f"starting | {elapsed}"
    if progress.phase == PREPARING:
        return f"preparing: {progress.message or '...'} | {elapsed}"
    fraction = progress.fraction_done or 0.0
    filled = round(fraction * _BAR_WIDTH)
    parts = [f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}]"]
    parts.append(f"gen {progress.generation}/{progress.max_ngen or '?'}")
    parts.append(f"evals {progress.evaluations_done}/{progress.evaluations_expected or '?'}")
    if progress.best is not None:
        parts.append(f"best {progress.best:.4g}")
    parts.append(elapsed)
    if progress.finished:
        parts.append(progress.phase)
    else:
        left = estimate_time_left(progress, now or datetime.now(UTC))
        if left is not None:
            parts.append(f"left ~{_clock(left.total_seconds())}")
    return " | ".join(parts)


def _clock(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value
