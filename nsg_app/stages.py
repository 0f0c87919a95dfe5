"""Recording a job's stages and moving it between states; shared by every backend."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from nsg_app.models import Job, JobStageChange


def stage_record(job: Job, stage: str, *, at: datetime | None = None, message: str = "") -> bool:
    """Store a stage change unless the same (stage, time, message) is already stored.

    The submission's task and a poll can both report a new job's first stages at once.
    The job's row is locked while looking (PostgreSQL; SQLite has no row locks), and a
    change stored twice by such a race is never an error (get_or_create would raise).
    """
    at = at or timezone.now()
    message = message[:2000]
    with transaction.atomic():
        list(Job.objects.select_for_update().filter(pk=job.pk).values_list("pk", flat=True))
        if JobStageChange.objects.filter(job=job, stage=stage, at=at, message=message).exists():
            return False
        JobStageChange.objects.create(job=job, stage=stage, at=at, message=message)
    return True


def job_finish(job: Job, *, state: str, error: str = "") -> None:
    """Move a job to a terminal state. Recording queues nothing: the service that drove the
    backend queues the copy of a completed job (nsg_app.services.finished_jobs_collect),
    and the sweep finds any it missed."""
    job.state = state
    if error:
        job.error = error
    job.save(update_fields=["state", "error", "updated_at"])
