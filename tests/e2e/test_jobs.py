"""Jobs in a real browser: Login NSG, Run NSG simulation, stages advancing, results stored; Run here."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(transactional_db):
    from models_app.demo_model import ensure_demo_model

    return ensure_demo_model()


def _create_package(page, demo_name: str) -> None:
    page.get_by_role("link", name="Catalogue").click()
    page.get_by_role("link", name=demo_name).click()
    page.get_by_role("tab", name="Optimisation").click()
    page.get_by_label("Offspring size").fill("2")
    page.get_by_label("Maximum generations").fill("2")
    page.get_by_role("button", name="Create zip file").click()
    expect(page.get_by_text("Created CA1_pyr_cACpyr_ballstick3_")).to_be_visible()
    page.get_by_role("tab", name="Optimisation").click()


def test_login_nsg_run_watch_the_stages_and_see_the_stored_files(
    page, live_server, login, alice, demo, running_worker, running_beat
):
    login(alice)
    page.get_by_role("link", name="NSG account").click()
    page.get_by_label("NSG user name").fill("alice")
    page.get_by_label("NSG password").fill("wrong")
    page.get_by_role("button", name="Login NSG").click()
    expect(page.get_by_role("alert")).to_contain_text("NSG refused this user name and password.")
    page.get_by_label("NSG password").fill("secret")
    page.get_by_role("button", name="Login NSG").click()
    expect(page.get_by_text("Logged in to NSG as alice").first).to_be_visible()

    _create_package(page, demo)
    page.get_by_role("link", name="Run NSG simulation").first.click()
    page.get_by_label("Number of nodes").fill("1")
    page.get_by_label("Cores per node").fill("2")
    page.get_by_label("Runtime (hours)").fill("48")
    page.get_by_role("button", name="Run NSG simulation").click()

    expect(page.locator("#job-handle")).to_contain_text(
        "NGBW-JOB-BLUEPYOPT_EXPANSE-", timeout=30_000
    )
    stages = page.get_by_role("table", name="Stage history")
    for stage in (
        "QUEUE",
        "COMMANDRENDERING",
        "INPUTSTAGING",
        "SUBMITTED",
        "LOAD_RESULTS",
        "COMPLETED",
    ):
        expect(stages).to_contain_text(stage, timeout=120_000)
    files = page.get_by_role("table", name="Stored results")
    expect(files).to_contain_text("output.tar.gz", timeout=60_000)
    expect(files).to_contain_text("STDOUT")
    expect(page.locator("#job-state")).to_have_text("In storage")

    # Copying a stored job again checks its copy and changes nothing.
    page.get_by_role("button", name="Copy to storage").click()
    expect(page.get_by_text("Nothing was copied again.")).to_be_visible()
    expect(page.locator("#job-state")).to_have_text("In storage")
    expect(page.get_by_role("table", name="Stored results")).to_contain_text("output.tar.gz")
    with page.expect_download() as download:
        page.get_by_role("link", name="STDOUT").click()
    assert download.value.suggested_filename == "STDOUT"

    # The job list's columns fit a laptop's width, with every action of a stored job shown.
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Jobs").click()
    jobs = page.get_by_role("table", name="Jobs")
    expect(jobs.get_by_role("link", name="Analyse")).to_be_visible()
    overflow = jobs.evaluate(
        "table => table.scrollWidth - table.parentElement.clientWidth"
        " + Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"
    )
    assert overflow <= 0, f"the job list is {overflow} px wider than the page"


def test_run_here_shows_the_generations_going_by(
    page, live_server, login, alice, demo, running_worker
):
    login(alice)
    _create_package(page, demo)
    page.get_by_role("link", name="Run here").first.click()
    page.get_by_label("Cores").fill("2")
    page.get_by_role("button", name="Run here").click()

    expect(page.locator("#progress-text")).to_contain_text(
        re.compile(r"generation \d of 2"), timeout=60_000
    )
    expect(page.get_by_role("table", name="Stored results")).to_contain_text(
        "output.tar.gz", timeout=120_000
    )
    expect(page.locator("#progress-text")).to_contain_text("generation 2 of 2")
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("table", name="Jobs")).to_contain_text("This machine")
