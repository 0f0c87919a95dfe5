"""The one error an analysis raises: what kind of failure, a sentence, and the evidence."""

from __future__ import annotations

from typing import Any

# The kinds of failure, for the user interface to choose its wording and for tests.
INVALID_SOURCE = "invalid_source"  # missing, or neither an archive nor a folder
UNSAFE_ARCHIVE = "unsafe_archive"  # path escapes, links, too big: details["problems"]
CORRUPT_ARCHIVE = "corrupt_archive"  # damaged or not an archive: details["problems"]
NO_RUN_FOLDER = "no_run_folder"  # nothing holding config/ + opt_neuron.py + model/
INVALID_OPTIMISATION = "invalid_optimisation"  # the folder's configs are not usable
NO_CHECKPOINT = "no_checkpoint"
CHECKPOINT_UNREADABLE = "checkpoint_unreadable"
MECHANISMS = "mechanisms"  # nrnivmodl failed: details["log"]
MODEL_ERROR = "model_error"  # the model's own code raised: details["traceback"]
TIMEOUT = "timeout"
INTERRUPTED = "interrupted"
OUTPUT_EXISTS = "output_exists"
INTERNAL = "internal"  # the simulation process died without saying why: details["log"]


class AnalysisError(Exception):
    """An analysis that could not be done. ``kind`` is one of the constants above."""

    def __init__(self, kind: str, message: str, details: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.message = message
        self.details = details or {}
        super().__init__(message)

    def as_dict(self) -> dict[str, Any]:
        """The failure as written to ``error.json``."""
        return {"kind": self.kind, "message": self.message, "details": self.details}
