"""The whole way on NSG (the emulator), with a real worker and beat: submit, track, collect."""

import io
import json
import tarfile

import pytest
from django.core.files.storage import default_storage

from nsg_app.models import Job, NsgAccount, ResultFile
from nsg_app.polling import NOT_DUE, POLL_FAILED
from nsg_app.services import account_poll_run, job_collect
from rebuild_site.stored import folder_used
from tests.jobs.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

SUBMIT = {"tool": "BLUEPYOPT_EXPANSE", "nodes": "1", "cores_per_node": "2", "runtime_hours": "48"}


def _submit(client, package, **changes):
    return client.post(f"/jobs/run-nsg/{package.pk}/", {**SUBMIT, **changes})


@pytest.mark.slow
def test_from_package_to_stored_results_with_worker_and_beat(
    client, alice, nsg_account, demo_package, running_worker, running_beat
):
    nsg_account(alice)
    package = demo_package(alice)
    client.force_login(alice)

    response = _submit(client, package, seed="4242")

    job = Job.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.seed == 4242
    wait_for(job, lambda j: j.handle, what="NSG to accept the job")
    assert job.handle.startswith("NGBW-JOB-BLUEPYOPT_EXPANSE-")
    assert job.handle in client.get(f"/jobs/{job.pk}/").content.decode()
    wait_for(
        job, lambda j: j.state == Job.State.COLLECTED, timeout=180, what="the results in storage"
    )

    stages = list(job.stages.values_list("stage", flat=True))
    for stage in (
        "QUEUE",
        "COMMANDRENDERING",
        "INPUTSTAGING",
        "SUBMITTED",
        "LOAD_RESULTS",
        "COMPLETED",
    ):
        assert stage in stages
    assert job.flag == ""
    prefix = f"BluePyOptOne/resultsNSG/alice/{job.folder}"
    assert job.results_prefix == prefix
    _, files = default_storage.listdir(prefix)
    assert sorted(files) == ["STDERR", "STDOUT", "manifest.json", "output.tar.gz"]
    manifest = json.loads(default_storage.open(f"{prefix}/manifest.json").read())
    assert manifest["seed"] == 4242
    for entry in manifest["files"]:
        content = default_storage.open(f"{prefix}/{entry['name']}", "rb").read()
        assert len(content) == entry["size"]
        import hashlib

        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
    # The seed travelled inside the zip: NSG passes no environment to the job.
    stdout = default_storage.open(f"{prefix}/STDOUT", "rb").read().decode()
    assert "BLUEPYOPT_SEED=4242" in stdout
    with tarfile.open(
        fileobj=io.BytesIO(default_storage.open(f"{prefix}/output.tar.gz", "rb").read())
    ) as archive:
        assert f"./{package.run_name}/checkpoints/checkpoint.pkl" in archive.getnames()
    status = client.get(f"/jobs/{job.pk}/status.json").json()
    assert status["state"] == "collected" and {f["name"] for f in status["files"]} >= {
        "STDOUT",
        "output.tar.gz",
    }


def test_nsg_parameter_errors_show_next_to_the_fields(
    client, alice, nsg_account, demo_package, settings
):
    nsg_account(alice)
    package = demo_package(alice)
    client.force_login(alice)
    # The site allows 100 cores on the TG tool here; NSG itself allows 24: its error shows.
    settings.NSG_TOOL_CORE_LIMITS = {"BLUEPYOPT_EXPANSE": 24, "BLUEPYOPT_TG": 128}

    response = _submit(client, package, tool="BLUEPYOPT_TG", cores_per_node="100")

    assert response.status_code == 400
    page = response.content.decode()
    field = page.split('id="id_cores_per_node"', 1)[1].split("form-text", 1)[0]
    assert "NSG:" in field
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nodes": "73"}, "less than or equal to 72"),
        ({"runtime_hours": "49"}, "less than or equal to 48"),
        ({"cores_per_node": "25"}, "at most 24 cores"),
        ({"nodes": "two"}, "whole number"),
    ],
)
def test_the_form_checks_what_nsg_would(client, alice, nsg_account, demo_package, changes, message):
    nsg_account(alice)
    package = demo_package(alice)
    client.force_login(alice)

    response = _submit(client, package, **changes)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Job.objects.exists()


def _submitted_elsewhere(emulator, owner, package):
    """The package submitted to the emulator directly, and the site's active job for it."""
    with emulator.client(owner.username) as nsg, default_storage.open(package.file, "rb") as handle:
        status = nsg.submit(
            "BLUEPYOPT_EXPANSE", handle, vparams={"filename_": "init.py", "runtime_": 48}
        )
    return status, _active_job(owner, package, status.handle)


def _eventually(find, *, tick, timeout: float = 30):
    """What ``find`` returns once it returns something, running ``tick`` before each try."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        tick()
        found = find()
        if found is not None:
            return found
        assert time.monotonic() < deadline, "nothing found in time"
        time.sleep(0.2)


def _active_job(alice, package, handle_from):
    """A job of ours that NSG knows and that has not finished (created by a direct submit)."""
    return Job.objects.create(
        owner=alice,
        backend="nsg",
        package=package,
        folder=f"{package.run_name}-{handle_from[-8:]}",
        tool="BLUEPYOPT_EXPANSE",
        nodes=1,
        cores_per_node=2,
        runtime_hours=1,
        handle=handle_from,
        state=Job.State.ACTIVE,
    )


@pytest.mark.parametrize("fault", ["http500", "malformed", "usage_limit", "unreachable"])
def test_poll_errors_back_off_and_lose_nothing(
    fault, alice, nsg_account, script_package, emulator, settings
):
    account = nsg_account(alice)
    package = script_package(alice, "print('done')\n")
    status, job = _submitted_elsewhere(emulator, alice, package)
    if fault == "unreachable":
        from rebuild_site.services import free_port

        settings.NSG_BASE_URL = f"http://127.0.0.1:{free_port()}/cipresrest/v1"
    else:
        emulator.add_fault("alice", fault)

    assert account_poll_run(account.pk) == POLL_FAILED

    account.refresh_from_db()
    job.refresh_from_db()
    assert account.poll_failures == 1 and account.last_error
    assert account.next_poll_at is not None and account.next_poll_at > account.last_polled_at
    assert job.state == Job.State.ACTIVE and job.handle == status.handle
    assert account_poll_run(account.pk) == NOT_DUE  # backing off: no request before next_poll_at

    emulator.clear_faults()
    settings.NSG_BASE_URL = emulator.base_url
    NsgAccount.objects.filter(pk=account.pk).update(next_poll_at=None)
    wait_for(
        job,
        lambda j: j.state in (Job.State.COMPLETED, Job.State.COLLECTED),
        tick=lambda: account_poll_run(account.pk),
        timeout=120,
    )
    account.refresh_from_db()
    assert account.poll_failures == 0 and account.last_error == ""


def test_one_request_per_account_per_poll_whatever_the_number_of_jobs(
    alice, nsg_account, script_package, emulator
):
    account = nsg_account(alice)
    package = script_package(alice, "import time\ntime.sleep(30)\n")
    with emulator.client("alice") as nsg, default_storage.open(package.file, "rb") as handle:
        data = handle.read()
        handles = [
            nsg.submit(
                "BLUEPYOPT_EXPANSE", data, vparams={"filename_": "init.py", "runtime_": 48}
            ).handle
            for _ in range(3)
        ]
    for handle in handles:
        _active_job(alice, package, handle)
    emulator.forget_requests()

    account_poll_run(account.pk)

    requests = emulator.requests_of("alice")
    assert [(r["method"], r["path"]) for r in requests] == [
        ("GET", "/cipresrest/v1/job/alice?expand=true")
    ]


def test_jobs_submitted_elsewhere_appear_in_the_job_manager(
    client, alice, bob, nsg_account, emulator, script_package
):
    account = nsg_account(alice)
    package = script_package(alice, "import time\ntime.sleep(30)\n")
    with emulator.client("alice") as nsg, default_storage.open(package.file, "rb") as handle:
        elsewhere = nsg.submit(
            "BLUEPYOPT_EXPANSE",
            handle,
            vparams={"filename_": "init.py", "runtime_": 48},
            metadata={"clientJobName": "my_other_run"},
        )
    client.force_login(alice)

    client.post("/jobs/refresh/")  # a worker may poll first: either poll adds the job

    job = _eventually(
        lambda: Job.objects.filter(handle=elsewhere.handle).first(),
        tick=lambda: account_poll_run(account.pk, force=True),
    )
    assert job.external and job.owner == alice and job.folder == "my_other_run"
    assert elsewhere.handle in client.get("/jobs/").content.decode()
    client.force_login(bob)
    assert elsewhere.handle not in client.get("/jobs/").content.decode()


def test_collecting_a_stored_job_again_changes_nothing(
    alice, nsg_account, demo_package, emulator, running_worker
):
    account = nsg_account(alice)
    package = demo_package(alice)
    status, job = _submitted_elsewhere(emulator, alice, package)
    # Completed, then copied once by the worker on its own.
    wait_for(
        job,
        lambda j: j.state == Job.State.COLLECTED,
        tick=lambda: account_poll_run(account.pk),
        timeout=120,
    )

    first = {f.name: f.sha256 for f in ResultFile.objects.filter(job=job)}
    assert job_collect(job.pk) == "not claimed"

    second = {f.name: f.sha256 for f in ResultFile.objects.filter(job=job)}
    assert first == second
    job.refresh_from_db()
    assert job.state == Job.State.COLLECTED
    _, files = default_storage.listdir(job.results_prefix)
    assert sorted(files) == ["STDERR", "STDOUT", "manifest.json", "output.tar.gz"]


def test_a_collection_claimed_by_a_live_worker_is_not_started_twice(alice, demo_package):
    package = demo_package(alice)
    job = _active_job(alice, package, "NGBW-JOB-BLUEPYOPT_EXPANSE-" + "A" * 32)
    from django.utils import timezone

    Job.objects.filter(pk=job.pk).update(
        state=Job.State.COLLECTING, collect_heartbeat_at=timezone.now()
    )

    assert job_collect(job.pk) == "not claimed"


@pytest.mark.parametrize(
    ("script", "flag", "words"),
    [
        (
            "raise RuntimeError('the model broke')\n",
            "script_error",
            "RuntimeError: the model broke",
        ),
        ("print('finished without optimising')\n", "no_checkpoint", "no checkpoint"),
    ],
)
def test_completed_jobs_without_a_result_are_flagged_with_the_reason(
    script, flag, words, alice, nsg_account, script_package, emulator, running_worker
):
    account = nsg_account(alice)
    package = script_package(alice, script)
    status, job = _submitted_elsewhere(emulator, alice, package)

    wait_for(
        job,
        lambda j: j.state == Job.State.COLLECTED,
        tick=lambda: account_poll_run(account.pk),
        timeout=60,
    )

    assert job.flag == flag
    assert words in job.flag_detail or words in job.stderr_tail


def test_walltime_exceeded_is_flagged_as_runtime_too_short(
    alice, nsg_account, script_package, emulator, running_worker
):
    account = nsg_account(alice)
    package = script_package(alice, "import time\ntime.sleep(60)\n")
    emulator.add_fault("alice", "walltime", seconds="1")
    status, job = _submitted_elsewhere(emulator, alice, package)

    wait_for(
        job,
        lambda j: j.state == Job.State.COLLECTED,
        tick=lambda: account_poll_run(account.pk),
        timeout=60,
    )

    assert job.flag == "time_limit"
    assert "DUE TO TIME LIMIT" in job.stderr_tail


def test_cancel_stops_the_job_at_nsg(client, alice, nsg_account, script_package, emulator):
    account = nsg_account(alice)
    package = script_package(alice, "import time\ntime.sleep(120)\n")
    status, job = _submitted_elsewhere(emulator, alice, package)
    account_poll_run(account.pk)
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert "cancelled and deleted at NSG" in response.content.decode()
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    with emulator.client("alice") as nsg:
        assert status.handle not in [s.handle for s in nsg.list_jobs()]


def _submitting_job(owner, package):
    """A job the site created and no worker has submitted yet (stuck in Submitting)."""
    return Job.objects.create(
        owner=owner,
        backend="nsg",
        package=package,
        folder=package.run_name,
        tool="BLUEPYOPT_EXPANSE",
        nodes=1,
        cores_per_node=2,
        runtime_hours=1,
    )


def test_a_job_stuck_in_submitting_can_be_cancelled(client, alice, nsg_account, script_package):
    nsg_account(alice)
    job = _submitting_job(alice, script_package(alice, "print('never')\n"))
    client.force_login(alice)

    response = client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert response.status_code == 200
    assert "cancelled before NSG accepted it" in response.content.decode()
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert "CANCELLED" in job.stages.values_list("stage", flat=True)


def test_a_submission_that_ends_after_cancel_is_deleted_at_nsg(
    client, alice, nsg_account, script_package, emulator
):
    from nsg_app.backends.nsg import NsgBackend

    nsg_account(alice)
    job = _submitting_job(alice, script_package(alice, "import time\ntime.sleep(120)\n"))
    seen_by_the_worker = Job.objects.get(pk=job.pk)
    client.force_login(alice)
    client.post(f"/jobs/{job.pk}/cancel/")

    NsgBackend().submit(seen_by_the_worker)  # the upload was already under way

    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    with emulator.client("alice") as nsg:
        assert nsg.list_jobs() == []


def test_other_users_can_neither_see_nor_act_on_a_job(
    client, alice, bob, nsg_account, demo_package
):
    nsg_account(alice)
    package = demo_package(alice)
    job = _active_job(alice, package, "NGBW-JOB-BLUEPYOPT_EXPANSE-" + "B" * 32)
    ResultFile.objects.create(job=job, name="STDOUT", storage_name="x", size=1, sha256="0" * 64)
    client.force_login(bob)

    assert "B" * 32 not in client.get("/jobs/").content.decode()
    for url in (f"/jobs/{job.pk}/", f"/jobs/{job.pk}/status.json", f"/jobs/{job.pk}/files/STDOUT"):
        assert client.get(url).status_code == 404
    for url in (f"/jobs/{job.pk}/cancel/", f"/jobs/{job.pk}/collect/", f"/jobs/{job.pk}/check/"):
        assert client.post(url).status_code == 404
    assert client.get(f"/jobs/run-nsg/{package.pk}/").status_code == 404
    page = client.get("/jobs/nsg-account/").content.decode()
    assert "Logged in to NSG as" not in page
    job.refresh_from_db()
    assert job.state == Job.State.ACTIVE


@pytest.mark.slow
def test_a_worker_killed_while_copying_is_replaced_and_the_copy_ends_complete(
    alice, nsg_account, script_package, emulator, worker_database_url, running_worker
):
    import hashlib
    import time

    from nsg_app.tasks import collect_job, poll_active_jobs
    from tests.conftest import start_worker, stop_process_group

    account = nsg_account(alice)
    package = script_package(
        alice,
        "import os\nwith open('big.bin', 'wb') as f:\n    f.write(os.urandom(20 * 1024 * 1024))\n",
    )
    status, job = _submitted_elsewhere(emulator, alice, package)
    Job.objects.filter(pk=job.pk).update(external=True)  # copied on request only, as below
    wait_for(
        job,
        lambda j: j.state == Job.State.COMPLETED,
        tick=lambda: account_poll_run(account.pk),
        timeout=60,
    )
    emulator.add_fault("alice", "slow", delay="1.5")  # every NSG reply now takes 1.5 s
    doomed = start_worker(worker_database_url, "doomed-worker", queues="kill-test")

    collect_job.apply_async((job.pk,), queue="kill-test")
    wait_for(
        job,
        lambda j: j.state == Job.State.COLLECTING and folder_used(j.results_prefix or "-"),
        timeout=60,
        what="a half-done copy",
    )
    assert not job.result_files.exists()  # the page lists files only once the copy is whole
    stop_process_group(doomed, kill=True)

    job.refresh_from_db()
    assert job.state == Job.State.COLLECTING  # the dead worker's claim remains ...
    emulator.clear_faults()
    time.sleep(4.5)  # ... until its heartbeat is older than COLLECT_STALE_SECONDS (4 s here)
    swept = poll_active_jobs()
    assert swept["accounts"] == 0 and swept["restarted_collections"] == 1
    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=90, what="the restarted copy")

    prefix = job.results_prefix
    _, files = default_storage.listdir(prefix)
    assert sorted(files) == ["STDERR", "STDOUT", "manifest.json", "output.tar.gz"]
    manifest = json.loads(default_storage.open(f"{prefix}/manifest.json").read())
    with emulator.client("alice") as nsg:
        announced = {f.filename: f.length for f in nsg.list_results(status.handle)}
    for entry in manifest["files"]:
        content = default_storage.open(f"{prefix}/{entry['name']}", "rb").read()
        assert len(content) == entry["size"] == announced[entry["name"]]
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
    assert announced["output.tar.gz"] > 20 * 1024 * 1024


def test_the_job_list_page_and_its_status_agree_on_what_is_shown(client, alice, demo_package):
    """The list reloads itself when a job changes state: the page and the JSON must agree
    while nothing changes, or it would reload for ever."""
    package = demo_package(alice)
    job = _active_job(alice, package, "NGBW-JOB-BLUEPYOPT_EXPANSE-" + "C" * 32)
    Job.objects.filter(pk=job.pk).update(flag="no_checkpoint")
    client.force_login(alice)

    page = client.get("/jobs/").content.decode()
    signature = page.split('data-signature="', 1)[1].split('"', 1)[0]
    status = client.get("/jobs/status.json").json()

    import html

    shown = json.loads(html.unescape(signature))
    assert shown == [[j["id"], j["state"], j["flag_code"]] for j in status["jobs"]]


def test_a_stage_stored_twice_by_a_race_does_not_stop_the_polls(
    alice, nsg_account, script_package, emulator
):
    """The submission's task and a poll can store a new job's first stage at the same
    moment, twice; the polls must go on following the job (get_or_create raised there)."""
    from nsg_app.models import JobStageChange

    account = nsg_account(alice)
    package = script_package(alice, "print('done')\n")
    status, job = _submitted_elsewhere(emulator, alice, package)
    first = status.messages[0]
    assert first.timestamp is not None
    for _ in range(2):
        JobStageChange.objects.create(
            job=job, stage=first.stage, at=first.timestamp, message=first.text
        )

    wait_for(
        job,
        lambda j: j.state in (Job.State.COMPLETED, Job.State.COLLECTED),
        tick=lambda: account_poll_run(account.pk),
        timeout=60,
    )

    assert job.stages.filter(stage=first.stage, message=first.text).count() == 2
    assert "COMPLETED" in job.stages.values_list("stage", flat=True)
