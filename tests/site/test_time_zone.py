"""One time zone, named: server-rendered times and the live updates agree, in the user's zone."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from nsg_app.models import Job, JobStageChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice):
    job = Job.objects.create(
        owner=alice, backend=Job.Backend.LOCAL, folder="CA1_run_20261203120000", state="failed"
    )
    JobStageChange.objects.create(
        job=job, stage="QUEUE", at=datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC), message="queued"
    )
    return job


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Europe/Berlin", "2026-12-03 13:00:05 CET"),
        ("America/New_York", "2026-12-03 07:00:05 EST"),
        ("Not/AZone", "2026-12-03 12:00:05 UTC"),  # unknown: the site's zone, named
        ("", "2026-12-03 12:00:05 UTC"),
    ],
)
def test_job_times_on_the_page_and_in_live_updates_are_one_zone_named(
    client, alice, job, zone, shown
):
    client.force_login(alice)
    if zone:
        client.cookies["tz"] = zone
    page = client.get(reverse("nsg_app:job", args=[job.pk])).content.decode()
    status = client.get(reverse("nsg_app:job_status", args=[job.pk])).json()
    assert f'<td class="text-nowrap">{shown}</td>' in page
    assert [stage["at_shown"] for stage in status["stages"]] == [shown]
