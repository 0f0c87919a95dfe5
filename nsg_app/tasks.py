"""Celery tasks: each loads its rows and calls a service (nsg_app.services, backends)."""

from celery import shared_task

from nsg_app import services
from nsg_app.backends.nsg import account_poll, accounts_due
from nsg_app.models import Job


@shared_task(name="nsg_app.submit_job")
def submit_job(job_id: int) -> None:
    job = Job.objects.select_related("package", "owner").filter(pk=job_id).first()
    if job is not None:  # deleted meanwhile: nothing to submit
        services.job_submit(job)


@shared_task(name="nsg_app.poll_account")
def poll_account(account_id: int, force: bool = False) -> str:
    return account_poll(account_id, force=force)


@shared_task(name="nsg_app.poll_active_jobs")
def poll_active_jobs() -> dict:
    """Run by beat: one poll task per NSG account that is due, and restart stale copies."""
    accounts = list(accounts_due().values_list("pk", flat=True))
    for account_id in accounts:
        poll_account.delay(account_id)
    stale = services.stale_collections()
    for job_id in stale:
        collect_job.delay(job_id)
    return {"accounts": len(accounts), "restarted_collections": len(stale)}


@shared_task(name="nsg_app.collect_job")
def collect_job(job_id: int) -> str:
    return services.job_collect(job_id)
