"""Where jobs run. Each backend submits, lists results and cancels; the rest
(stage history, collection into storage, flags, pages) is shared.

    backend = backend_for(job)
    backend.submit(job)
"""

from __future__ import annotations

from nsg_app.backends.base import JobBackend


def backend_for(job) -> JobBackend:
    from nsg_app.models import Job

    if job.backend == Job.Backend.NSG:
        from nsg_app.backends.nsg import NsgBackend

        return NsgBackend()
    if job.backend == Job.Backend.LOCAL:
        from nsg_app.backends.local import LocalBackend

        return LocalBackend()
    raise ValueError(f"unknown backend {job.backend!r}")
