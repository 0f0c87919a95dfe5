"""Job flows shared by the pages, the admin and the Celery tasks."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from models_app.bpo.untrusted import UntrustedFileError
from nsg_app.backends import backend_for
from nsg_app.backends.nsg import nsg_client
from nsg_app.collection import CollectError, store_results
from nsg_app.models import Job, NsgAccount
from nsg_app.nsg import AuthenticationError, NsgError

logger = logging.getLogger(__name__)


class AccountCheckFailed(Exception):
    """The NSG credentials could not be confirmed, with a message for the user."""


@sensitive_variables("password")
def nsg_account_save(*, owner, username: str, password: str) -> NsgAccount:
    """Check the credentials against NSG at once, then store them (password encrypted)."""
    if not settings.NSG_APP_KEY:
        raise AccountCheckFailed(
            "The site has no NSG application key (NSG_APP_KEY), so NSG cannot be used yet: "
            "ask the site's staff."
        )
    try:
        with nsg_client(username, password, interactive=True) as client:
            client.list_jobs()
    except AuthenticationError:
        raise AccountCheckFailed("NSG refused this user name and password.") from None
    except NsgError as error:
        raise AccountCheckFailed(
            f"NSG could not be reached to check the credentials ({error.display_message or type(error).__name__}). Try again later."
        ) from None
    account, _ = NsgAccount.objects.get_or_create(owner=owner, defaults={"username": username})
    account.username = username
    account.set_password(password)
    account.verified_at = timezone.now()
    account.next_poll_at = None
    account.poll_failures = 0
    account.last_error = ""
    account.save()
    return account


def job_create_nsg(
    *, owner, package, tool: str, nodes: int, cores_per_node: int, runtime_hours: float
) -> Job:
    job = Job.objects.create(
        owner=owner,
        backend=Job.Backend.NSG,
        package=package,
        folder=package.run_name,
        tool=tool,
        nodes=nodes,
        cores_per_node=cores_per_node,
        runtime_hours=runtime_hours,
    )
    from nsg_app.tasks import submit_job

    transaction.on_commit(lambda: submit_job.delay(job.pk))
    return job


def job_create_local(*, owner, package, cores_per_node: int, runtime_hours: float) -> Job:
    job = Job.objects.create(
        owner=owner,
        backend=Job.Backend.LOCAL,
        package=package,
        folder=package.run_name,
        cores_per_node=cores_per_node,
        runtime_hours=runtime_hours,
    )
    from nsg_app.tasks import submit_job

    transaction.on_commit(lambda: submit_job.delay(job.pk))
    return job


def job_submit(job: Job) -> None:
    if job.state != Job.State.SUBMITTING:
        return
    try:
        backend_for(job).submit(job)
    except Exception as error:
        # Never leave a job "running" that nothing follows: say it failed, and why.
        logger.exception("job %s failed in its task", job.pk)
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.FAILED,
            error=f"The job stopped on an internal error: {type(error).__name__}: {error}",
        )
        raise


def job_collect(job_id: int) -> str:
    """Copy the job's results into storage, unless another worker is doing it right now."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.COLLECT_STALE_SECONDS)
    claimed = (
        Job.objects.filter(pk=job_id)
        .filter(
            Q(state__in=[Job.State.COMPLETED, Job.State.COLLECTED])
            | Q(state=Job.State.COLLECTING, collect_heartbeat_at__lt=stale)
        )
        .update(state=Job.State.COLLECTING, collect_heartbeat_at=now)
    )
    if not claimed:
        return "not claimed"  # not finished, gone, or another worker is copying it now
    job = Job.objects.select_related("owner").get(pk=job_id)

    def heartbeat() -> None:
        Job.objects.filter(pk=job_id, state=Job.State.COLLECTING).update(
            collect_heartbeat_at=timezone.now()
        )

    try:
        store_results(job, backend_for(job).result_sources(job), heartbeat=heartbeat)
    except (CollectError, NsgError, OSError, UntrustedFileError) as error:
        # Back to COMPLETED: the results are still at the backend and can be copied again.
        Job.objects.filter(pk=job_id).update(
            state=Job.State.COMPLETED,
            collect_heartbeat_at=None,
            error=f"Copying the results failed ({error}); it can be tried again.",
        )
        logger.warning("collecting job %s failed: %s", job_id, error)
        return "failed"
    return "collected"


def stale_collections() -> list[int]:
    stale = timezone.now() - timedelta(seconds=settings.COLLECT_STALE_SECONDS)
    return list(
        Job.objects.filter(state=Job.State.COLLECTING, collect_heartbeat_at__lt=stale).values_list(
            "pk", flat=True
        )
    )


def job_cancel(job: Job) -> None:
    backend_for(job).cancel(job)
