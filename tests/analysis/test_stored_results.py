"""A job's collected result analysed: by the real worker, to done or to a clear error."""

import os
import shutil
import tarfile
import threading
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from analysis_app import services
from analysis_app.models import Analysis
from tests.fixtures.processes import alive, command_line, descendants

from .conftest import RUN_NAME, pack, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.django_db(transaction=True)
def test_an_nsg_result_is_analysed_by_the_worker_while_the_page_follows(
    client, alice, collected_job, nsg_output, running_worker
):
    job = collected_job(alice, nsg_output)
    client.force_login(alice)
    response = client.post(
        reverse("analysis_app:analyses"), {"source": "job", "job": job.pk, "top": 2}
    )
    analysis = Analysis.objects.get()
    assert response.url == analysis.get_absolute_url()
    status_url = reverse("analysis_app:status", args=[analysis.pk])
    seen = set()

    def finished(row):
        state = client.get(status_url).json()
        seen.add(state["stage"])
        return not state["active"]

    analysis = wait_for(analysis, finished, what="the worker's analysis")
    analysis.refresh_from_db()  # it may have ended between the row's reading and the page's
    assert analysis.status == "done", (analysis.error_kind, analysis.error_message)
    assert seen & {"queued", "unpacking", "compiling", "loading", "simulating", "done"}
    assert analysis.folder == RUN_NAME
    assert analysis.result_prefix.startswith(f"analyses/alice/{analysis.pk}-")
    assert {"analysis.json", "cell_best.hoc", "cell_top2.hoc"} <= set(analysis.result_files)
    assert analysis.progress["protocols_done"] == analysis.progress["protocols_total"] == 6
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "top2" in page and 'id="individual"' in page


def test_a_local_run_result_is_analysed_alike(alice, collected_job, nsg_output, analysed):
    job = collected_job(alice, nsg_output, backend="local")
    analysis = analysed(alice, source_kind="job", job=job)
    assert analysis.status == "done", analysis.error_message
    assert analysis.fitness["recomputed"] == pytest.approx(analysis.fitness["stored"], rel=1e-3)


def test_a_run_without_checkpoint_says_the_runtime_was_too_short(
    client, alice, collected_job, output_without_checkpoint, analysed
):
    job = collected_job(alice, output_without_checkpoint)
    analysis = analysed(alice, source_kind="job", job=job)
    assert analysis.status == "failed"
    assert analysis.error_kind == "no_checkpoint"
    client.force_login(alice)
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "No checkpoint to analyse" in page
    assert "time limit" in page
    assert "CANCELLED DUE TO TIME LIMIT" in page  # the end of the job's stderr, folded
    status = client.get(reverse("analysis_app:status", args=[analysis.pk])).json()
    assert status["error"]["title"] == "No checkpoint to analyse"


def test_a_mechanism_that_does_not_compile_shows_nrnivmodl_s_log(
    client, alice, collected_job, nsg_output, analysed, tmp_path
):
    with tarfile.open(nsg_output) as archive:
        archive.extractall(tmp_path / "job", filter="data")
    run_folder = tmp_path / "job" / RUN_NAME
    shutil.rmtree(run_folder / "x86_64", ignore_errors=True)
    (run_folder / "mechanisms" / "broken.mod").write_text("NEURON { SUFFIX broken\nNOT NMODL\n")
    job = collected_job(alice, pack(tmp_path / "job", tmp_path / "output.tar.gz"))
    analysis = analysed(alice, source_kind="job", job=job)
    assert analysis.error_kind == "mechanisms"
    client.force_login(alice)
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "A mechanism does not compile" in page
    assert "<summary>nrnivmodl log</summary>" in page
    assert "broken" in page


def test_the_model_s_failing_code_is_shown_with_its_traceback(client, alice, demo):
    analysis = Analysis.objects.create(
        owner=alice,
        source_kind="catalogue",
        optimisation=demo,
        folder=demo.name,
        status="failed",
        error_kind="model_error",
        error_message="The model's evaluator raised RuntimeError: broken on purpose",
        error_details={
            "traceback": 'File "model/evaluator.py", line 3\nRuntimeError: broken on purpose'
        },
    )
    client.force_login(alice)
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "The model&#x27;s code failed" in page
    assert "<summary>Traceback of the model's code</summary>" in page
    assert "RuntimeError: broken on purpose" in page


def test_a_deleted_job_fails_clearly(alice, collected_job, nsg_output):
    job = collected_job(alice, nsg_output)
    analysis = services.analysis_create(owner=alice, source_kind="job", job=job)
    job.delete()
    services.analysis_run(analysis_id=analysis.pk)
    analysis.refresh_from_db()
    assert (analysis.status, analysis.error_kind) == ("failed", "invalid_source")
    assert "deleted" in analysis.error_message


def test_an_unexpected_error_fails_the_analysis_and_reaches_celery(alice, demo, monkeypatch):
    analysis = services.analysis_create(owner=alice, source_kind="catalogue", optimisation=demo)

    def broken(**_):
        raise RuntimeError("storage went away")

    monkeypatch.setattr(services, "run_engine", broken)
    with pytest.raises(RuntimeError, match="storage went away"):
        services.analysis_run(analysis_id=analysis.pk)
    analysis.refresh_from_db()
    assert (analysis.status, analysis.error_kind) == ("failed", "internal")
    assert "storage went away" in analysis.error_message and analysis.finished_at is not None


def test_an_analysis_is_run_once(alice, demo, analysed):
    analysis = analysed(alice, source_kind="catalogue", optimisation=demo)
    assert services.analysis_run(analysis_id=analysis.pk) == "not claimed"


def test_an_analysis_whose_worker_stopped_is_taken_over(alice, demo):
    analysis = services.analysis_create(owner=alice, source_kind="catalogue", optimisation=demo)
    now = timezone.now()
    Analysis.objects.filter(pk=analysis.pk).update(status="running", heartbeat_at=now)
    assert services.analysis_run(analysis_id=analysis.pk) == services.RUNNING_ELSEWHERE
    stale = now - timedelta(seconds=services.STALE_SECONDS + 1)
    Analysis.objects.filter(pk=analysis.pk).update(heartbeat_at=stale)
    assert services.analysis_run(analysis_id=analysis.pk) == "done"


def test_an_analysis_past_its_time_limit_is_stopped(
    client, alice, collected_job, nsg_output, analysed, settings, tmp_path
):
    with tarfile.open(nsg_output) as archive:
        archive.extractall(tmp_path / "job", filter="data")
    evaluator = tmp_path / "job" / RUN_NAME / "model" / "evaluator.py"
    evaluator.write_text("import time\ntime.sleep(120)\n" + evaluator.read_text())
    job = collected_job(alice, pack(tmp_path / "job", tmp_path / "output.tar.gz"))
    settings.ANALYSIS_TIMEOUT_SECONDS = 3
    # The analysis runs here, as the task would: every process it starts is seen, then gone.
    started: dict[int, str] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in descendants(os.getpid()):
                if "analysis_app.engine" in command_line(pid):
                    tree = {pid} | descendants(pid)
                    started.update({member: command_line(member) for member in tree})
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        analysis = analysed(alice, source_kind="job", job=job)
    finally:
        done.set()
        watcher.join()
    assert analysis.error_kind == "timeout"
    assert "time limit of 3 s" in analysis.error_message
    assert any("analysis_app.engine" in line for line in started.values())
    assert [pid for pid in started if alive(pid)] == []
    client.force_login(alice)
    assert "The analysis took too long" in client.get(analysis.get_absolute_url()).content.decode()
