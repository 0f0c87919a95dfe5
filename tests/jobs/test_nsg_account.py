"""Login NSG: checked with NSG at once, stored encrypted, never shown again; Forget."""

import pytest
from django.test import override_settings

from nsg_app.models import NsgAccount

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_login_nsg_checks_and_stores_the_password_encrypted(client, alice, emulator):
    client.force_login(alice)

    response = client.post(
        "/jobs/nsg-account/", {"username": "alice", "password": "secret"}, follow=True
    )

    page = response.content.decode()
    assert "Logged in to NSG as alice" in page
    assert "secret" not in page
    account = NsgAccount.objects.get(owner=alice)
    assert "secret" not in account.password_token
    assert account.password() == "secret"
    assert any(
        r["path"].startswith("/cipresrest/v1/job/alice") for r in emulator.requests_of("alice")
    )


def test_wrong_credentials_are_refused_with_a_clear_message(client, alice, emulator):
    client.force_login(alice)

    response = client.post("/jobs/nsg-account/", {"username": "alice", "password": "wrong"})

    assert response.status_code == 400
    assert "NSG refused this user name and password." in response.content.decode()
    assert not NsgAccount.objects.exists()


def test_nsg_unreachable_is_said_plainly(client, alice):
    client.force_login(alice)
    from rebuild_site.services import free_port

    with override_settings(NSG_BASE_URL=f"http://127.0.0.1:{free_port()}/cipresrest/v1"):
        response = client.post("/jobs/nsg-account/", {"username": "alice", "password": "secret"})

    assert response.status_code == 400
    assert "NSG could not be reached" in response.content.decode()
    assert not NsgAccount.objects.exists()


def test_forget_deletes_the_credentials(client, alice, nsg_account):
    nsg_account(alice)
    client.force_login(alice)

    response = client.post("/jobs/nsg-account/forget/", follow=True)

    assert "Your NSG credentials were deleted." in response.content.decode()
    assert not NsgAccount.objects.exists()


def test_the_password_is_never_logged(client, alice, emulator, caplog):
    client.force_login(alice)
    with caplog.at_level("DEBUG"):
        client.post("/jobs/nsg-account/", {"username": "alice", "password": "secret"})
    assert "secret" not in caplog.text


def test_the_admin_lists_accounts_without_passwords(client, staff, alice, nsg_account):
    nsg_account(alice)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)

    listing = client.get("/admin/nsg_app/nsgaccount/").content.decode()
    change = client.get(
        f"/admin/nsg_app/nsgaccount/{NsgAccount.objects.get().pk}/change/"
    ).content.decode()

    assert "alice" in listing
    account = NsgAccount.objects.get()
    for page in (listing, change):
        assert account.password_token not in page and "secret" not in page


def test_a_site_without_an_nsg_application_key_says_so(client, alice, settings):
    settings.NSG_APP_KEY = ""
    client.force_login(alice)

    response = client.post("/jobs/nsg-account/", {"username": "alice", "password": "secret"})

    assert response.status_code == 400
    assert "no NSG application key" in response.content.decode()


def test_credentials_outside_latin_1_log_in_and_never_show(client, alice, emulator):
    client.force_login(alice)

    response = client.post(
        "/jobs/nsg-account/", {"username": "zoë✓", "password": "pässwörd✓€"}, follow=True
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "Logged in to NSG as zoë✓" in page
    assert "pässwörd" not in page
    assert NsgAccount.objects.get(owner=alice).password() == "pässwörd✓€"


def test_a_wrong_password_outside_latin_1_is_refused_plainly(client, alice, emulator):
    client.force_login(alice)

    response = client.post("/jobs/nsg-account/", {"username": "alice", "password": "❤" * 40})

    assert response.status_code == 400
    assert "NSG refused this user name and password." in response.content.decode()
    assert "❤" not in response.content.decode()
    assert not NsgAccount.objects.exists()
