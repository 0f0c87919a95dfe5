"""Celery tasks: each loads its rows and calls a service (nsg_app.services, backends)."""

from celery import shared_task

from nsg_app import services


@shared_task(name="nsg_app.submit_job")
def submit_job(job_id: int) -> str:
    return services.job_start(job_id)


@shared_task(name="nsg_app.run_local_job")
def run_local_job(job_id: int) -> str:
    """A local run, start to end, or followed again: on the runs queue
    (settings.CELERY_TASK_ROUTES), served by a worker of its own."""
    return services.job_start(job_id)


@shared_task(name="nsg_app.poll_account")
def poll_account(account_id: int, force: bool = False) -> str:
    return services.account_poll_run(account_id, force=force)


@shared_task(name="nsg_app.poll_active_jobs")
def poll_active_jobs() -> dict:
    """Run by beat: the sweep over every job, analysis and save not yet at its end."""
    return services.sweep()


@shared_task(name="nsg_app.collect_job")
def collect_job(job_id: int) -> str:
    return services.job_collect(job_id)
