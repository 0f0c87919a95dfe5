"""Analyses are their owner's (and staff's): anyone else gets 404 at every address."""

import pytest
from django.urls import reverse

from analysis_app.models import Analysis

pytestmark = pytest.mark.slow


def addresses(analysis) -> list[str]:
    pk = analysis.pk
    return [
        reverse("analysis_app:analysis", args=[pk]),
        reverse("analysis_app:status", args=[pk]),
        reverse("analysis_app:figures", args=[pk]),
        reverse("analysis_app:figure_download", args=[pk, "traces", "png"]),
        reverse("analysis_app:figure_download", args=[pk, "evolution", "html"]),
        reverse("analysis_app:file", args=[pk, "cell_best.hoc"]),
        reverse("analysis_app:file", args=[pk, "analysis.json"]),
        reverse("analysis_app:traces", args=[pk, "best"]),
    ]


def test_another_user_gets_404_everywhere(client, bob, catalogue_analysis):
    client.force_login(bob)
    for url in addresses(catalogue_analysis):
        assert client.get(url).status_code == 404, url
    response = client.post(reverse("analysis_app:save", args=[catalogue_analysis.pk]))
    assert response.status_code == 404
    catalogue_analysis.refresh_from_db()
    assert catalogue_analysis.save_status == ""
    listing = client.get(reverse("analysis_app:analyses")).content.decode()
    assert catalogue_analysis.get_absolute_url() not in listing


def test_the_owner_opens_everything(client, alice, catalogue_analysis):
    client.force_login(alice)
    for url in addresses(catalogue_analysis):
        assert client.get(url).status_code == 200, url


def test_staff_see_every_analysis_but_save_only_their_own(client, staff, catalogue_analysis):
    client.force_login(staff)
    page = client.get(catalogue_analysis.get_absolute_url())
    assert page.status_code == 200
    assert "owner alice" in page.content.decode()
    assert "Save analysis" not in page.content.decode()
    response = client.post(reverse("analysis_app:save", args=[catalogue_analysis.pk]), follow=True)
    assert "Only the analysis&#x27; owner can save it" in response.content.decode()
    listing = client.get(reverse("analysis_app:analyses")).content.decode()
    assert catalogue_analysis.get_absolute_url() in listing


def test_anonymous_visitors_are_sent_to_log_in(client, catalogue_analysis):
    for url in addresses(catalogue_analysis)[:3]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_no_such_analysis_is_a_404(client, alice, db):
    client.force_login(alice)
    assert client.get(reverse("analysis_app:analysis", args=[999999])).status_code == 404
    assert not Analysis.objects.exists()


def test_the_admin_lists_analyses_by_status_and_source(client, make_user, catalogue_analysis):
    admin = make_user("root", staff=True)
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    changelist = reverse("admin:analysis_app_analysis_changelist")
    page = client.get(changelist, {"status__exact": "done", "q": "alice"}).content.decode()
    assert catalogue_analysis.folder in page
    assert "By status" in page and "By source" in page
    empty = client.get(changelist, {"status__exact": "failed"}).content.decode()
    assert catalogue_analysis.folder not in empty
    change = reverse("admin:analysis_app_analysis_change", args=[catalogue_analysis.pk])
    assert client.get(change).status_code == 200
