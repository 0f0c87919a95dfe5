"""The database is the queue: a killed worker or a lost message delays work, never strands it.

A worker is killed with SIGKILL while it follows a local run; the run, in a session of its
own, goes on. After the "restart" (beat's sweep, with the session's workers), the run is
found again by its recorded process id and start time: a finished one is collected, a live
one is followed to its end, and Cancel ends it.
"""

import json
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from nsg_app.backends.local import work_dir
from nsg_app.models import Job
from nsg_app.services import job_start
from nsg_app.tasks import run_local_job
from tests.conftest import start_worker, stop_process_group
from tests.fixtures.processes import tree_of_processes_mentioning
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.slow]


# A run that ends only when the test says so (a file "go" appears beside it), then prints.
# Beside it: the run is sandboxed and sees nothing of the test's own folders.
_WAITING_SCRIPT = (
    "import pathlib, time\n"
    "go = pathlib.Path(__file__).resolve().with_name('go')\n"
    "while not go.exists():\n"
    "    time.sleep(0.1)\n"
    "print('finished after the go')\n"
)


def _lost_start(owner, package, backend: str) -> Job:
    """A job created as the pages create it, whose start message never reached a worker."""
    return Job.objects.create(
        owner=owner,
        backend=backend,
        package=package,
        folder=f"{package.run_name.rsplit('_', 1)[0]}_20261203120000",
        seed=99,
        tool="BLUEPYOPT_EXPANSE" if backend == Job.Backend.NSG else "",
        nodes=1 if backend == Job.Backend.NSG else None,
        cores_per_node=1,
        runtime_hours=1,
    )


def _orphaned_run(alice, script_package, worker_database_url) -> tuple[Job, Path]:
    """A local run whose following worker was killed with SIGKILL: the run goes on. The run,
    and the file that lets it end."""
    package = script_package(alice, _WAITING_SCRIPT)
    job = _lost_start(alice, package, Job.Backend.LOCAL)
    # Its start goes to a worker of its own, which is then killed.
    doomed = start_worker(worker_database_url, "doomed-runner", queues="kill-test-runs")
    try:
        run_local_job.apply_async((job.pk,), queue="kill-test-runs")
        wait_for(job, lambda j: j.state == Job.State.ACTIVE and j.runner_pid, what="the run")
        wait_for(
            job,
            lambda j: tree_of_processes_mentioning(str(work_dir(j))),
            what="the run's processes",
        )
        wait_for(job, lambda j: list(work_dir(j).rglob("init.py")), what="the run's folder")
    finally:
        stop_process_group(doomed, kill=True)
    (script,) = work_dir(job).rglob("init.py")
    return job, script.with_name("go")


@pytest.fixture
def orphan(alice, script_package, worker_database_url, running_worker):
    job, go_file = _orphaned_run(alice, script_package, worker_database_url)
    yield job, go_file
    go_file.touch()  # whatever happened, let the run end
    for pid in tree_of_processes_mentioning(str(work_dir(job))):
        import os
        import signal

        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _collected_output(job) -> str:
    return default_storage.open(f"{job.results_prefix}/STDOUT", "rb").read().decode()


def test_a_run_that_finished_while_its_worker_was_dead_is_collected(orphan, running_beat):
    job, go_file = orphan
    pid = job.runner_pid
    go_file.touch()

    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=90, what="the orphan stored")

    assert "finished after the go" in _collected_output(job)
    assert job.runner_pid == pid  # found again, never started a second time
    assert list(job.stages.values_list("stage", flat=True)).count("RUNNING") >= 1
    assert job.stages.filter(stage="COMPLETED").count() == 1
    manifest = json.loads(default_storage.open(f"{job.results_prefix}/manifest.json").read())
    assert manifest["seed"] == job.seed
    assert tree_of_processes_mentioning(str(work_dir(job))) == set()


def test_a_live_run_whose_worker_died_is_followed_again_to_its_end(orphan, running_beat):
    job, go_file = orphan
    pid = job.runner_pid

    wait_for(
        job,
        lambda j: j.stages.filter(message__contains="Followed again").exists(),
        timeout=60,
        what="the sweep to adopt the run",
    )
    assert job.state == Job.State.ACTIVE and job.runner_pid == pid
    go_file.touch()

    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=90, what="the adopted run")
    assert "finished after the go" in _collected_output(job)


def test_cancel_ends_a_run_whose_worker_died(client, alice, orphan, running_beat):
    job, _ = orphan
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert response.status_code == 200 and "Cancelling" in response.content.decode()
    wait_for(job, lambda j: j.state == Job.State.CANCELLED, timeout=60, what="the cancel")
    assert tree_of_processes_mentioning(str(work_dir(job))) == set()


@pytest.mark.parametrize("backend", ["local", "nsg"])
def test_cancel_of_a_job_still_submitting_answers_and_nothing_starts(
    client, alice, nsg_account, demo_package, backend
):
    nsg_account(alice)
    package = demo_package(alice)
    job_id = _lost_start(alice, package, backend).pk  # "Submitting" until the sweep
    client.force_login(alice)

    response = client.post(f"/jobs/{job_id}/cancel/", follow=True)

    assert response.status_code == 200
    job = Job.objects.get(pk=job_id)
    assert job.state == Job.State.CANCELLED
    assert job_start(job_id) == "not claimed"  # the lost message, delivered late, does nothing
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and not job.handle


def test_a_run_whose_start_message_was_lost_is_started_by_the_sweep(
    alice, script_package, running_worker, running_beat
):
    job = _lost_start(alice, script_package(alice, "print('started late')\n"), Job.Backend.LOCAL)

    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=90, what="the late start")

    assert "started late" in _collected_output(job)
    assert job.stages.filter(stage="RUNNING").count() == 1
