"""Saved comparisons are found again like saved analyses: listed on the analyses page with
their analyses, status and date, opened again, downloaded file by file, deleted after a
confirmation; a save stopped by a dead worker is finished by the sweep, and a failed one
leaves nothing in storage and says why. Only their owner (and staff) see them."""

from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from analysis_app import services
from analysis_app.engine import compare
from analysis_app.engine.figures import FigureExportError
from analysis_app.models import Analysis, SavedComparison

from .conftest import compare_url, remove_stored_folder, stored_files

pytestmark = pytest.mark.slow

SAVED_FILES = {"comparison.json"} | {
    f"figures/{name}.{kind}" for name in compare.COMPARE_FIGURE_NAMES for kind in ("html", "png")
}


def save(client, analyses, capture, folder=None):
    """Click "Save comparison" with the task run at once; the saved comparison's row."""
    data = {"analysis": [a.pk for a in analyses]}
    if folder is not None:
        data["folder"] = folder
    with capture(execute=True):
        response = client.post(reverse("analysis_app:compare_save"), data)
    assert response.status_code == 302
    return SavedComparison.objects.order_by("-pk").first()


def fake_saved(owner, analyses, folder: str, *, status="saved") -> SavedComparison:
    """A saved comparison as the task leaves it, with small stand-ins for its files (for
    what does not need real figures: access, refusals)."""
    prefix = f"BluePyOptAnalysis/{owner.get_username()}/{folder}"
    remove_stored_folder(prefix)
    files = sorted(SAVED_FILES) if status == "saved" else []
    for name in files:
        default_storage.save(f"{prefix}/{name}", ContentFile(f"{name} of {folder}".encode()))
    saved = SavedComparison.objects.create(
        owner=owner,
        compared=[{"id": a.pk, "name": str(a), "folder": a.folder} for a in analyses],
        saved_to=prefix,
        status=status,
        files=files,
        saved_at=timezone.now() if status == "saved" else None,
        error="The comparison was not saved: test." if status == "failed" else "",
    )
    saved.analyses.set(analyses)
    return saved


def addresses(saved) -> list[str]:
    return [
        reverse("analysis_app:comparison_status", args=[saved.pk]),
        reverse("analysis_app:comparison_file", args=[saved.pk, "comparison.json"]),
        reverse("analysis_app:comparison_file", args=[saved.pk, "figures/traces.png"]),
        reverse("analysis_app:comparison_delete", args=[saved.pk]),
    ]


def done_analyses(owner, demo, count=2) -> list[Analysis]:
    return [
        Analysis.objects.create(
            owner=owner,
            source_kind="catalogue",
            optimisation=demo,
            folder=f"{demo.name}-{index}",
            status="done",
        )
        for index in range(count)
    ]


# ----------------------------------------------------------------------------- the list


def test_the_list_shows_it_opens_it_again_and_serves_each_file(
    client,
    alice,
    pair,
    saved_comparison,
    comparison_saving_now,
    django_capture_on_commit_callbacks,
):
    client.force_login(alice)
    saved = save(client, pair, django_capture_on_commit_callbacks)
    assert saved.status == "saved", saved.error

    page = client.get(reverse("analysis_app:analyses")).content.decode()
    table = page[page.index('aria-label="Saved comparisons"') :]
    assert f"{saved_comparison}/" in table
    for analysis in pair:  # each analysis compared, with a link to its page
        assert f'<a href="{analysis.get_absolute_url()}">{analysis}</a>' in table
    assert "Saved</span>" in table
    assert timezone.localtime(saved.saved_at).strftime("%Y-%m-%d %H:%M") in table
    open_url = compare_url(*pair).replace("&", "&amp;")
    assert f'href="{open_url}">Open</a>' in table
    assert reverse("analysis_app:comparison_delete", args=[saved.pk]) in table

    # "Open" is the compare page of the same analyses, which says where it is saved
    reopened = client.get(compare_url(*pair)).content.decode()
    assert f"Saved in <code>{saved_comparison}/</code>" in reopened

    for name in SAVED_FILES:
        url = reverse("analysis_app:comparison_file", args=[saved.pk, name])
        assert url in table, name
        response = client.get(url)
        assert response.status_code == 200, name
        served = b"".join(response.streaming_content)
        with default_storage.open(f"{saved_comparison}/{name}") as handle:
            assert served == handle.read(), name
        assert saved.folder in response["Content-Disposition"]
    png = client.get(reverse("analysis_app:comparison_file", args=[saved.pk, "figures/traces.png"]))
    assert b"".join(png.streaming_content)[:4] == b"\x89PNG"
    for name in ("figures/morphology.png", "../comparison.json", "STDOUT"):
        url = reverse("analysis_app:comparison_file", args=[saved.pk, name])
        assert client.get(url).status_code == 404, name


def test_an_analysis_deleted_later_leaves_the_row_named_but_not_openable(client, alice, demo):
    first, second = done_analyses(alice, demo)
    saved = fake_saved(alice, [first, second], "compare-deleted-later")
    try:
        deleted = str(second)
        second.delete()
        client.force_login(alice)
        page = client.get(reverse("analysis_app:analyses")).content.decode()
        row = page[page.index(f'id="comparison-{saved.pk}"') :]
        row = row[: row.index("</tr>")]
        assert f'<a href="{first.get_absolute_url()}">{first}</a>' in row
        assert f"{deleted} (deleted)" in row
        assert ">Open</a>" not in row
        # the files are still there to download
        url = reverse("analysis_app:comparison_file", args=[saved.pk, "comparison.json"])
        assert client.get(url).status_code == 200
    finally:
        remove_stored_folder(saved.saved_to)


# ----------------------------------------------------------------------------- folders


def test_a_folder_is_taken_by_a_saved_analysis_or_a_saved_comparison_alike(
    client, alice, demo, saving_comparison_refused
):
    first, second = done_analyses(alice, demo)
    # a saved analysis holds BluePyOptAnalysis/alice/shared: no comparison there
    Analysis.objects.filter(pk=first.pk).update(
        saved_to="BluePyOptAnalysis/alice/shared", save_status="saved"
    )
    refusal = saving_comparison_refused(alice, [first, second], "shared")
    assert "BluePyOptAnalysis/alice/shared/ already exists" in str(refusal)
    assert refusal.suggested == "shared-2"

    # a comparison saved (or being saved) holds its folder: no analysis there
    fake_saved(alice, [first, second], "cmp-held", status="saving")
    with pytest.raises(services.SaveRefused) as refused:
        services.analysis_save_start(analysis=second, name="cmp-held")
    assert refused.value.suggested == "cmp-held-2"
    second.refresh_from_db()
    assert second.save_status == ""
    # nor another comparison
    assert saving_comparison_refused(alice, [first, second], "cmp-held").suggested == "cmp-held-2"

    # a failed save left nothing and holds nothing
    fake_saved(alice, [first, second], "cmp-failed", status="failed")
    with mock.patch("analysis_app.tasks.save_analysis.delay"):
        assert services.analysis_save_start(analysis=second, name="cmp-failed").endswith(
            "/cmp-failed"
        )


@pytest.fixture
def saving_comparison_refused(django_capture_on_commit_callbacks):
    def refused(owner, analyses, name) -> services.SaveRefused:
        count = SavedComparison.objects.count()
        with (
            django_capture_on_commit_callbacks() as queued,
            pytest.raises(services.SaveRefused) as caught,
        ):
            services.comparison_save_start(owner=owner, analyses=analyses, name=name)
        assert queued == [] and SavedComparison.objects.count() == count
        return caught.value

    return refused


# ----------------------------------------------------------------------------- failures


def test_a_failing_png_export_leaves_nothing_and_says_why(
    client,
    alice,
    pair,
    saved_comparison,
    comparison_saving_now,
    django_capture_on_commit_callbacks,
):
    client.force_login(alice)
    refusal = FigureExportError("kaleido needs a Chrome or Chromium")
    with mock.patch("analysis_app.engine.figures._write_pngs", side_effect=refusal):
        saved = save(client, pair, django_capture_on_commit_callbacks)
    assert saved.status == "failed"
    message = (
        "The comparison was not saved: the server could not draw its figures as PNG images "
        f"(kaleido needs a Chrome or Chromium). Nothing was kept in {saved_comparison}/"
    )
    assert saved.error.startswith(message)
    assert stored_files(saved_comparison) == set()
    for url in (reverse("analysis_app:analyses"), compare_url(*pair)):
        page = client.get(url).content.decode()
        assert "Nothing was kept in" in page and "kaleido needs a Chrome or Chromium" in page
    files = reverse("analysis_app:comparison_file", args=[saved.pk, "comparison.json"])
    assert client.get(files).status_code == 404

    # the folder is free again: saved there this time, the failed attempt still listed
    again = save(client, pair, django_capture_on_commit_callbacks)
    assert (again.saved_to, again.status) == (saved_comparison, "saved")
    assert stored_files(saved_comparison) == SAVED_FILES
    # deleting the failed row leaves the folder, which is the new save's now
    response = client.post(
        reverse("analysis_app:comparison_delete", args=[saved.pk]), {"confirm": "yes"}
    )
    assert response.status_code == 302
    assert not SavedComparison.objects.filter(pk=saved.pk).exists()
    assert stored_files(saved_comparison) == SAVED_FILES


def test_an_analysis_deleted_before_the_save_is_written_fails_it_plainly(
    alice, pair, saved_comparison, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():  # the task is not run
        saved = services.comparison_save_start(owner=alice, analyses=pair)
    Analysis.objects.filter(pk=pair[1].pk).delete()  # not through the site, which refuses
    assert services.comparison_save_write(comparison_id=saved.pk) == services.FAILED
    saved.refresh_from_db()
    assert saved.status == "failed"
    assert f"{pair[1]} was deleted before the comparison was written" in saved.error
    assert stored_files(saved_comparison) == set()


# ----------------------------------------------------------------------------- recovery


def test_a_save_whose_worker_died_is_driven_again_by_the_sweep_and_completes(
    alice, pair, saved_comparison, comparison_saving_now, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():  # the queued task is lost with its worker
        saved = services.comparison_save_start(owner=alice, analyses=pair)
    redrive_after = timedelta(seconds=60)
    # just queued: the sweep leaves it to its task
    with django_capture_on_commit_callbacks(execute=True):
        assert services.analyses_sweep(redrive_after=redrive_after)["comparison_saves"] == 0

    # The worker died half-way: its heartbeat stopped, a file of the attempt is left over.
    long_ago = timezone.now() - timedelta(seconds=services.STALE_SECONDS + 60)
    SavedComparison.objects.filter(pk=saved.pk).update(heartbeat_at=long_ago, queued_at=long_ago)
    default_storage.save(f"{saved_comparison}/figures/traces.html", ContentFile(b"half"))
    with django_capture_on_commit_callbacks(execute=True):
        counts = services.analyses_sweep(redrive_after=redrive_after)
    assert counts["comparison_saves"] == 1
    assert comparison_saving_now.call_count == 1
    saved.refresh_from_db()
    assert saved.status == "saved", saved.error
    assert stored_files(saved_comparison) == SAVED_FILES
    with default_storage.open(f"{saved_comparison}/figures/traces.html") as handle:
        assert handle.read() != b"half"
    # done: nothing left for the sweep
    with django_capture_on_commit_callbacks(execute=True):
        assert services.analyses_sweep(redrive_after=redrive_after)["comparison_saves"] == 0


def test_a_save_another_worker_took_over_is_left_to_it(
    alice, pair, saved_comparison, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        saved = services.comparison_save_start(owner=alice, analyses=pair)

    def taken_over(*args, **kwargs):
        # while this worker draws, the sweep gives the save to another one (a new beat)
        SavedComparison.objects.filter(pk=saved.pk).update(heartbeat_at=timezone.now())
        kwargs["on_wait"]()

    with mock.patch("analysis_app.engine.figures._write_pngs", side_effect=taken_over):
        assert services.comparison_save_write(comparison_id=saved.pk) == services.NOT_CLAIMED
    saved.refresh_from_db()
    assert saved.status == "saving"  # the other worker's to finish
    assert stored_files(saved_comparison) == set()


# ----------------------------------------------------------------------------- delete


def test_delete_removes_the_saved_folder_after_a_confirmation(client, alice, demo):
    analyses = done_analyses(alice, demo)
    saved = fake_saved(alice, analyses, "compare-to-delete")
    url = reverse("analysis_app:comparison_delete", args=[saved.pk])
    client.force_login(alice)
    page = client.get(url).content.decode()
    assert f"<code>{saved.saved_to}/</code> is deleted, with its {len(SAVED_FILES)} files" in page
    assert client.post(url).status_code == 400  # not confirmed: nothing deleted
    assert stored_files(saved.saved_to) == SAVED_FILES

    response = client.post(url, {"confirm": "yes"}, follow=True)

    assert (
        f"The saved comparison {saved.saved_to}/ was deleted, with its {len(SAVED_FILES)} stored"
        in response.content.decode()
    )
    assert stored_files(saved.saved_to) == set()
    assert not SavedComparison.objects.filter(pk=saved.pk).exists()
    assert Analysis.objects.filter(pk__in=[a.pk for a in analyses]).count() == 2


def test_saving_refuses_deleting_the_comparison_and_its_analyses(client, alice, demo):
    analyses = done_analyses(alice, demo)
    saved = fake_saved(alice, analyses, "compare-being-saved", status="saving")
    client.force_login(alice)
    url = reverse("analysis_app:comparison_delete", args=[saved.pk])
    page = client.get(url).content.decode()
    assert "It cannot be deleted now." in page and "being saved to" in page

    response = client.post(url, {"confirm": "yes"}, follow=True)

    assert "Not deleted: It is being saved to" in response.content.decode()
    assert SavedComparison.objects.filter(pk=saved.pk).exists()
    analysis_url = reverse("analysis_app:delete", args=[analyses[0].pk])
    assert client.post(analysis_url, {"confirm": "yes"}).status_code == 302
    # (the analysis' own page needs its stored files, which these analyses have not)
    listing = client.get(reverse("analysis_app:analyses")).content.decode()
    assert "Not deleted: A comparison of it is being saved to" in listing
    assert Analysis.objects.filter(pk=analyses[0].pk).exists()


# ----------------------------------------------------------------------------- access


def test_another_user_gets_404_and_does_not_see_it(client, alice, bob, demo):
    saved = fake_saved(alice, done_analyses(alice, demo), "compare-private")
    try:
        client.force_login(bob)
        for url in addresses(saved):
            assert client.get(url).status_code == 404, url
        delete = reverse("analysis_app:comparison_delete", args=[saved.pk])
        assert client.post(delete, {"confirm": "yes"}).status_code == 404
        assert SavedComparison.objects.filter(pk=saved.pk).exists()
        assert stored_files(saved.saved_to) == SAVED_FILES
        page = client.get(reverse("analysis_app:analyses")).content.decode()
        assert saved.saved_to not in page

        client.force_login(alice)
        for url in addresses(saved):
            assert client.get(url).status_code == 200, url
    finally:
        remove_stored_folder(saved.saved_to)


def test_staff_see_everyone_s_and_may_delete_them(client, alice, staff, demo):
    saved = fake_saved(alice, done_analyses(alice, demo), "compare-seen-by-staff")
    client.force_login(staff)
    page = client.get(reverse("analysis_app:analyses")).content.decode()
    table = page[page.index('aria-label="Saved comparisons"') :]
    assert f"{saved.saved_to}/" in table and "alice" in table
    for url in addresses(saved):
        assert client.get(url).status_code == 200, url

    client.post(reverse("analysis_app:comparison_delete", args=[saved.pk]), {"confirm": "yes"})

    assert not SavedComparison.objects.filter(pk=saved.pk).exists()
    assert stored_files(saved.saved_to) == set()


def test_anonymous_visitors_are_sent_to_log_in(client, alice, demo):
    saved = fake_saved(alice, done_analyses(alice, demo), "compare-anonymous")
    try:
        for url in addresses(saved):
            response = client.get(url)
            assert response.status_code == 302 and response.url.startswith(reverse("login"))
    finally:
        remove_stored_folder(saved.saved_to)
