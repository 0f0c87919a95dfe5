"""A user deletes an analysis: its stored files and its row go, its saved copy stays."""

import secrets

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from analysis_app.models import Analysis

from .conftest import remove_stored_folder, stored_files

pytestmark = pytest.mark.django_db


def _stored(prefix: str, names: list[str]) -> None:
    for name in names:
        default_storage.save(f"{prefix}/{name}", ContentFile(b"data"))


def _finished_analysis(owner, **fields) -> Analysis:
    prefix = f"analyses/{owner.get_username()}/delete-{secrets.token_hex(4)}"
    _stored(prefix, ["traces/best/step.csv", "cell_best.hoc", "analysis.json"])
    return Analysis.objects.create(
        owner=owner,
        source_kind=Analysis.Source.UPLOAD,
        folder="CA1_pyr_cACpyr_deleted_20261201000000",
        status=Analysis.Status.DONE,
        result_prefix=prefix,
        result_files=["analysis.json", "cell_best.hoc", "traces/best/step.csv"],
        **fields,
    )


def test_an_analysis_is_deleted_with_its_files_after_a_confirmation(
    client, alice, bob, settings, tmp_path
):
    upload = f"analyses/alice/uploads/{secrets.token_hex(8)}"
    _stored(upload, ["output.tar.gz"])
    analysis = _finished_analysis(alice, uploaded_files=[f"{upload}/output.tar.gz"])
    prefix = analysis.result_prefix
    settings.ANALYSIS_WORK_DIR = tmp_path
    scratch = tmp_path / f"analysis-{analysis.pk}-left"
    scratch.mkdir()
    url = f"/analyses/{analysis.pk}/delete/"

    client.force_login(bob)
    assert client.get(url).status_code == 404
    assert client.post(url, {"confirm": "yes"}).status_code == 404
    assert Analysis.objects.filter(pk=analysis.pk).exists()
    assert len(stored_files(prefix)) == 3

    client.force_login(alice)
    assert "Delete…" in client.get(analysis.get_absolute_url()).content.decode()
    page = client.get(url).content.decode()
    assert "Its 4 stored files" in page and prefix in page
    assert client.post(url).status_code == 400  # not confirmed: nothing deleted
    assert Analysis.objects.filter(pk=analysis.pk).exists()

    response = client.post(url, {"confirm": "yes"}, follow=True)

    assert f"{analysis} was deleted, with its 4 stored file(s)" in response.content.decode()
    assert not Analysis.objects.filter(pk=analysis.pk).exists()
    assert stored_files(prefix) == set() and stored_files(upload) == set()
    assert not scratch.exists()


def test_staff_may_delete_another_users_analysis(client, alice, staff):
    analysis = _finished_analysis(alice)
    client.force_login(staff)

    client.post(f"/analyses/{analysis.pk}/delete/", {"confirm": "yes"})

    assert not Analysis.objects.filter(pk=analysis.pk).exists()
    assert stored_files(analysis.result_prefix) == set()


def test_the_saved_copy_is_kept(client, alice):
    saved = f"BluePyOptAnalysis/alice/kept-{secrets.token_hex(4)}"
    _stored(saved, ["analysis.json", "figures/traces.png"])
    analysis = _finished_analysis(alice, saved_to=saved, save_status=Analysis.SaveStatus.SAVED)
    client.force_login(alice)
    url = f"/analyses/{analysis.pk}/delete/"

    assert f"Its saved copy in <code>{saved}/</code> is kept" in client.get(url).content.decode()
    client.post(url, {"confirm": "yes"})

    assert not Analysis.objects.filter(pk=analysis.pk).exists()
    assert stored_files(saved) == {"analysis.json", "figures/traces.png"}
    remove_stored_folder(saved)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": Analysis.Status.RUNNING}, "The analysis is running"),
        ({"status": Analysis.Status.QUEUED}, "The analysis is queued"),
        (
            {"save_status": Analysis.SaveStatus.SAVING, "saved_to": "BluePyOptAnalysis/alice/x"},
            "being saved to BluePyOptAnalysis/alice/x/",
        ),
    ],
)
def test_a_running_or_saving_analysis_is_kept_whole(client, alice, fields, reason):
    analysis = _finished_analysis(alice)
    Analysis.objects.filter(pk=analysis.pk).update(**fields)
    client.force_login(alice)
    url = f"/analyses/{analysis.pk}/delete/"

    assert reason in client.get(url).content.decode()
    response = client.post(url, {"confirm": "yes"}, follow=True)

    page = response.content.decode()
    assert "Not deleted: " in page and reason in page
    assert Analysis.objects.filter(pk=analysis.pk).exists()
    assert len(stored_files(analysis.result_prefix)) == 3
    remove_stored_folder(analysis.result_prefix)
