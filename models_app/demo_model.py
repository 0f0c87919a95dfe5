"""The demo optimisation shipped with the project, imported on the first `make run`."""

from __future__ import annotations


def ensure_demo_model() -> str | None:
    return None
