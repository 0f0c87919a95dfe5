"""The progress file: where an analysis stands, for a page that polls it.

Written by the engine and by its simulation process, always whole (a temporary file
renamed over the old one), so a reader never sees half a document.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from models_app.bpo.untrusted import KB, UntrustedFileError, read_untrusted_json

UNPACKING = "unpacking"
COMPILING = "compiling"
LOADING = "loading"
SIMULATING = "simulating"
SCORING = "scoring"
WRITING = "writing"
DONE = "done"
FAILED = "failed"
# A progress document is a few hundred bytes.
MAX_PROGRESS_BYTES = 64 * KB
STAGES = (UNPACKING, COMPILING, LOADING, SIMULATING, SCORING, WRITING, DONE, FAILED)


def write_progress(
    path: str | os.PathLike[str] | None,
    stage: str,
    message: str,
    *,
    protocols_done: int = 0,
    protocols_total: int = 0,
    **extra: Any,
) -> None:
    """Replace the progress file at ``path`` (nothing happens when ``path`` is None)."""
    if path is None:
        return
    if stage not in STAGES:
        raise ValueError(f"unknown analysis stage {stage!r}")
    document = {
        "stage": stage,
        "protocols_done": protocols_done,
        "protocols_total": protocols_total,
        "message": message,
        "updated_at": time.time(),
        **extra,
    }
    write_json_atomically(Path(path), document)


def relay_progress(content: bytes, path: Path) -> bool:
    """Copy a progress document the sandboxed simulation wrote to ``path``, if it is one.

    It comes from a process that runs the model's code: it is written out only when it
    reads as progress, re-encoded with the known fields, never as the bytes it came in.
    """
    try:
        document = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(document, dict) or document.get("stage") not in STAGES:
        return False
    counts = [document.get("protocols_done"), document.get("protocols_total")]
    if not all(isinstance(count, int) and not isinstance(count, bool) for count in counts):
        return False
    write_progress(
        path,
        document["stage"],
        str(document.get("message") or "")[:1000],
        protocols_done=counts[0],
        protocols_total=counts[1],
    )
    return True


def read_progress(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last progress written at ``path``, or None when there is none yet or it is not one.

    The simulation process, which runs the model's code, writes this file: it is read
    through ``models_app.bpo.untrusted`` (a regular file in its folder, of bounded size).
    """
    path = Path(path)
    try:
        document = read_untrusted_json(path, root=path.parent, max_bytes=MAX_PROGRESS_BYTES)
    except (FileNotFoundError, UntrustedFileError):
        return None
    return document if isinstance(document, dict) else None


def write_json_atomically(path: Path, document: Any, *, indent: int | None = None) -> None:
    """Write ``document`` as JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=indent, allow_nan=False)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
