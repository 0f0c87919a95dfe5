"""An uploaded result that unpacks to far more than it weighs is refused, and leaves nothing.

The bombs are built here: a real (demo) result with a member of zeros beside it, a few
kilobytes per ten megabytes. ANALYSIS_UNPACKED_MAX_BYTES is set low for the test, as the
2 GB default would take a bomb of gigabytes to reach.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from analysis_app import services
from analysis_app.models import Analysis
from tests.fixtures.demo import DEMO_NAME

from .payloads import bomb_tarball, demo_checkpoint, demo_copy, nsg_output, results_zip

MB = 1024 * 1024
RUN_NAME = "CA1_pyr_cACpyr_ballstick3_20261202130000"


@pytest.fixture
def bomb(tmp_path) -> Path:
    """The demo's result with 48 MB of zeros beside it, in an output.tar.gz of ~50 KB."""
    base = nsg_output(
        demo_copy(tmp_path / "model", DEMO_NAME),
        tmp_path,
        run_name=RUN_NAME,
        checkpoint=demo_checkpoint(),
    )
    folder = tmp_path / "bomb"
    folder.mkdir()
    tarball = bomb_tarball(folder, unpacked_bytes=48 * MB, base=base)
    assert tarball.stat().st_size < 200 * 1024
    return tarball


@pytest.fixture
def work_dirs(settings, tmp_path, monkeypatch):
    """The analyses' work folder; and a system temporary folder of the test's own, which
    must stay empty (the machine's own /tmp is shared with other test sessions)."""
    settings.ANALYSIS_WORK_DIR = tmp_path / "analyses"
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_temp))
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    yield settings.ANALYSIS_WORK_DIR
    assert list(system_temp.iterdir()) == [], "the system's temporary folder was used"


def _analysed_upload(client, user, **files) -> Analysis:
    client.force_login(user)
    data = {"source": "upload", "top": 1}
    data.update(
        {field: SimpleUploadedFile(name, content) for field, (name, content) in files.items()}
    )
    response = client.post(reverse("analysis_app:analyses"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    analysis = Analysis.objects.get(owner=user)
    services.analysis_run(analysis_id=analysis.pk)
    analysis.refresh_from_db()
    return analysis


@pytest.fixture
def not_queued(monkeypatch):
    monkeypatch.setattr("analysis_app.tasks.run_analysis.delay", lambda *args, **kwargs: None)


@pytest.mark.slow
def test_an_upload_that_unpacks_past_the_cap_is_refused_and_leaves_nothing(
    client, alice, bomb, settings, work_dirs, not_queued
):
    settings.ANALYSIS_UNPACKED_MAX_BYTES = 16 * MB

    analysis = _analysed_upload(client, alice, output=("output.tar.gz", bomb.read_bytes()))

    assert analysis.status == "failed"
    assert analysis.error_kind == "unsafe_archive"
    problems = analysis.error_details["problems"]
    assert any("unpacks to 48.0 MB; at most 16.0 MB are allowed" in p for p in problems), problems
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "The archive was refused" in page and "at most 16.0 MB are allowed" in page
    assert list(work_dirs.iterdir()) == []


@pytest.mark.slow
def test_the_same_upload_within_the_cap_is_analysed(
    client, alice, bomb, settings, work_dirs, not_queued
):
    """The refusal above is the cap's doing: with room for the zeros, the result is fine."""
    settings.ANALYSIS_UNPACKED_MAX_BYTES = 64 * MB

    analysis = _analysed_upload(client, alice, output=("output.tar.gz", bomb.read_bytes()))

    assert analysis.status == "done", (analysis.error_kind, analysis.error_message)
    assert analysis.folder == RUN_NAME
    assert list(work_dirs.iterdir()) == []


@pytest.mark.slow
def test_the_cap_holds_for_a_results_zip_and_its_tarball_together(
    client, alice, bomb, settings, work_dirs, not_queued, tmp_path
):
    """The zip's own files count: the tarball inside gets only what the zip left."""
    zipped = results_zip(tmp_path, bomb, stdout_bytes=32 * MB)
    # Room for the tarball's 48 MB alone, not for them and the zip's 32 MB of STDOUT.
    settings.ANALYSIS_UNPACKED_MAX_BYTES = 64 * MB

    analysis = _analysed_upload(client, alice, results_zip=(zipped.name, zipped.read_bytes()))

    assert analysis.status == "failed" and analysis.error_kind == "unsafe_archive"
    problems = analysis.error_details["problems"]
    assert any("It unpacks to 48.0 MB" in p for p in problems), problems
    assert any("zip's own files already take 32.1 MB of the 64.0 MB" in p for p in problems), (
        problems
    )
    assert list(work_dirs.iterdir()) == []


@pytest.mark.slow
def test_manage_py_analyse_refuses_the_bomb_and_leaves_nothing(bomb, settings, work_dirs, tmp_path):
    settings.ANALYSIS_UNPACKED_MAX_BYTES = 16 * MB
    out = tmp_path / "analysis"

    with pytest.raises(CommandError, match="unsafe_archive"):
        call_command("analyse", str(bomb), "-o", str(out))

    assert list(work_dirs.iterdir()) == []
    assert sorted(path.name for path in out.iterdir()) == ["error.json"]
