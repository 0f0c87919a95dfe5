from celery import shared_task

from models_app.models import RepositoryRefresh
from models_app.services import (
    mechanisms_compile,
    mechanisms_requeue_stale,
    repository_refresh_run,
)


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


# Nobody waits for its result: the outcome is stored on the model.
@shared_task(name="models_app.compile_model_mechanisms", ignore_result=True)
def compile_model_mechanisms(optimisation_id: int) -> str:
    return mechanisms_compile(optimisation_id=optimisation_id)


@shared_task(name="models_app.requeue_mechanism_compiles")
def requeue_mechanism_compiles() -> int:
    """Run by beat: compiles whose task message was lost or whose worker died go again."""
    return len(mechanisms_requeue_stale())
