"""Following NSG jobs: one poll per account, its reply applied to the job rows.

Part of the services layer: only nsg_app.services calls it (the poll task, the sweep's
choice of due accounts, a submission's first status). The NSG backend only talks to NSG
(nsg_app.backends.nsg.account_statuses); nothing here queues a task.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from nsg_app.backends.nsg import CLIENT_JOB_PREFIX, account_statuses
from nsg_app.models import Job, NsgAccount
from nsg_app.nsg import JobStatus, NsgError, UsageLimit
from nsg_app.stages import job_finish, stage_record

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600

# What a poll of an account ended with (the poll task's return value).
POLLED = "polled"
POLL_FAILED = "failed"
NOT_DUE = "not due"


def job_apply_status(job: Job, status: JobStatus, *, recorded_stages: int | None = None) -> None:
    """Store what NSG says of a job: new stage messages, its stage, and whether it ended.

    `recorded_stages`, when known, is how many stage changes the job has stored: a reply
    that says nothing new then costs no write at all (most jobs, most polls).
    """
    unchanged = (
        recorded_stages is not None
        and job.stage == status.stage
        and recorded_stages >= len(status.messages)
        and not (status.terminal and job.state in Job.ACTIVE_STATES)
    )
    if unchanged:
        return
    for message in status.messages:
        stage_record(
            job, message.stage, at=message.timestamp or timezone.now(), message=message.text
        )
    if status.stage and not any(m.stage == status.stage for m in status.messages):
        stage_record(job, status.stage, at=timezone.now())
    job.stage = status.stage
    job.date_submitted = status.date_submitted or job.date_submitted
    job.save(update_fields=["stage", "date_submitted", "updated_at"])
    if status.terminal and job.state in Job.ACTIVE_STATES:
        if status.failed:
            job_finish(
                job,
                state=Job.State.FAILED,
                error=f"NSG reports that the job failed at stage {status.stage}.",
            )
        else:
            job_finish(job, state=Job.State.COMPLETED)


def accounts_due(now: datetime | None = None) -> QuerySet[NsgAccount]:
    """Accounts with active NSG jobs whose next poll is due."""
    now = now or timezone.now()
    active_owners = (
        Job.objects.filter(backend=Job.Backend.NSG, state__in=Job.ACTIVE_STATES)
        .exclude(handle="")
        .values("owner")
    )
    return NsgAccount.objects.filter(owner__in=active_owners).filter(
        Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    )


def account_poll(account_id: int, *, force: bool = False) -> str:
    """One `GET /job/{user}?expand=true` for the account, if due (or forced but still no
    faster than NSG's minimum interval); every job in the reply is brought up to date.
    Jobs NSG lists that the site does not know (submitted elsewhere) are added."""
    now = timezone.now()
    due = Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now)
    if force:
        # "Check now" may come early, but never sooner than the server's minimum interval.
        due = Q(last_polled_at__isnull=True) | Q(
            last_polled_at__lte=now - _poll_interval(account_id)
        )
    # Claim the poll with a conditional update, so two workers never poll one account twice.
    claimed = (
        NsgAccount.objects.filter(pk=account_id)
        .filter(due)
        .update(next_poll_at=now + timedelta(seconds=MAX_BACKOFF_SECONDS), last_polled_at=now)
    )
    if not claimed:
        return NOT_DUE
    account = NsgAccount.objects.get(pk=account_id)
    try:
        statuses = account_statuses(account)
    except NsgError as error:
        account.poll_failures += 1
        wait = _backoff(account, error)
        account.next_poll_at = now + timedelta(seconds=wait)
        account.last_error = f"{timezone.now():%Y-%m-%d %H:%M:%S} {type(error).__name__}: {error.display_message or error}"
        account.save(update_fields=["poll_failures", "next_poll_at", "last_error"])
        logger.warning(
            "NSG poll of %s failed (%s); next try in %.0f s",
            account.username,
            type(error).__name__,
            wait,
        )
        return POLL_FAILED
    server_interval = max(
        (s.min_poll_interval_seconds for s in statuses), default=account.poll_interval_seconds
    )
    account.poll_interval_seconds = max(float(server_interval), settings.NSG_MIN_POLL_SECONDS)
    account.poll_failures = 0
    account.last_error = ""
    account.next_poll_at = now + timedelta(seconds=account.poll_interval_seconds)
    account.save(
        update_fields=["poll_interval_seconds", "poll_failures", "last_error", "next_poll_at"]
    )
    statuses_apply(account, statuses)
    return POLLED


def _poll_interval(account_id: int) -> timedelta:
    interval = (
        NsgAccount.objects.filter(pk=account_id)
        .values_list("poll_interval_seconds", flat=True)
        .first()
    )
    return timedelta(seconds=interval or 0)


def _backoff(account: NsgAccount, error: NsgError) -> float:
    base = max(account.poll_interval_seconds, settings.NSG_MIN_POLL_SECONDS, 1.0)
    wait = min(base * 2 ** (account.poll_failures - 1), MAX_BACKOFF_SECONDS)
    if isinstance(error, UsageLimit) and error.retry_after_seconds:
        wait = max(wait, min(error.retry_after_seconds, MAX_BACKOFF_SECONDS))
    return wait


def statuses_apply(account: NsgAccount, statuses: list[JobStatus]) -> None:
    known = {
        job.handle: job
        for job in Job.objects.filter(
            backend=Job.Backend.NSG, handle__in=[s.handle for s in statuses]
        ).annotate(recorded_stages=Count("stages"))
    }
    # One transaction per reply: a poll of an account is one write to the database.
    with transaction.atomic():
        for status in statuses:
            _status_apply(account, known, status)


def _status_apply(account: NsgAccount, known: dict[str, Job], status: JobStatus) -> None:
    job = known.get(status.handle)
    if job is None:
        job = _job_for_unknown_handle(account, status)
    elif job.owner_id != account.owner_id:
        return  # never let one account's reply touch another user's job
    job_apply_status(job, status, recorded_stages=getattr(job, "recorded_stages", None))


def _job_for_unknown_handle(account: NsgAccount, status: JobStatus) -> Job:
    client_id = status.client_job_id or ""
    if (
        client_id.startswith(CLIENT_JOB_PREFIX)
        and client_id.removeprefix(CLIENT_JOB_PREFIX).isdigit()
    ):
        # Ours, but the submission's reply was lost: adopt it.
        job = Job.objects.filter(
            pk=int(client_id.removeprefix(CLIENT_JOB_PREFIX)), owner=account.owner, handle=""
        ).first()
        if job is not None:
            job.handle = status.handle
            if job.state in (Job.State.SUBMITTING, Job.State.SUBMIT_FAILED):
                job.state = Job.State.ACTIVE  # a cancelled one stays cancelled
            job.save(update_fields=["handle", "state", "updated_at"])
            return job
    return _external_job(account, status)


def _external_job(account: NsgAccount, status: JobStatus) -> Job:
    wanted = _safe_folder(status.metadata.get("clientJobName") or status.handle)
    # Each run has a folder of its own: a name already used by another job gets a number.
    folder, number = wanted, 1
    while Job.objects.filter(owner=account.owner, folder=folder).exists():
        number += 1
        folder = f"{wanted}-{number}"
    terminal_state = Job.State.FAILED if status.failed else Job.State.COMPLETED
    return Job.objects.create(
        owner=account.owner,
        backend=Job.Backend.NSG,
        handle=status.handle,
        external=True,
        folder=folder,
        stage=status.stage,
        state=terminal_state if status.terminal else Job.State.ACTIVE,
        date_submitted=status.date_submitted,
    )


def _safe_folder(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name).strip("._")
    return cleaned[:150] or "job"
