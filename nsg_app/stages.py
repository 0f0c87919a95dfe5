"""Recording a job's stages and moving it between states; shared by every backend."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from nsg_app.models import Job, JobStageChange


def stage_record(job: Job, stage: str, *, at: datetime | None = None, message: str = "") -> bool:
    """Store a stage change unless the same (stage, time, message) is already stored."""
    at = at or timezone.now()
    _, created = JobStageChange.objects.get_or_create(
        job=job, stage=stage, at=at, message=message[:2000]
    )
    return created


def job_finish(job: Job, *, state: str, error: str = "") -> None:
    """Move a job to a terminal state. Recording queues nothing: the service that drove the
    backend queues the copy of a completed job (nsg_app.services.finished_jobs_collect),
    and the sweep finds any it missed."""
    job.state = state
    if error:
        job.error = error
    job.save(update_fields=["state", "error", "updated_at"])
