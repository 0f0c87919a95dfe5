"""A real Celery worker, on a real Redis, runs a task and the test reads its result."""

import pytest

from rebuild_site.tasks import worker_health

pytestmark = pytest.mark.postgres


@pytest.mark.django_db(transaction=True)
def test_worker_runs_a_task_and_returns_its_result(running_worker):
    result = worker_health.delay().get(timeout=30)

    assert set(result) == {"Database", "Storage", "Model sandbox"}
    assert result["Database"].startswith("ok: sqlite") or result["Database"].startswith(
        "ok: postgresql"
    )
    assert result["Storage"].startswith("ok: ")
    assert result["Model sandbox"].startswith("ok: bubblewrap ran `true` confined")


@pytest.mark.django_db(transaction=True)
def test_health_page_shows_every_part_working_to_staff(client, staff, running_worker):
    client.force_login(staff)

    response = client.get("/health/")

    assert response.status_code == 200
    page = response.content.decode()
    for part in ("Database", "Broker (Redis)", "Celery worker", "Storage", "Model sandbox"):
        assert f'data-check="{part}"' in page
    assert "Failing" not in page
    assert "database and storage reachable from the worker" in page
    assert "bubblewrap ran `true` confined" in page


def test_health_page_says_plainly_when_the_sandbox_is_off(client, staff, settings):
    settings.SANDBOX = "off"
    client.force_login(staff)

    page = client.get("/health/").content.decode()

    assert "SANDBOX is off: OFF: model code runs unconfined" in page


def test_health_page_is_for_staff_only(client, alice):
    client.force_login(alice)
    assert client.get("/health/").status_code == 403
