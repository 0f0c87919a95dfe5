""" "Save analysis": BluePyOptAnalysis/<user>/<folder>/, complete, never overwritten."""

import hashlib
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from analysis_app import services
from analysis_app.engine.figures import FIGURE_NAMES, FigureExportError
from analysis_app.models import Analysis

from .conftest import RECORDINGS, remove_stored_folder, stored_files

pytestmark = pytest.mark.slow


@pytest.fixture
def saving_now():
    """The save task, run at once in this process instead of by a worker."""

    def run(analysis_id):
        return services.analysis_save_write(analysis_id=analysis_id)

    with mock.patch("analysis_app.tasks.save_analysis.delay", side_effect=run) as delay:
        yield delay


def save(client, analysis, capture, folder=None):
    """Click "Save analysis" (with the folder name typed, if any); the page as it shows
    then, and once the copy is done."""
    data = {} if folder is None else {"folder": folder}
    with capture(execute=True):
        response = client.post(reverse("analysis_app:save", args=[analysis.pk]), data, follow=True)
    analysis.refresh_from_db()
    after = client.get(analysis.get_absolute_url())
    return response.content.decode() + after.content.decode()


def digest(name: str) -> str:
    with default_storage.open(name) as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture
def clean_saved_folder(catalogue_analysis):
    """The demo's saved folder, empty before the test and after it."""
    prefix = services.saved_folder(catalogue_analysis)
    remove_stored_folder(prefix)
    yield prefix
    remove_stored_folder(prefix)


def test_the_saved_folder_holds_the_analysis_figures_and_cell(
    client,
    alice,
    catalogue_analysis,
    clean_saved_folder,
    saving_now,
    django_capture_on_commit_callbacks,
):
    client.force_login(alice)
    page = save(client, catalogue_analysis, django_capture_on_commit_callbacks)
    prefix = f"BluePyOptAnalysis/alice/{catalogue_analysis.folder}"
    assert clean_saved_folder == prefix
    assert f"Saving the analysis to {prefix}/" in page
    assert f"Saved in <code>{prefix}/</code>" in page
    assert (catalogue_analysis.save_status, catalogue_analysis.saved_to) == ("saved", prefix)

    saved = stored_files(prefix)
    assert {"analysis.json", "cell_best.hoc", "morphology/ballstick3.swc"} <= saved
    assert {f"traces/best/{recording}.csv" for recording in RECORDINGS} <= saved
    for name in FIGURE_NAMES:
        assert f"figures/{name}.html" in saved and f"figures/{name}.png" in saved
    with default_storage.open(f"{prefix}/figures/traces.png") as handle:
        assert handle.read(4) == b"\x89PNG"
    with default_storage.open(f"{prefix}/figures/objectives.html") as handle:
        assert b"step_0.5.soma.Spikecount" in handle.read()

    listing = client.get(reverse("analysis_app:analyses")).content.decode()
    assert f"{prefix}/" in listing


def test_an_existing_folder_is_never_overwritten(
    client,
    alice,
    demo,
    catalogue_analysis,
    clean_saved_folder,
    saving_now,
    analysed,
    django_capture_on_commit_callbacks,
):
    client.force_login(alice)
    save(client, catalogue_analysis, django_capture_on_commit_callbacks)
    before = {
        name: digest(f"{clean_saved_folder}/{name}") for name in stored_files(clean_saved_folder)
    }

    page = save(client, catalogue_analysis, django_capture_on_commit_callbacks)
    assert "Not saved: This analysis is already saved" in page

    again = analysed(alice, source_kind="catalogue", optimisation=demo)
    page = save(client, again, django_capture_on_commit_callbacks)
    free = f"{again.folder}-2"
    assert f"Not saved: {clean_saved_folder}/ already exists" in page
    assert "never overwritten" in page
    assert f"Save it as &#x27;{free}&#x27; instead" in page
    # the page does not dead-end: the free name is filled in
    assert f'name="folder" value="{free}"' in page
    assert (again.save_status, again.saved_to) == ("", "")
    after = {
        name: digest(f"{clean_saved_folder}/{name}") for name in stored_files(clean_saved_folder)
    }
    assert after == before
    assert saving_now.call_count == 1

    remove_stored_folder(f"{clean_saved_folder}-2")
    try:
        page = save(client, again, django_capture_on_commit_callbacks, folder=free)
        assert f"Saved in <code>{clean_saved_folder}-2/</code>" in page
        assert (again.save_status, again.saved_to) == ("saved", f"{clean_saved_folder}-2")
        assert "cell_best.hoc" in stored_files(f"{clean_saved_folder}-2")
        unchanged = {
            name: digest(f"{clean_saved_folder}/{name}")
            for name in stored_files(clean_saved_folder)
        }
        assert unchanged == before
    finally:
        remove_stored_folder(f"{clean_saved_folder}-2")


def test_a_folder_name_that_is_not_a_plain_name_is_refused(
    client,
    alice,
    catalogue_analysis,
    clean_saved_folder,
    saving_now,
    django_capture_on_commit_callbacks,
):
    client.force_login(alice)
    page = save(client, catalogue_analysis, django_capture_on_commit_callbacks, folder="../bob/x")
    assert "cannot be a folder name" in page
    catalogue_analysis.refresh_from_db()
    assert catalogue_analysis.save_status == ""
    saving_now.assert_not_called()


def test_a_folder_already_in_storage_is_refused(
    client,
    alice,
    catalogue_analysis,
    clean_saved_folder,
    saving_now,
    django_capture_on_commit_callbacks,
):
    default_storage.save(f"{clean_saved_folder}/notes.txt", ContentFile(b"saved by the notebook"))
    client.force_login(alice)
    page = save(client, catalogue_analysis, django_capture_on_commit_callbacks)
    assert f"{clean_saved_folder}/ already exists" in page
    assert stored_files(clean_saved_folder) == {"notes.txt"}
    saving_now.assert_not_called()


def test_a_failed_save_leaves_nothing_behind(
    client,
    alice,
    catalogue_analysis,
    clean_saved_folder,
    saving_now,
    django_capture_on_commit_callbacks,
):
    client.force_login(alice)
    refusal = FigureExportError("kaleido needs a Chrome or Chromium")
    with mock.patch("analysis_app.engine.figures._write_pngs", side_effect=refusal):
        page = save(client, catalogue_analysis, django_capture_on_commit_callbacks)
    assert catalogue_analysis.save_status == "failed"
    assert catalogue_analysis.saved_to == ""
    assert "The analysis was not saved: kaleido needs a Chrome or Chromium" in page
    assert stored_files(clean_saved_folder) == set()
    assert "Save analysis" in page  # it can be tried again

    save(client, catalogue_analysis, django_capture_on_commit_callbacks)
    assert catalogue_analysis.save_status == "saved"
    assert "analysis.json" in stored_files(clean_saved_folder)


def test_the_save_beats_while_its_pngs_are_drawn_and_stops_when_taken_over(
    alice, catalogue_analysis, clean_saved_folder, django_capture_on_commit_callbacks
):
    """Drawing the PNGs can outlast the stale limit: the heartbeat moves while kaleido
    works, and a worker whose save the sweep gave to another stops and writes nothing."""
    with django_capture_on_commit_callbacks():  # queued, not run
        services.analysis_save_start(analysis=catalogue_analysis)
    beats = []

    def drawing(*args, **kwargs):
        kwargs["on_wait"]()
        beats.append(Analysis.objects.get(pk=catalogue_analysis.pk).save_heartbeat_at)
        kwargs["on_wait"]()
        beats.append(Analysis.objects.get(pk=catalogue_analysis.pk).save_heartbeat_at)
        # meanwhile the sweep gives the save to another worker (a new beat)
        Analysis.objects.filter(pk=catalogue_analysis.pk).update(save_heartbeat_at=timezone.now())
        kwargs["on_wait"]()

    with mock.patch("analysis_app.engine.figures._write_pngs", side_effect=drawing):
        result = services.analysis_save_write(analysis_id=catalogue_analysis.pk)

    assert result == services.NOT_CLAIMED
    assert beats[0] < beats[1]
    catalogue_analysis.refresh_from_db()
    assert catalogue_analysis.save_status == "saving"  # the other worker's to finish
    assert stored_files(clean_saved_folder) == set()


def test_a_saved_analysis_reopens_from_its_saved_folder(
    client,
    alice,
    catalogue_analysis,
    clean_saved_folder,
    saving_now,
    django_capture_on_commit_callbacks,
):
    client.force_login(alice)
    save(client, catalogue_analysis, django_capture_on_commit_callbacks)
    # the working copy goes away: the saved folder is enough, nothing is recomputed
    for name in catalogue_analysis.result_files:
        default_storage.delete(f"{catalogue_analysis.result_prefix}/{name}")
    with mock.patch("analysis_app.services.run_engine") as engine:
        page = client.get(catalogue_analysis.get_absolute_url()).content.decode()
        figures = client.get(reverse("analysis_app:figures", args=[catalogue_analysis.pk]))
        png = client.get(
            reverse("analysis_app:figure_download", args=[catalogue_analysis.pk, "traces", "png"])
        )
    engine.assert_not_called()
    assert "8.4691" in page and f"Saved in <code>{clean_saved_folder}/</code>" in page
    assert set(figures.json()["figures"]) >= {"traces", "objectives", "evolution"}
    with default_storage.open(f"{clean_saved_folder}/figures/traces.png") as handle:
        assert png.content == handle.read()


def test_an_unfinished_analysis_cannot_be_saved(client, alice, demo, saving_now):
    analysis = Analysis.objects.create(owner=alice, source_kind="catalogue", optimisation=demo)
    client.force_login(alice)
    response = client.post(reverse("analysis_app:save", args=[analysis.pk]), follow=True)
    assert "Only a finished analysis can be saved." in response.content.decode()
    saving_now.assert_not_called()


def test_saving_needs_a_post(client, alice, catalogue_analysis):
    client.force_login(alice)
    response = client.get(reverse("analysis_app:save", args=[catalogue_analysis.pk]))
    assert response.status_code == 405
