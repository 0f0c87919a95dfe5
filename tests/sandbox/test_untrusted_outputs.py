"""What a model's code left behind is read back only when it is what it claims to be.

The payloads here do not try to read anything themselves: they leave traps in the files
the site reads after them (links to the site's secrets, a named pipe, a link in the run
folder). The site must refuse each with an ordinary error, never follow a link out of the
work folder, never hang, and never write to where a link points.
"""

from __future__ import annotations

import os
import tarfile

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from analysis_app import services
from analysis_app.models import Analysis
from tests.fixtures.demo import DEMO_NAME

from .payloads import (
    demo_checkpoint,
    demo_copy,
    nsg_output,
    with_output_traps,
)

RUN_NAME = "CA1_pyr_cACpyr_ballstick3_20261202120000"


def _upload_and_run(client, user, tarball) -> Analysis:
    client.force_login(user)
    response = client.post(
        reverse("analysis_app:analyses"),
        {
            "source": "upload",
            "top": 1,
            "output": SimpleUploadedFile("output.tar.gz", tarball.read_bytes()),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    analysis = Analysis.objects.get(owner=user)
    services.analysis_run(analysis_id=analysis.pk)
    analysis.refresh_from_db()
    return analysis


@pytest.mark.slow
def test_result_files_swapped_for_links_to_secrets_are_refused(
    client, alice, hostile, tmp_path, settings, monkeypatch
):
    targets, secrets = hostile
    settings.ANALYSIS_WORK_DIR = tmp_path / "analyses"
    monkeypatch.setattr("analysis_app.tasks.run_analysis.delay", lambda *args, **kwargs: None)
    model = with_output_traps(demo_copy(tmp_path / "model", DEMO_NAME), targets)
    tarball = nsg_output(model, tmp_path, run_name=RUN_NAME, checkpoint=demo_checkpoint())

    analysis = _upload_and_run(client, alice, tarball)

    assert analysis.status == "failed"
    assert analysis.error_kind == "model_error", analysis.error_message
    assert "results the site cannot use" in analysis.error_message
    log = analysis.error_details.get("log", "")
    assert "HOSTILE-TRAPS planted" in log  # the traps were laid, and refused
    assert any("symbolic link" in problem for problem in analysis.error_details["problems"])
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "results the site cannot use" in page
    shown = page + analysis.error_message + repr(analysis.error_details) + repr(analysis.progress)
    assert secrets.found_in(shown) == []
    assert list(settings.ANALYSIS_WORK_DIR.iterdir()) == []


@pytest.mark.slow
def test_a_local_run_cannot_make_the_runner_read_or_write_through_its_links(
    hostile, tmp_path, settings
):
    """``manage.py run_local``: the run swaps STDOUT, STDERR and done.txt for links to the
    site's key, its progress file for a pipe, and leaves a link in its run folder."""
    targets, secrets = hostile
    key = targets.secret_files["credentials key"]
    before = open(key, "rb").read()
    trap = f"""
import os, time

def lay(step):
    # Each trap on its own: in the sandbox some cannot be laid, and the others still are.
    try:
        step()
    except OSError as error:
        print("trap not laid:", error)

def link(path):
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink({key!r}, path)

def pipe(path):
    if os.path.lexists(path):
        os.unlink(path)
    os.mkfifo(path)

os.makedirs("checkpoints", exist_ok=True)
lay(lambda: link("checkpoints/stolen.pkl"))
for name in ("STDOUT", "STDERR", "done.txt"):
    lay(lambda name=name: link(os.path.join("..", name)))
if os.environ.get("REBUILD_LOCAL_PROGRESS_FILE"):
    lay(lambda: pipe(os.environ["REBUILD_LOCAL_PROGRESS_FILE"]))
time.sleep(600)  # until the time limit, after which the runner writes STDERR and done.txt
"""
    model = demo_copy(tmp_path / "model", DEMO_NAME)
    script = model / "opt_neuron.py"
    script.write_text(trap + script.read_text())
    from models_app.bpo.package import build_package

    package = tmp_path / f"{RUN_NAME}.zip"
    build_package(model, run_name=RUN_NAME, offspring_size=2, max_ngen=2, out=package)
    out = tmp_path / "run"

    with pytest.raises(SystemExit) as ended:
        call_command(
            "run_local",
            str(package),
            "-o",
            str(out),
            "--cores",
            "1",
            "--runtime-hours",
            "0.01",
            "--mechanisms-cache",
            str(settings.MECHANISMS_CACHE_DIR),
        )

    assert ended.value.code == 3  # stopped by its time limit, as the trap waited for
    assert open(key, "rb").read() == before  # nothing was written through the links
    assert (out / RUN_NAME / "checkpoints" / "stolen.pkl").is_symlink()  # the trap was laid
    with tarfile.open(out / "output.tar.gz") as archive:
        members = archive.getmembers()
    assert all(member.isreg() or member.isdir() for member in members)
    assert f"./{RUN_NAME}/checkpoints/stolen.pkl" not in [member.name for member in members]
    with tarfile.open(out / "output.tar.gz") as archive:
        for member in members:
            if member.isreg():
                assert secrets.found_in(archive.extractfile(member).read()) == [], member.name
    assert (out / "done.txt").is_file() and not (out / "done.txt").is_symlink()


def test_the_collector_copies_no_link_a_local_run_left_in_place_of_its_results(
    alice, hostile, settings, tmp_path
):
    from nsg_app.backends.local import LocalBackend, work_dir
    from nsg_app.collection import store_results
    from nsg_app.models import Job

    targets, secrets = hostile
    settings.LOCAL_RUNS_DIR = tmp_path / "local-runs"
    job = Job.objects.create(owner=alice, backend="local", folder=RUN_NAME, state="COMPLETED")
    run = work_dir(job) / "run"
    run.mkdir(parents=True)
    (run / "STDOUT").symlink_to(targets.secret_files["credentials key"])
    os.mkfifo(run / "STDERR")
    (run / "output.tar.gz").write_bytes(b"")

    store_results(job, LocalBackend().result_sources(job))

    job.refresh_from_db()
    stored = sorted(job.result_files.values_list("name", flat=True))
    assert stored == ["output.tar.gz"]
    for name in default_storage.listdir(job.results_prefix)[1]:
        data = default_storage.open(f"{job.results_prefix}/{name}").read()
        assert secrets.found_in(data) == [], name


def test_a_result_name_that_is_a_path_is_refused_by_the_collector(alice, db):
    from nsg_app.collection import CollectError, ResultSource, store_results
    from nsg_app.models import Job

    job = Job.objects.create(owner=alice, backend="nsg", folder=RUN_NAME, state="COMPLETED")
    source = ResultSource("../../bob/output.tar.gz", 1, lambda handle: handle.write(b"x"))
    with pytest.raises(CollectError, match="not a plain file name"):
        store_results(job, [source])
    assert not job.result_files.exists()
