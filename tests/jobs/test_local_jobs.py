"""Run here: the package runs on this machine through a real worker, with live progress."""

import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from nsg_app.backends.local import work_dir
from nsg_app.models import Job
from nsg_app.services import job_create_local
from tests.fixtures.demo import protocol_failure_pattern
from tests.fixtures.processes import tree_of_processes_mentioning
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.slow]


def _stored_tar(job) -> tarfile.TarFile:
    data = default_storage.open(f"{job.results_prefix}/output.tar.gz", "rb").read()
    return tarfile.open(fileobj=io.BytesIO(data))


def _processes_in(folder: Path) -> set[int]:
    return tree_of_processes_mentioning(str(folder))


def test_run_here_to_a_checkpoint_in_storage_with_progress_matching_the_logbook(
    client, alice, demo_package, running_worker
):
    package = demo_package(alice, offspring_size=4, max_ngen=3)
    client.force_login(alice)

    response = client.post(
        f"/jobs/run-here/{package.pk}/", {"cores_per_node": "2", "runtime_hours": "1"}
    )

    job = Job.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    said = f"Running {job.folder}, a run of package {package.run_name}, on this machine."
    assert said in client.get(f"/jobs/{job.pk}/").content.decode()
    wait_for(
        job, lambda j: j.state == Job.State.COLLECTED, timeout=180, what="the local run in storage"
    )
    assert job.results_prefix == f"BluePyOptOne/resultsLocal/alice/{job.folder}"
    _, files = default_storage.listdir(job.results_prefix)
    assert sorted(files) == ["STDERR", "STDOUT", "manifest.json", "output.tar.gz"]
    assert job.flag == ""
    with _stored_tar(job) as archive:
        member = f"./{package.run_name}/checkpoints/checkpoint.pkl"
        assert member in archive.getnames()
        checkpoint = pickle.loads(archive.extractfile(member).read(), encoding="latin1")
    logbook = checkpoint["logbook"]
    progress = job.progress
    assert progress["max_ngen"] == 3 and progress["generation"] == logbook[-1]["gen"]
    assert progress["evaluations"] == sum(record["nevals"] for record in logbook)
    assert progress["best"] == pytest.approx(logbook[-1]["min"])
    assert progress["average"] == pytest.approx(logbook[-1]["avg"])
    assert progress["fraction"] == 1.0
    stages = list(job.stages.values_list("stage", flat=True))
    assert stages[0] == "RUNNING" and "COMPLETED" in stages
    page = client.get(f"/jobs/{job.pk}/status.json").json()
    assert page["progress"]["generation"] == progress["generation"]


def test_cancel_kills_the_whole_process_tree(client, alice, script_package, running_worker):
    package = script_package(
        alice,
        "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\ntime.sleep(300)\n",
    )
    job = job_create_local(owner=alice, package=package, cores_per_node=1, runtime_hours=1)
    wait_for(job, lambda j: j.state == Job.State.ACTIVE, what="the run to start")
    folder = work_dir(job)
    wait_for(job, lambda j: len(_processes_in(folder)) >= 3, timeout=30, what="the run's processes")
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert "Cancelling" in response.content.decode()
    wait_for(job, lambda j: j.state == Job.State.CANCELLED, timeout=30, what="the cancel")
    assert _processes_in(folder) == set()
    assert job.stage == "CANCELLED"


def test_runtime_limit_stops_the_run_and_says_why(alice, script_package, running_worker):
    package = script_package(alice, "import time\ntime.sleep(300)\n")
    job = job_create_local(owner=alice, package=package, cores_per_node=1, runtime_hours=0.0008)

    wait_for(
        job, lambda j: j.state == Job.State.COLLECTED, timeout=60, what="the stopped run in storage"
    )

    assert job.stage == "TIME_LIMIT"
    assert job.flag == "time_limit"
    assert "time limit" in job.error.lower()
    assert "DUE TO TIME LIMIT" in job.stderr_tail
    assert _processes_in(work_dir(job)) == set()


def test_a_crashing_run_is_reported_with_its_traceback(
    client, alice, script_package, running_worker
):
    package = script_package(
        alice, "def optimise():\n    raise ValueError('bad bounds for gbar_hd')\noptimise()\n"
    )
    job = job_create_local(owner=alice, package=package, cores_per_node=1, runtime_hours=1)

    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=60)

    assert job.stage == "FAILED"
    assert job.flag == "script_error"
    assert "ValueError: bad bounds for gbar_hd" in job.flag_detail
    page = client.get(f"/jobs/{job.pk}/") if client.force_login(alice) is None else None
    assert "Traceback (most recent call last)" in page.content.decode()


def test_a_failed_protocol_is_named_with_neuron_s_error_on_the_job_page(
    client, alice, failing_package, running_worker
):
    package = failing_package(alice)
    client.force_login(alice)

    client.post(f"/jobs/run-here/{package.pk}/", {"cores_per_node": "2", "runtime_hours": "1"})

    job = Job.objects.get(owner=alice)
    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=120, what="the failed run")
    assert job.stage == "FAILED"
    assert re.search(protocol_failure_pattern(), job.error), job.error
    assert re.search(protocol_failure_pattern(), job.flag_detail), job.flag_detail
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert re.search(protocol_failure_pattern(), page)
    status = client.get(f"/jobs/{job.pk}/status.json").json()
    assert re.search(protocol_failure_pattern(), status["error"])


def test_two_users_runs_at_once_each_seeing_only_its_own(
    client, alice, bob, demo_package, running_worker
):
    alices = job_create_local(
        owner=alice, package=demo_package(alice), cores_per_node=1, runtime_hours=1
    )
    bobs = job_create_local(owner=bob, package=demo_package(bob), cores_per_node=1, runtime_hours=1)

    for job in (alices, bobs):
        wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=180)

    assert alices.results_prefix.startswith("BluePyOptOne/resultsLocal/alice/")
    assert bobs.results_prefix.startswith("BluePyOptOne/resultsLocal/bob/")
    client.force_login(bob)
    listing = client.get("/jobs/").content.decode()
    assert f'data-job="{bobs.pk}"' in listing and f'data-job="{alices.pk}"' not in listing
    assert client.get(f"/jobs/{alices.pk}/").status_code == 404
    assert client.get(f"/jobs/{alices.pk}/files/STDOUT").status_code == 404
    assert client.post(f"/jobs/{alices.pk}/cancel/").status_code == 404
    assert client.get(f"/jobs/run-here/{alices.package.pk}/").status_code == 404


def test_run_here_form_refuses_bad_settings(client, alice, demo_package):
    package = demo_package(alice)
    client.force_login(alice)

    response = client.post(
        f"/jobs/run-here/{package.pk}/", {"cores_per_node": "0", "runtime_hours": "-1"}
    )

    assert response.status_code == 400
    assert response.content.decode().count("invalid-feedback") == 2
    assert not Job.objects.exists()


def test_two_long_local_runs_leave_the_site_worker_free(
    client, staff, alice, script_package, running_worker
):
    package = script_package(alice, "import time\ntime.sleep(300)\n")
    runs = [
        job_create_local(owner=alice, package=package, cores_per_node=1, runtime_hours=1)
        for _ in range(2)
    ]
    for job in runs:
        wait_for(job, lambda j: j.state == Job.State.ACTIVE, what="both runs to start")
    client.force_login(staff)

    try:
        page = client.get("/health/")
        assert page.status_code == 200
        assert "database and storage reachable from the worker" in page.content.decode()
    finally:
        client.force_login(alice)
        for job in runs:
            client.post(f"/jobs/{job.pk}/cancel/")
        for job in runs:
            wait_for(job, lambda j: j.state == Job.State.CANCELLED, timeout=30, what="the cancel")


def test_run_here_says_the_cores_are_the_cluster_s_engines_when_the_site_has_one(
    client, alice, demo_package, settings, tmp_path
):
    package = demo_package(alice)
    client.force_login(alice)
    settings.LOCAL_CLUSTER = None
    page = client.get(f"/jobs/run-here/{package.pk}/").content.decode()
    assert f"this machine has {os.cpu_count()}" in page

    settings.LOCAL_CLUSTER = tmp_path / "ipcontroller-client.json"
    page = client.get(f"/jobs/run-here/{package.pk}/").content.decode()
    assert "this machine has" not in page
    assert "as many individuals at once as it has engines" in page
