"""Celery tasks: each calls a service (analysis_app.services) with the row's id."""

from celery import shared_task
from django.conf import settings

from analysis_app import services


@shared_task(name="analysis_app.run_analysis", bind=True)
def run_analysis(self, analysis_id: int) -> str:
    outcome = services.analysis_run(analysis_id=analysis_id)
    if outcome == services.RUNNING_ELSEWHERE:
        # A task delivered again after its worker died finds the analysis "running": it
        # looks again once that worker's heartbeat is stale, and takes the analysis over.
        raise self.retry(
            countdown=services.STALE_SECONDS,
            max_retries=settings.ANALYSIS_TIMEOUT_SECONDS // services.STALE_SECONDS + 2,
        )
    return outcome


@shared_task(name="analysis_app.save_analysis")
def save_analysis(analysis_id: int) -> str:
    return services.analysis_save_write(analysis_id=analysis_id)


@shared_task(name="analysis_app.save_comparison")
def save_comparison(comparison_id: int) -> str:
    return services.comparison_save_write(comparison_id=comparison_id)
