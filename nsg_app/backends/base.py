from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from nsg_app.collection import ResultSource


class JobBackend(Protocol):
    name: str

    def submit(self, job) -> None:
        """Start the job; set its handle and first stage, or its error."""

    def refresh(self, job) -> None:
        """Bring the job's stage up to date (NSG polls per account; see nsg_app.services)."""

    def result_sources(self, job) -> Iterable[ResultSource]:
        """The finished job's result files, to be copied into storage."""

    def cancel(self, job) -> None:
        """Stop the job (and, on NSG, delete it there)."""
