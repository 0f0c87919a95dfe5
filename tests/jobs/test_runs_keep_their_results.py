"""Every run has a results folder and a seed of its own; nothing stored is ever overwritten."""

import hashlib
import io
import json
import pickle
import re
import tarfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from nsg_app.collection import ResultSource, store_results
from nsg_app.models import Job, NsgAccount
from nsg_app.services import job_collect, job_create_local
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

_RUN_NAME = re.compile(r"(?P<stem>.+)_(?P<stamp>\d{14})")


def _stored(job) -> dict[str, bytes]:
    """The job's files as its page serves them, checked against its own manifest."""
    manifest = json.loads(default_storage.open(f"{job.results_prefix}/manifest.json").read())
    files = {}
    for entry in manifest["files"]:
        files[entry["name"]] = default_storage.open(
            f"{job.results_prefix}/{entry['name']}", "rb"
        ).read()
        assert len(files[entry["name"]]) == entry["size"]
        assert hashlib.sha256(files[entry["name"]]).hexdigest() == entry["sha256"]
    assert manifest["seed"] == job.seed and manifest["folder"] == job.folder
    return files


def _served(client, job, name: str) -> bytes:
    return b"".join(client.get(f"/jobs/{job.pk}/files/{name}").streaming_content)


def _logbook(files: dict[str, bytes], top: str) -> list[tuple]:
    with tarfile.open(fileobj=io.BytesIO(files["output.tar.gz"])) as archive:
        member = archive.extractfile(f"./{top}/checkpoints/checkpoint.pkl")
        checkpoint = pickle.loads(member.read(), encoding="latin1")
    return [(record["gen"], record["min"], record["avg"]) for record in checkpoint["logbook"]]


@pytest.mark.slow
def test_runs_of_one_package_keep_their_own_results_and_a_seed_repeats_a_run(
    client, alice, demo_package, running_worker
):
    package = demo_package(alice, offspring_size=2, max_ngen=2)
    client.force_login(alice)
    form = {"cores_per_node": "1", "runtime_hours": "1"}

    client.post(f"/jobs/run-here/{package.pk}/", form)
    client.post(f"/jobs/run-here/{package.pk}/", form)
    first, second = Job.objects.filter(owner=alice).order_by("pk")
    for job in (first, second):
        wait_for(
            job, lambda j: j.state == Job.State.COLLECTED, timeout=240, what="a run in storage"
        )
    first_files = _stored(first)
    # "Run again with this seed" from the first run's page.
    page = client.get(f"/jobs/{first.pk}/").content.decode()
    assert f'<code id="job-seed">{first.seed}</code>' in page
    again_url = re.search(r'id="run-again" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert f'value="{first.seed}"' in client.get(again_url).content.decode()
    client.post(again_url, {**form, "seed": str(first.seed)})
    third = Job.objects.filter(owner=alice).order_by("pk").last()
    wait_for(third, lambda j: j.state == Job.State.COLLECTED, timeout=240, what="the repeated run")

    folders = [job.folder for job in (first, second, third)]
    assert len(set(folders)) == 3
    for folder in folders:
        match = _RUN_NAME.fullmatch(folder)
        assert match and match["stem"] == package.run_name.rsplit("_", 1)[0]
    assert len({first.results_prefix, second.results_prefix, third.results_prefix}) == 3
    assert first.seed != second.seed and third.seed == first.seed
    stored = {job.pk: _stored(job) for job in (first, second, third)}
    assert stored[first.pk] == first_files  # later runs left the first run's files alone
    for job in (first, second, third):
        assert f"BLUEPYOPT_SEED={job.seed}" in stored[job.pk]["STDOUT"].decode()
        assert _served(client, job, "output.tar.gz") == stored[job.pk]["output.tar.gz"]
    logbooks = {
        job.pk: _logbook(stored[job.pk], package.run_name) for job in (first, second, third)
    }
    assert logbooks[third.pk] == logbooks[first.pk]  # the same seed, the same run
    assert logbooks[second.pk] != logbooks[first.pk]  # another seed, another run


def test_two_runs_started_together_get_folders_of_their_own(alice, script_package):
    package = script_package(alice, "print('x')\n")

    with transaction.atomic():
        first = job_create_local(owner=alice, package=package, cores_per_node=1, runtime_hours=1)
        second = job_create_local(owner=alice, package=package, cores_per_node=1, runtime_hours=1)
        chosen = job_create_local(
            owner=alice, package=package, cores_per_node=1, runtime_hours=1, seed=12
        )
        names = [_RUN_NAME.fullmatch(job.folder) for job in (first, second, chosen)]
        seeds = [job.seed for job in (first, second, chosen)]
        transaction.set_rollback(True)  # nothing is queued: these runs never start

    assert all(names) and {name["stem"] for name in names} == {"CA1_pyr_cACpyr_script"}
    assert names[0]["stamp"] < names[1]["stamp"] < names[2]["stamp"]
    assert seeds[0] != seeds[1] and seeds[2] == 12


def _finished_job(owner, *, folder: str, backend: str = "nsg") -> Job:
    return Job.objects.create(
        owner=owner,
        backend=backend,
        folder=folder,
        handle=f"NGBW-JOB-BLUEPYOPT_EXPANSE-{folder[-8:]:0>32}" if backend == "nsg" else "",
        state=Job.State.COMPLETED,
        seed=3,
    )


def _sources(files: dict[str, bytes]) -> list[ResultSource]:
    return [
        ResultSource(name, len(data), lambda handle, data=data: handle.write(data))
        for name, data in files.items()
    ]


def test_a_results_folder_already_used_in_storage_is_never_written_into(alice):
    job = _finished_job(alice, folder="CA1_pyr_cACpyr_old_20261201000000")
    taken = f"BluePyOptOne/resultsNSG/alice/{job.folder}"
    default_storage.save(f"{taken}/output.tar.gz", ContentFile(b"an earlier run's results"))

    store_results(job, _sources({"STDOUT": b"mine\n", "output.tar.gz": b"my results"}))

    job.refresh_from_db()
    assert job.state == Job.State.COLLECTED and job.results_prefix == f"{taken}-2"
    assert default_storage.open(f"{taken}/output.tar.gz").read() == b"an earlier run's results"
    assert _stored(job)["output.tar.gz"] == b"my results"


@pytest.mark.parametrize("trouble", ["forgotten credentials", "deleted at NSG", "NSG answers 500"])
def test_copy_to_storage_on_a_stored_job_leaves_it_stored(
    client, alice, nsg_account, emulator, trouble
):
    nsg_account(alice)
    job = _finished_job(alice, folder="CA1_pyr_cACpyr_stored_20261201000001")
    store_results(job, _sources({"STDOUT": b"out\n", "output.tar.gz": b"results"}))
    job.refresh_from_db()
    before = _stored(job)
    if trouble == "forgotten credentials":
        client.force_login(alice)
        client.post("/jobs/nsg-account/forget/")
        assert not NsgAccount.objects.filter(owner=alice).exists()
    elif trouble == "NSG answers 500":
        emulator.add_fault("alice", "http500")
    client.force_login(alice)

    page = client.post(f"/jobs/{job.pk}/collect/", follow=True).content.decode()
    collected_again = job_collect(job.pk)  # a stray copy request reaching a worker

    assert "Already in storage" in page and "Nothing was copied again" in page
    assert collected_again == "not claimed"
    job.refresh_from_db()
    assert job.state == Job.State.COLLECTED and not job.error
    assert _stored(job) == before
    assert "Copying to storage now" not in client.get(f"/jobs/{job.pk}/").content.decode()


def test_a_first_copy_without_credentials_says_why_and_can_be_tried_again(client, alice):
    job = _finished_job(alice, folder="CA1_pyr_cACpyr_nocreds_20261201000002")

    assert job_collect(job.pk) == "failed"

    job.refresh_from_db()
    assert job.state == Job.State.COMPLETED
    assert "log in to NSG again" in job.error
    assert job.can_collect and not job.result_files.exists()


def _tarball(run_folder: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = pickle.dumps({"logbook": []})
        member = tarfile.TarInfo(f"./{run_folder}/checkpoints/checkpoint.pkl")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _collect_external(owner, handle: str, run_folder: str) -> Job:
    job = Job.objects.create(
        owner=owner,
        backend="nsg",
        handle=handle,
        external=True,
        folder=handle,  # what a job submitted elsewhere without a clientJobName is called
        state=Job.State.COMPLETED,
    )
    data = _tarball(run_folder)
    store_results(
        job, [ResultSource("output.tar.gz", len(data), lambda handle: handle.write(data))]
    )
    job.refresh_from_db()
    return job


def test_jobs_submitted_elsewhere_are_named_by_the_run_folder_in_their_results(client, alice):
    first = _collect_external(alice, "NGBW-JOB-BLUEPYOPT_EXPANSE-0001", "CA1_pyr_20250101000000")
    second = _collect_external(alice, "NGBW-JOB-BLUEPYOPT_EXPANSE-0002", "CA1_pyr_20250101000000")

    assert (first.folder, second.folder) == ("CA1_pyr_20250101000000", "CA1_pyr_20250101000000-2")
    assert _stored(second)  # the manifest names the job as its row does
    client.force_login(alice)
    jobs = client.get("/jobs/").content.decode()
    assert "CA1_pyr_20250101000000-2" in jobs and "NGBW-JOB-BLUEPYOPT_EXPANSE-0002" in jobs
