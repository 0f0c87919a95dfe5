"""Logging in and out; every page but login needs a user; no open sign-up; admin for staff."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.postgres

PAGES = ["/", "/catalogue/", "/jobs/", "/analyses/", "/jobs/nsg-account/", "/health/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visit_lands_on_the_login_page(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert f"next={path}" in response["Location"]


@pytest.mark.django_db
def test_login_page_is_open_and_has_no_sign_up(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    page = response.content.decode().lower()
    assert "log in" in page
    assert "sign up" not in page and "register" not in page
    assert client.get("/signup/").status_code in (302, 404)


@pytest.mark.django_db
def test_user_logs_in_and_out(client, alice):
    response = client.post(
        reverse("login"), {"username": "alice", "password": "pass-word-123"}, follow=True
    )
    page = response.content.decode()
    assert "Catalogue" in page and "Jobs" in page and "Analyses" in page and "NSG account" in page
    assert "alice" in page

    response = client.post(reverse("logout"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("login")
    assert client.get("/catalogue/").status_code == 302


@pytest.mark.django_db
def test_wrong_password_is_refused_with_a_message(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})

    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


@pytest.mark.django_db
def test_admin_is_for_staff_only(client, alice, staff):
    client.force_login(alice)
    assert client.get("/admin/").status_code == 302  # to the admin login: not staff

    client.force_login(staff)
    staff.is_superuser = True
    staff.save()
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_staff_see_health_and_admin_links_others_do_not(client, alice, staff):
    client.force_login(alice)
    page = client.get("/catalogue/").content.decode()
    assert 'href="/health/"' not in page and 'href="/admin/"' not in page

    client.force_login(staff)
    page = client.get("/catalogue/").content.decode()
    assert 'href="/health/"' in page and 'href="/admin/"' in page


@pytest.mark.django_db
def test_repeated_wrong_logins_are_paused_even_for_the_right_password(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
        assert "correct username and password" in response.content.decode()

    locked = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert locked.status_code == 429
    assert "Too many wrong passwords" in locked.content.decode()
    # while paused, the right password does not get in either
    again = client.post(reverse("login"), {"username": "alice", "password": "pass-word-123"})
    assert again.status_code == 429
    assert client.get("/catalogue/").status_code == 302
    # another user is not affected
    other = client.post(reverse("login"), {"username": "bob", "password": "nope"})
    assert other.status_code == 200


@pytest.mark.django_db
def test_a_right_password_resets_the_count(client, alice, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(reverse("login"), {"username": "alice", "password": "nope"})
    client.post(reverse("login"), {"username": "alice", "password": "pass-word-123"})
    client.post(reverse("logout"))
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
