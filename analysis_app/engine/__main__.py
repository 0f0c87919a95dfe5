"""``python -m analysis_app.engine SOURCE -o OUT_DIR``: analyse one optimisation result.

Exits 0 with OUT_DIR/analysis.json written, or non-zero with OUT_DIR/error.json (kind,
message, details) when the analysis failed. ``--timeout`` ends the analysis and every
process it started once the time is up; so does SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from models_app.bpo.sandbox import BWRAP, MODES, Sandbox

from .analysis import DEFAULT_MAX_UNPACKED_BYTES, analyse, unpack_limits, write_error_file
from .errors import INTERRUPTED, OUTPUT_EXISTS, AnalysisError

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def default_mechanisms_cache() -> Path:
    """``$VAR_DIR/mechanisms``, the site's cache (``var/`` beside the project by default)."""
    var_dir = os.environ.get("VAR_DIR") or Path(__file__).resolve().parents[2] / "var"
    return Path(var_dir) / "mechanisms"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis_app.engine",
        description="Re-simulate and score the best individuals of a BluePyOpt optimisation.",
    )
    parser.add_argument(
        "source",
        type=Path,
        help="NSG's output.tar.gz, a zip of NSG results, or a run or catalogue model folder",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="the analysis folder")
    parser.add_argument(
        "--top", type=int, default=1, help="hall-of-fame individuals to analyse (default 1)"
    )
    parser.add_argument("--checkpoint", help="checkpoint file name in checkpoints/")
    parser.add_argument("--progress-file", type=Path, help="JSON file updated as it goes")
    parser.add_argument(
        "--mechanisms-cache",
        type=Path,
        default=None,
        help="compiled mechanisms cache (default $VAR_DIR/mechanisms)",
    )
    parser.add_argument("--timeout", type=float, help="seconds before the analysis is stopped")
    parser.add_argument(
        "--processes", type=int, help="protocols simulated at once (default: CPU count)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where the source is unpacked, in a folder removed at the end (default: "
        "beside the analysis folder)",
    )
    parser.add_argument(
        "--max-unpacked-bytes",
        type=int,
        default=DEFAULT_MAX_UNPACKED_BYTES,
        help=f"the most the source may unpack to (default {DEFAULT_MAX_UNPACKED_BYTES})",
    )
    parser.add_argument(
        "--sandbox",
        choices=MODES,
        default=BWRAP,
        help="how the model's code runs: bwrap (confined, the default) or off (unconfined, "
        "as this user: only for models you trust)",
    )
    return parser


class _Terminated(BaseException):
    pass


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.top < 1:
        parser().error("--top must be at least 1")
    if args.processes is not None and args.processes < 1:
        parser().error("--processes must be at least 1")
    if args.max_unpacked_bytes < 1:
        parser().error("--max-unpacked-bytes must be at least 1")

    def terminate(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        result = analyse(
            args.source,
            args.out,
            mechanisms_cache=args.mechanisms_cache or default_mechanisms_cache(),
            top=args.top,
            progress_file=args.progress_file,
            processes=args.processes,
            checkpoint=args.checkpoint,
            timeout=args.timeout,
            limits=unpack_limits(args.max_unpacked_bytes),
            work_root=args.work_dir,
            sandbox=Sandbox(args.sandbox),
        )
    except AnalysisError as error:
        return _failed(args.out, error, EXIT_FAILED)
    except (KeyboardInterrupt, _Terminated):
        error = AnalysisError(INTERRUPTED, "The analysis was interrupted.")
        return _failed(args.out, error, EXIT_INTERRUPTED)

    fitness = result.best["fitness"]
    print(f"Analysis written to {result.analysis_file}")
    print(
        f"Fitness of the best individual: recomputed {fitness['recomputed']}, "
        f"stored {fitness['stored']}"
    )
    if fitness["large_difference"]:
        print(f"Warning: {fitness['note']}")
    return 0


def _failed(out: Path, error: AnalysisError, code: int) -> int:
    if error.kind != OUTPUT_EXISTS:  # never write into somebody else's analysis
        out.mkdir(parents=True, exist_ok=True)
        path = write_error_file(out, error)
        print(f"Analysis failed ({error.kind}): {error.message}\nDetails: {path}", file=sys.stderr)
    else:
        print(f"Analysis failed ({error.kind}): {error.message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
