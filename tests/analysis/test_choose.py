"""Choosing what to analyse on /analyses/, and "View analysis" queuing it."""

import re
from unittest import mock

import pytest
from django.urls import reverse

from analysis_app.models import Analysis

URL = reverse("analysis_app:analyses")


def checked_source(page: str) -> str:
    radios = re.findall(r'<input type="radio" name="source" value="(\w+)"[^>]*>', page)
    checked = re.findall(r'<input type="radio" name="source" value="(\w+)"[^>]* checked>', page)
    assert len(radios) == 3 and len(checked) == 1
    return checked[0]


@pytest.fixture
def queued():
    """The Celery task's queue, replaced: these tests look at what the page asks for."""
    with mock.patch("analysis_app.tasks.run_analysis.delay") as delay:
        yield delay


@pytest.fixture
def stored_job(alice, collected_job, tmp_path):
    """A collected job of Alice's (its tarball need not be a real run here)."""
    tarball = tmp_path / "output.tar.gz"
    tarball.write_bytes(b"")
    return collected_job(alice, tarball)


def test_it_requires_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_offers_the_user_s_stored_results_and_the_catalogue_s_best_runs(
    client, alice, bob, demo, stored_job, collected_job, tmp_path
):
    (tmp_path / "bob.tar.gz").write_bytes(b"")
    bobs = collected_job(bob, tmp_path / "bob.tar.gz", folder="CA1_bob_20261125000000")
    client.force_login(alice)
    page = client.get(URL).content.decode()
    assert stored_job.folder in page
    assert bobs.folder not in page
    assert f"{demo.name} (seed1.pkl)" in page
    assert page.count("View analysis") == 1


def test_two_runs_of_one_package_are_told_apart_by_number_time_and_seed(
    client, alice, collected_job, tmp_path
):
    from datetime import UTC, datetime

    (tmp_path / "run.tar.gz").write_bytes(b"")
    first = collected_job(alice, tmp_path / "run.tar.gz", folder="CA1_run_20261125000000")
    second = collected_job(alice, tmp_path / "run.tar.gz", folder="CA1_run_20261125000100")
    first.seed, first.date_submitted = 11, datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    first.save()
    second.seed = None
    second.save()
    client.force_login(alice)
    client.cookies["tz"] = "Europe/Rome"  # the browser's zone: UTC+1 in November
    page = client.get(URL).content.decode()
    assert (
        f"Job {first.pk} · CA1_run_20261125000000 · NSG · submitted 2026-11-25 10:30:00 CET"
        " · seed 11"
    ) in page
    assert f"Job {second.pk} · CA1_run_20261125000100 · NSG · submitted " in page
    assert "seed not known" in page


def test_the_jobs_analyse_button_preselects_the_job(client, alice, stored_job):
    client.force_login(alice)
    page = client.get(f"{URL}?job={stored_job.pk}").content.decode()
    assert f'<option value="{stored_job.pk}" selected>' in page
    assert checked_source(page) == "job"


def test_without_stored_results_the_catalogue_is_chosen_first(client, alice, demo):
    client.force_login(alice)
    page = client.get(URL).content.decode()
    assert checked_source(page) == "catalogue"
    assert "No stored result yet" in page


def test_view_analysis_of_a_catalogue_model_queues_it_and_opens_its_page(
    client, alice, demo, queued, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            URL, {"source": "catalogue", "optimisation": demo.pk, "top": 2}, follow=True
        )
    analysis = Analysis.objects.get()
    assert response.redirect_chain[-1][0] == analysis.get_absolute_url()
    assert (analysis.owner, analysis.source_kind, analysis.top) == (alice, "catalogue", 2)
    assert (analysis.folder, analysis.checkpoint) == (demo.name, "seed1.pkl")
    assert analysis.status == "queued"
    queued.assert_called_once_with(analysis.pk)
    page = response.content.decode()
    assert "Waiting for a worker" in page
    assert 'role="progressbar"' in page


def test_view_analysis_of_a_stored_result(client, alice, stored_job, queued):
    client.force_login(alice)
    response = client.post(URL, {"source": "job", "job": stored_job.pk, "top": 1})
    analysis = Analysis.objects.get()
    assert response.status_code == 302
    assert (analysis.job, analysis.folder) == (stored_job, stored_job.folder)


def test_another_user_s_job_cannot_be_chosen(client, bob, stored_job, queued):
    client.force_login(bob)
    response = client.post(URL, {"source": "job", "job": stored_job.pk, "top": 1})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Analysis.objects.exists()


def test_staff_may_analyse_any_stored_result(client, staff, stored_job, queued):
    client.force_login(staff)
    response = client.post(URL, {"source": "job", "job": stored_job.pk, "top": 1})
    assert response.status_code == 302
    assert Analysis.objects.get().owner == staff


@pytest.mark.parametrize(
    "data, message",
    [
        ({"source": "job", "top": 1}, "Choose a stored result."),
        ({"source": "catalogue", "top": 1}, "Choose a catalogue model."),
        ({"source": "upload", "top": 1}, "Choose NSG&#x27;s output.tar.gz"),
        ({"source": "catalogue", "optimisation": "x", "top": 0}, "greater than or equal to 1"),
        ({"source": "nonsense", "top": 1}, "Select a valid choice"),
    ],
)
def test_incomplete_choices_are_explained(client, alice, demo, data, message, queued):
    client.force_login(alice)
    response = client.post(URL, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Analysis.objects.exists()
    queued.assert_not_called()


def test_a_job_without_output_tarball_is_refused(client, alice, stored_job, queued):
    stored_job.result_files.filter(name="output.tar.gz").delete()
    client.force_login(alice)
    response = client.post(URL, {"source": "job", "job": stored_job.pk, "top": 1})
    assert response.status_code == 400
    assert "holds no output.tar.gz" in response.content.decode()


def test_the_list_shows_only_the_user_s_analyses(client, alice, bob, demo):
    Analysis.objects.create(owner=alice, source_kind="catalogue", optimisation=demo, folder="mine")
    Analysis.objects.create(owner=bob, source_kind="catalogue", optimisation=demo, folder="bobs")
    client.force_login(alice)
    page = client.get(URL).content.decode()
    assert ">mine<" in page and ">bobs<" not in page
