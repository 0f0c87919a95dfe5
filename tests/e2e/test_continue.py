"""Continue in a real browser: the published run continued here, then the cost forecast."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(transactional_db):
    from models_app.demo_model import ensure_demo_model

    return ensure_demo_model()


def test_continue_the_published_run_here_and_see_the_next_run_forecast(
    page, live_server, login, alice, demo, running_worker
):
    login(alice)
    page.get_by_role("link", name="Catalogue").click()
    page.get_by_role("link", name=demo).click()
    page.get_by_role("link", name="Continue it").click()

    expect(page.locator("#stored-generation")).to_have_text("4")
    expect(page.locator("#offspring-size")).to_have_text("4")
    expect(page.locator("#resume-note")).to_contain_text("evaluates the checkpoint's parents again")
    page.get_by_label("Maximum generations").fill("4")
    page.get_by_role("button", name="Create the continuing zip file").click()
    expect(page.get_by_text("must be more than 4")).to_be_visible()
    page.get_by_label("Maximum generations").fill("6")
    page.get_by_label("Run here").check()
    page.get_by_role("button", name="Create the continuing zip file").click()

    expect(page.get_by_role("heading", name="Run here")).to_be_visible()
    expect(page.locator("#run-cost-measured")).to_contain_text("measured yet")
    page.get_by_label("Cores").fill("2")
    page.get_by_role("button", name="Run here").click()

    expect(page.locator("#job-continues")).to_contain_text("from its generation 4")
    expect(page.get_by_role("table", name="Stored results")).to_contain_text(
        "output.tar.gz", timeout=120_000
    )
    expect(page.locator("#progress-text")).to_contain_text(
        "generation 6 of 6 (1 to 4 from the run continued)"
    )

    page.get_by_role("link", name="Run again with this seed").click()
    expect(page.locator("#run-cost-measured")).to_contain_text("measured by the run")
    expect(page.locator("#run-cost-summary")).to_contain_text(
        re.compile(r"About .* of wall time and .* core-hours for 12 evaluations")
    )
    expect(page.locator("#run-cost-warning")).to_be_hidden()
    page.get_by_label("Runtime limit (hours)").fill("0.0001")
    expect(page.locator("#run-cost-warning")).to_contain_text("more than the runtime limit")
