from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from nsg_app.collection import ResultSource
from nsg_app.nsg import JobStatus


class JobBackend(Protocol):
    """Backends submit, hand over results and cancel. Following a job is the services'
    (nsg_app.polling polls NSG per account; a local run's task follows its runner)."""

    name: str

    def submit(self, job, *, retry: bool = False) -> JobStatus | None:
        """Start the job; set its handle, or its error. NSG returns its first status of
        the job for the services to record; a local run returns None once it has ended."""

    def result_sources(self, job) -> Iterable[ResultSource]:
        """The finished job's result files, to be copied into storage."""

    def cancel(self, job) -> None:
        """Stop the job (and, on NSG, delete it there)."""
