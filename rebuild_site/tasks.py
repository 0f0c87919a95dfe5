from celery import shared_task

from rebuild_site import health


@shared_task(name="rebuild_site.worker_health")
def worker_health() -> dict[str, str]:
    """The database, storage and sandbox as the worker sees them (the health page runs it)."""
    checks = [
        health.timed("Database", health.database),
        health.timed("Storage", health.storage),
        health.timed("Model sandbox", health.sandbox),
    ]
    return {check.name: ("ok: " if check.ok else "failing: ") + check.detail for check in checks}
