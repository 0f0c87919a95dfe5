from celery import shared_task

from models_app.models import RepositoryRefresh
from models_app.services import repository_refresh_run


@shared_task(name="models_app.refresh_repository")
def refresh_repository(refresh_id: int) -> None:
    refresh = RepositoryRefresh.objects.get(pk=refresh_id)
    try:
        repository_refresh_run(refresh)
    except Exception as error:
        refresh.status = RepositoryRefresh.Status.FAILED
        refresh.error = f"{type(error).__name__}: {error}"
        refresh.save(update_fields=["status", "error"])
        raise
