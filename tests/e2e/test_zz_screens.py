import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_screens(page, live_server, login, alice, running_worker, transactional_db):
    from analysis_app.models import Analysis
    from models_app.demo_model import ensure_demo_model
    from models_app.models import Optimisation

    demo = ensure_demo_model()
    model = Optimisation.objects.get(name=demo)
    page.set_viewport_size({"width": 1400, "height": 1000})
    login(alice)
    page.goto(f"{live_server.url}/analyses/")
    page.screenshot(path="/tmp/shots/choose_empty.png", full_page=True)
    page.get_by_label("Catalogue model's best run").check()
    page.get_by_label("Catalogue model", exact=True).select_option(label=f"{demo} (seed1.pkl)")
    page.get_by_label("Best individuals to simulate").fill("2")
    page.get_by_role("button", name="View analysis").click()
    expect(page.locator("#figure-traces .main-svg").first).to_be_visible(timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path="/tmp/shots/done_top.png")
    page.screenshot(path="/tmp/shots/done_full.png", full_page=True)
    # a running one, frozen
    running = Analysis.objects.create(
        owner=alice,
        source_kind="catalogue",
        optimisation=model,
        folder=demo,
        status="running",
        progress={
            "stage": "simulating",
            "message": "Ran step_0.5",
            "protocols_done": 2,
            "protocols_total": 6,
        },
    )
    page.goto(f"{live_server.url}/analyses/{running.pk}/")
    page.wait_for_timeout(1500)
    page.screenshot(path="/tmp/shots/running.png")
    failed = Analysis.objects.create(
        owner=alice,
        source_kind="catalogue",
        optimisation=model,
        folder=demo,
        status="failed",
        error_kind="mechanisms",
        error_message="The mechanisms did not compile; nrnivmodl's log says why.",
        error_details={
            "problems": ["nrnivmodl exited with code 1", "see the log for broken.mod"],
            "log": "Translating broken.mod into broken.c\nError: syntax error at line 2\n THIS IS NOT NMODL\n",
        },
    )
    page.goto(f"{live_server.url}/analyses/{failed.pk}/")
    page.screenshot(path="/tmp/shots/failed.png")
    page.goto(f"{live_server.url}/analyses/")
    page.screenshot(path="/tmp/shots/choose_list.png", full_page=True)
