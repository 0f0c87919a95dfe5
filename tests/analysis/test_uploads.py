"""An NSG result uploaded from the user's computer: three files, or one zip of them."""

from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from analysis_app import services
from analysis_app.models import Analysis

from .conftest import RUN_NAME, results_zip

URL = reverse("analysis_app:analyses")


@pytest.fixture
def queued():
    with mock.patch("analysis_app.tasks.run_analysis.delay") as delay:
        yield delay


def stored_uploads(user) -> set[str]:
    try:
        folders, _ = default_storage.listdir(f"analyses/{user.username}/uploads")
    except FileNotFoundError:
        return set()
    return set(folders)


def upload(client, **files):
    data = {"source": "upload", "top": 1}
    for field, (name, content) in files.items():
        data[field] = SimpleUploadedFile(name, content)
    return client.post(URL, data)


def run(analysis: Analysis) -> Analysis:
    services.analysis_run(analysis_id=analysis.pk)
    analysis.refresh_from_db()
    return analysis


@pytest.mark.slow
def test_the_three_files_are_stored_in_the_user_s_area_and_analysed(
    client, alice, nsg_output, queued, settings, tmp_path
):
    # the tarball waits on disk, as large uploads do, and is moved into storage from there
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    client.force_login(alice)
    response = upload(
        client,
        output=("output.tar.gz", nsg_output.read_bytes()),
        stdout=("STDOUT", b"the job's output\n"),
        stderr=("STDERR", b""),
    )
    analysis = Analysis.objects.get()
    assert response.url == analysis.get_absolute_url()
    names = sorted(name.rsplit("/", 1)[-1] for name in analysis.uploaded_files)
    assert names == ["STDERR", "STDOUT", "output.tar.gz"]
    assert all(name.startswith("analyses/alice/uploads/") for name in analysis.uploaded_files)
    assert all(default_storage.exists(name) for name in analysis.uploaded_files)
    assert analysis.folder == ""  # known once the run folder is found

    analysis = run(analysis)
    assert analysis.status == "done", analysis.error_message
    assert analysis.folder == RUN_NAME
    assert analysis.fitness["recomputed"] == pytest.approx(analysis.fitness["stored"], rel=1e-3)
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "Uploaded NSG result: upload of" in page and RUN_NAME in page


@pytest.mark.slow
def test_one_zip_of_the_results_is_analysed(client, alice, nsg_output, queued):
    client.force_login(alice)
    response = upload(
        client, results_zip=("NGBW-JOB-1.zip", results_zip(nsg_output, folder="NGBW-JOB-1/"))
    )
    assert response.status_code == 302
    analysis = Analysis.objects.get()
    assert [name.rsplit("/", 1)[-1] for name in analysis.uploaded_files] == ["NGBW-JOB-1.zip"]
    analysis = run(analysis)
    assert analysis.status == "done", analysis.error_message
    assert analysis.folder == RUN_NAME


@pytest.mark.slow
def test_an_archive_escaping_its_folder_is_refused_with_a_clear_error(
    client, alice, escaping_tarball, queued, tmp_path
):
    client.force_login(alice)
    upload(client, output=("output.tar.gz", escaping_tarball.read_bytes()))
    analysis = run(Analysis.objects.get())
    assert analysis.status == "failed"
    assert analysis.error_kind == "unsafe_archive"
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "The archive was refused" in page
    assert "unsafe to extract" in page
    assert "../../escaped.txt" in page
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_a_file_that_is_not_a_tar_is_refused_and_nothing_is_stored(client, alice, queued):
    client.force_login(alice)
    before = stored_uploads(alice)
    response = upload(client, output=("output.tar.gz", b"<html>NSG error page</html>"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "output.tar.gz is not a tar archive" in page
    assert 'class="form-control is-invalid"' in page
    assert not Analysis.objects.exists()
    assert stored_uploads(alice) == before


@pytest.mark.parametrize(
    "content, message",
    [
        (b"PK\x03\x04 not really a zip", "is not a valid zip file"),
        (None, "holds no output.tar.gz"),
    ],
)
def test_a_zip_without_nsg_results_is_refused(client, alice, content, message, queued):
    import io
    import zipfile

    if content is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("STDOUT", "only this\n")
        content = buffer.getvalue()
    client.force_login(alice)
    before = stored_uploads(alice)
    response = upload(client, results_zip=("results.zip", content))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert stored_uploads(alice) == before


def test_both_the_files_and_a_zip_are_refused(client, alice, escaping_tarball, queued):
    client.force_login(alice)
    response = upload(
        client,
        output=("output.tar.gz", escaping_tarball.read_bytes()),
        results_zip=("results.zip", results_zip(escaping_tarball)),
    )
    assert response.status_code == 400
    assert "not both" in response.content.decode()


def test_uploads_above_the_limit_are_refused(client, alice, escaping_tarball, settings, queued):
    settings.UPLOAD_MAX_BYTES = 1024
    client.force_login(alice)
    before = stored_uploads(alice)
    response = upload(
        client,
        output=("output.tar.gz", escaping_tarball.read_bytes()),
        stdout=("STDOUT", b"x" * 2000),
    )
    assert response.status_code == 400
    assert "at most 1,024 are accepted" in response.content.decode()
    assert stored_uploads(alice) == before
