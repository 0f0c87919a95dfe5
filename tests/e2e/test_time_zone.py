"""The browser's own zone: the page and its live updates show the same times, zone named."""

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from nsg_app.models import Job, JobStageChange

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_tokyo_browser_sees_tokyo_times_before_and_after_the_live_update(
    browser, live_server, alice
):
    job = Job.objects.create(
        owner=alice, backend=Job.Backend.LOCAL, folder="CA1_run_20261203120000", state="active"
    )
    JobStageChange.objects.create(
        job=job, stage="QUEUE", at=datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC), message="queued"
    )
    context = browser.new_context(timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(alice.username)
        page.get_by_label("Password").fill("pass-word-123")
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{live_server.url}{job.get_absolute_url()}")
        stages = page.locator("#job-stages")
        expect(stages).to_contain_text("2026-12-03 21:00:05 JST")
        # the live update (every 2 s) rebuilds the rows: mark the server-rendered ones, wait
        # until they are replaced, and read the time the update wrote
        page.evaluate(
            "document.querySelectorAll('#job-stages td').forEach(td => td.dataset.old = 1)"
        )
        expect(stages.locator("td[data-old]")).to_have_count(0)
        expect(stages.locator("td").first).to_have_text("2026-12-03 21:00:05 JST")
    finally:
        context.close()
