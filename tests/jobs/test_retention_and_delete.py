"""Retention and delete: work folders go once results are stored; a user deletes a job."""

import pytest
from django.core.files.storage import default_storage

from nsg_app.backends.local import work_dir
from nsg_app.collection import ResultSource, store_results
from nsg_app.models import Job
from nsg_app.retention import work_folders_prune
from nsg_app.services import sweep
from tests.jobs.test_nsg_jobs import _submitted_elsewhere

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _stored_local_job(owner, folder: str) -> Job:
    job = Job.objects.create(
        owner=owner, backend="local", folder=folder, state=Job.State.COMPLETED, seed=1
    )
    store_results(
        job,
        [
            ResultSource(name, len(data), lambda handle, data=data: handle.write(data))
            for name, data in {"STDOUT": b"out\n", "output.tar.gz": b"results"}.items()
        ],
    )
    job.refresh_from_db()
    (work_dir(job) / "run").mkdir(parents=True)
    (work_dir(job) / "run" / "STDOUT").write_text("out\n")
    return job


def test_the_sweep_removes_work_folders_of_stored_runs_unless_kept(alice, settings):
    kept = _stored_local_job(alice, "CA1_pyr_cACpyr_kept_20261201000003")
    settings.KEEP_WORK_FOLDERS_DAYS = 1

    sweep()

    assert work_dir(kept).is_dir()  # kept a day for debugging
    settings.KEEP_WORK_FOLDERS_DAYS = 0
    running = Job.objects.create(
        owner=alice,
        backend="local",
        folder="CA1_pyr_cACpyr_live_20261201000004",
        state=Job.State.ACTIVE,
    )
    work_dir(running).mkdir(parents=True)

    assert work_folders_prune() >= 1

    assert not work_dir(kept).exists() and work_dir(running).is_dir()
    assert default_storage.exists(f"{kept.results_prefix}/output.tar.gz")


def test_a_job_is_deleted_with_its_files_after_a_confirmation(client, alice, bob):
    job = _stored_local_job(alice, "CA1_pyr_cACpyr_gone_20261201000005")
    prefix = job.results_prefix
    client.force_login(bob)
    assert client.post(f"/jobs/{job.pk}/delete/", {"confirm": "yes"}).status_code == 404
    client.force_login(alice)

    page = client.get(f"/jobs/{job.pk}/delete/").content.decode()
    unconfirmed = client.post(f"/jobs/{job.pk}/delete/")
    assert "2 stored files" in page and unconfirmed.status_code == 400
    assert Job.objects.filter(pk=job.pk).exists()
    response = client.post(f"/jobs/{job.pk}/delete/", {"confirm": "yes"}, follow=True)

    assert "was deleted, with its 3 stored file(s)" in response.content.decode()
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not default_storage.listdir(prefix)[1]
    assert not work_dir(job).exists()


def test_deleting_an_nsg_job_deletes_it_at_nsg(
    client, alice, nsg_account, script_package, emulator
):
    nsg_account(alice)
    package = script_package(alice, "import time\ntime.sleep(120)\n")
    status, job = _submitted_elsewhere(emulator, alice, package)
    client.force_login(alice)

    client.post(f"/jobs/{job.pk}/delete/", {"confirm": "yes"})

    assert not Job.objects.filter(pk=job.pk).exists()
    with emulator.client("alice") as nsg:
        assert status.handle not in [s.handle for s in nsg.list_jobs()]


def test_an_nsg_job_is_kept_when_nsg_cannot_delete_it(
    client, alice, nsg_account, script_package, emulator
):
    nsg_account(alice)
    package = script_package(alice, "import time\ntime.sleep(120)\n")
    status, job = _submitted_elsewhere(emulator, alice, package)
    emulator.add_fault("alice", "http500")
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/delete/", {"confirm": "yes"}, follow=True)

    assert response.status_code == 200
    assert "NSG did not delete the job" in response.content.decode()
    assert Job.objects.filter(pk=job.pk).exists()
