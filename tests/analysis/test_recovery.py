"""A worker killed during an analysis or a save (of an analysis or of a comparison): after
the restart, the sweep finishes it."""

import time
from unittest import mock

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from analysis_app import services
from analysis_app.engine import compare
from analysis_app.models import Analysis, SavedComparison
from analysis_app.tasks import run_analysis, save_analysis, save_comparison
from tests.conftest import start_worker, stop_process_group

from .conftest import remove_stored_folder, stored_files, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _killed_while(task, analysis, worker_database_url, started) -> None:
    """Run ``task`` for the analysis on a worker of its own, SIGKILLed once ``started``."""
    doomed = start_worker(worker_database_url, "doomed-analyser", queues="kill-test-analysis")
    try:
        task.apply_async((analysis.pk,), queue="kill-test-analysis")
        wait_for(analysis, started, timeout=120, what="the task to be under way")
    finally:
        stop_process_group(doomed, kill=True)


def test_an_analysis_whose_worker_was_killed_is_done_after_the_restart(
    request, alice, demo, worker_database_url, running_worker
):
    # As analysis_create records it, but its message goes to the worker about to die.
    analysis = Analysis.objects.create(
        owner=alice, source_kind="catalogue", optimisation=demo, folder=demo.name
    )

    _killed_while(
        run_analysis,
        analysis,
        worker_database_url,
        lambda a: a.status == Analysis.Status.RUNNING and a.progress,
    )
    assert analysis.status == Analysis.Status.RUNNING  # the dead worker's claim remains
    request.getfixturevalue("running_beat")  # the restart: beat's sweep, a live worker

    wait_for(analysis, lambda a: a.status == Analysis.Status.DONE, timeout=180)
    assert analysis.fitness and "analysis.json" in analysis.result_files
    assert stored_files(analysis.result_prefix) >= set(analysis.result_files)
    # The dead worker's work folder went when the analysis was taken over.
    assert list(settings.ANALYSIS_WORK_DIR.glob(f"analysis-{analysis.pk}-*")) == []


def test_a_save_whose_worker_was_killed_ends_saved_and_whole(
    request, alice, catalogue_analysis, worker_database_url, running_worker
):
    analysis = catalogue_analysis
    prefix = services.saved_folder(analysis)
    remove_stored_folder(prefix)
    # As analysis_save_start claims the folder, with the copy sent to the worker about to die.
    Analysis.objects.filter(pk=analysis.pk).update(
        saved_to=prefix, save_status=Analysis.SaveStatus.SAVING
    )
    try:
        _killed_while(
            save_analysis,
            analysis,
            worker_database_url,
            lambda a: a.save_heartbeat_at is not None,
        )
        request.getfixturevalue("running_beat")

        wait_for(analysis, lambda a: a.save_status == Analysis.SaveStatus.SAVED, timeout=180)
        saved = stored_files(prefix)
        assert set(analysis.result_files) <= saved
        assert any(name.startswith("figures/") for name in saved)
        assert analysis.stored_prefix() == prefix
    finally:
        remove_stored_folder(prefix)


def test_a_comparison_save_whose_worker_was_killed_ends_saved_and_whole(
    request, alice, pair, saved_comparison, worker_database_url, running_worker
):
    # Claimed as the page claims it; its writing goes to the worker about to die.
    with mock.patch("analysis_app.tasks.save_comparison.delay"):
        saved = services.comparison_save_start(owner=alice, analyses=pair)
    doomed = start_worker(worker_database_url, "doomed-saver", queues="kill-test-comparison")
    try:
        save_comparison.apply_async((saved.pk,), queue="kill-test-comparison")
        deadline = time.monotonic() + 120
        while not SavedComparison.objects.get(pk=saved.pk).heartbeat_at:
            assert time.monotonic() < deadline, "the save never started"
            time.sleep(0.2)
    finally:
        stop_process_group(doomed, kill=True)
    saved.refresh_from_db()
    assert saved.status == "saving"  # the dead worker's claim remains
    request.getfixturevalue("running_beat")  # the restart: beat's sweep, a live worker

    deadline = time.monotonic() + 180
    while saved.status == "saving":
        assert time.monotonic() < deadline, "the sweep did not finish the save"
        time.sleep(0.5)
        saved.refresh_from_db()
    assert saved.status == "saved", saved.error
    files = {"comparison.json"} | {
        f"figures/{name}.{kind}"
        for name in compare.COMPARE_FIGURE_NAMES
        for kind in ("html", "png")
    }
    assert stored_files(saved_comparison) == files == set(saved.files)
    for name in compare.COMPARE_FIGURE_NAMES:
        with default_storage.open(f"{saved_comparison}/figures/{name}.png") as handle:
            assert handle.read(4) == b"\x89PNG", name
