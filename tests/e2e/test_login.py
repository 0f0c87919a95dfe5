import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_anonymous_visit_lands_on_the_login_page(page, live_server):
    page.goto(f"{live_server.url}/jobs/")

    expect(page).to_have_url(f"{live_server.url}/login/?next=/jobs/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("link", name="Catalogue")).to_have_count(0)


def test_user_logs_in_and_sees_the_navigation(page, live_server, login, alice):
    login(alice)

    nav = page.get_by_role("navigation", name="Main navigation")
    for name in ("Catalogue", "Jobs", "Analyses", "NSG account"):
        expect(nav.get_by_role("link", name=name)).to_be_visible()
    expect(nav).to_contain_text("alice")

    nav.get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()

    nav.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_wrong_password_shows_a_message(page, live_server, login, alice):
    login(alice, password="wrong")

    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
