"""Hostile models, run the ways a user can run them: nothing leaks, every attempt fails.

Each payload (tests/sandbox/payloads.py) tries to read the site's credentials key, its
secret key, its database and another user's stored file, to list the storage, to find the
site's secrets in its environment or in other processes', to talk to the site's Redis and
to write outside its work folder; it reports what it managed. Through the site (a real
Celery worker and Redis): View analysis of an uploaded result whose model/evaluator.py or
checkpoint pickle carries the payload, and Run here of a model whose opt_neuron.py or .mod
file does. Through the command line: ``manage.py analyse`` and ``manage.py run_local``.

The model's code runs in the sandbox (models_app.bpo.sandbox): these tests fail where it
does not.
"""

from __future__ import annotations

import json

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from analysis_app.models import Analysis
from models_app.bpo.package import build_package
from models_app.models import Optimisation
from nsg_app.models import Job
from tests.analysis.conftest import wait_for as wait_for_analysis
from tests.fixtures.demo import DEMO_NAME
from tests.jobs.conftest import wait_for as wait_for_job

from .conftest import redis_key_set, tar_texts
from .payloads import (
    REPORT_NAME,
    Targets,
    demo_checkpoint,
    demo_copy,
    nsg_output,
    pickle_payload,
    reports_in,
    with_compile_time_include,
    with_evaluator_payload,
    with_mod_payload,
    with_opt_neuron_payload,
    zip_folder,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RUN_NAME = "CA1_pyr_cACpyr_ballstick3_20261202140000"
# Where the sandbox gives a model a private /tmp, writing there succeeds and is harmless:
# that attempt is judged by whether the file appeared on this machine.
PRIVATE_IF_SANDBOXED = "the system's temporary folder"


def assert_every_attempt_failed(reports: list[dict], secrets) -> None:
    assert reports, "the payload did not run: no report"
    for report in reports:
        managed = [
            attempt
            for attempt in report["attempts"]
            if attempt["managed"] and attempt["what"] != PRIVATE_IF_SANDBOXED
        ]
        assert managed == [], json.dumps(managed, indent=1)
        kinds = {attempt["kind"] for attempt in report["attempts"]}
        assert kinds == {"read", "list", "environment", "network", "write"}
    assert secrets.written_outside() == []
    assert not redis_key_set(), "the payload reached the site's Redis"


def assert_nothing_leaked(secrets, *texts) -> None:
    for text in texts:
        assert secrets.found_in(text) == [], text[:3000] if isinstance(text, str) else ""


def breaking(targets: Targets) -> Targets:
    """The same targets, with a probe that raises once done: the model then fails."""
    return Targets(**{**targets.__dict__, "break_model": True})


# --- View analysis of an uploaded result ------------------------------------------------


def _upload(client, user, tarball) -> Analysis:
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
    return wait_for_analysis(analysis, lambda row: row.status in ("done", "failed"), timeout=240)


def _analysis_seen_by_user(client, analysis: Analysis) -> str:
    page = client.get(analysis.get_absolute_url()).content.decode()
    status = client.get(reverse("analysis_app:status", args=[analysis.pk])).content.decode()
    return "\n".join(
        [
            page,
            status,
            analysis.error_message,
            json.dumps(analysis.error_details),
            json.dumps(analysis.progress),
        ]
    )


def test_view_analysis_of_a_result_whose_evaluator_is_hostile(
    client, alice, hostile, tmp_path, running_worker
):
    targets, secrets = hostile
    model = with_evaluator_payload(demo_copy(tmp_path / "model", DEMO_NAME), breaking(targets))
    tarball = nsg_output(model, tmp_path, run_name=RUN_NAME, checkpoint=demo_checkpoint())

    analysis = _upload(client, alice, tarball)

    # The user sees the model fail as a model does: its own code raised.
    assert analysis.status == "failed"
    assert analysis.error_kind == "model_error", analysis.error_message
    seen = _analysis_seen_by_user(client, analysis)
    assert "the hostile probe broke the model on purpose" in seen
    assert_every_attempt_failed(reports_in(analysis.error_details.get("log", "")), secrets)
    assert_nothing_leaked(secrets, seen)


def test_view_analysis_of_a_result_whose_checkpoint_pickle_is_hostile(
    client, alice, hostile, tmp_path, running_worker
):
    targets, secrets = hostile
    model = demo_copy(tmp_path / "model", DEMO_NAME)
    tarball = nsg_output(
        model, tmp_path, run_name=RUN_NAME, checkpoint=pickle_payload(breaking(targets))
    )

    analysis = _upload(client, alice, tarball)

    assert analysis.status == "failed"
    assert analysis.error_kind == "checkpoint_unreadable", analysis.error_message
    seen = _analysis_seen_by_user(client, analysis)
    assert "cannot be read" in seen
    assert_every_attempt_failed(reports_in(analysis.error_details.get("log", "")), secrets)
    assert_nothing_leaked(secrets, seen)


# --- Run here of a hostile model --------------------------------------------------------


def _run_here(client, user, folder, tmp_path) -> Job:
    from models_app.services import optimisation_import, package_create

    archive = zip_folder(folder, tmp_path / f"{folder.name}.zip")
    with open(archive, "rb") as handle:
        outcome = optimisation_import(source=handle, kind=Optimisation.Source.UPLOAD, owner=user)
    package = package_create(
        optimisation=outcome.optimisation, owner=user, offspring_size=2, max_ngen=2
    )
    client.force_login(user)
    response = client.post(
        f"/jobs/run-here/{package.pk}/", {"cores_per_node": "1", "runtime_hours": "0.1"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get(owner=user)
    return wait_for_job(
        job,
        lambda row: row.state in (Job.State.COLLECTED, Job.State.FAILED),
        timeout=300,
        what="the hostile run",
    )


def _job_seen_by_user(client, job: Job) -> tuple[str, dict[str, bytes]]:
    """The job's pages and messages, and every stored result file (tarball unpacked)."""
    texts = [
        client.get(f"/jobs/{job.pk}/").content.decode(),
        client.get(f"/jobs/{job.pk}/status.json").content.decode(),
        job.error,
        job.stderr_tail,
        job.flag_detail,
        *job.stages.values_list("message", flat=True),
    ]
    files: dict[str, bytes] = {}
    if job.results_prefix:
        for name in default_storage.listdir(job.results_prefix)[1]:
            data = default_storage.open(f"{job.results_prefix}/{name}", "rb").read()
            if name.endswith(".tar.gz"):
                files.update({f"{name}:{member}": text for member, text in tar_texts(data).items()})
            else:
                files[name] = data
    return "\n".join(texts), files


def _reports_in_results(files: dict[str, bytes]) -> list[dict]:
    reports = [json.loads(data) for name, data in files.items() if name.endswith(f"/{REPORT_NAME}")]
    return reports or [
        report
        for name, data in files.items()
        for report in reports_in(data.decode(errors="replace"))
    ]


def test_run_here_of_a_model_whose_opt_neuron_is_hostile(
    client, alice, hostile, tmp_path, running_worker
):
    targets, secrets = hostile
    folder = with_opt_neuron_payload(demo_copy(tmp_path / "model", DEMO_NAME), targets)

    job = _run_here(client, alice, folder, tmp_path)

    # The payload did not break the model: the run ends as any run does.
    assert job.state == Job.State.COLLECTED, job.error
    seen, files = _job_seen_by_user(client, job)
    assert_every_attempt_failed(_reports_in_results(files), secrets)
    assert_nothing_leaked(secrets, seen, *files.values())


def test_run_here_of_a_model_whose_mod_file_calls_system(
    client, alice, hostile, tmp_path, running_worker
):
    targets, secrets = hostile
    folder = with_mod_payload(demo_copy(tmp_path / "model", DEMO_NAME), targets)

    job = _run_here(client, alice, folder, tmp_path)

    assert job.state == Job.State.COLLECTED, job.error
    seen, files = _job_seen_by_user(client, job)
    assert_every_attempt_failed(_reports_in_results(files), secrets)
    assert_nothing_leaked(secrets, seen, *files.values())


def test_run_here_of_a_mod_file_that_includes_the_credentials_key_when_compiled(
    client, alice, hostile, tmp_path, running_worker
):
    """The compiler's error log is shown to the user: it must not quote the site's key."""
    targets, secrets = hostile
    folder = with_compile_time_include(
        demo_copy(tmp_path / "model", DEMO_NAME), targets.secret_files["credentials key"]
    )

    job = _run_here(client, alice, folder, tmp_path)

    seen, files = _job_seen_by_user(client, job)
    assert "mechanisms" in seen.lower()  # the failure is the compilation's, and says so
    assert_nothing_leaked(secrets, seen, *files.values())


# --- the command line -------------------------------------------------------------------


def test_manage_py_analyse_of_a_result_whose_evaluator_is_hostile(hostile, tmp_path):
    targets, secrets = hostile
    model = with_evaluator_payload(demo_copy(tmp_path / "model", DEMO_NAME), breaking(targets))
    tarball = nsg_output(model, tmp_path, run_name=RUN_NAME, checkpoint=demo_checkpoint())
    out = tmp_path / "analysis"

    with pytest.raises(CommandError, match="model_error") as failed:
        call_command("analyse", str(tarball), "-o", str(out))

    error = (out / "error.json").read_text()
    assert_every_attempt_failed(reports_in(json.loads(error)["details"]["log"]), secrets)
    assert_nothing_leaked(secrets, error, str(failed.value))


def test_manage_py_analyse_of_a_result_whose_checkpoint_pickle_is_hostile(hostile, tmp_path):
    targets, secrets = hostile
    model = demo_copy(tmp_path / "model", DEMO_NAME)
    tarball = nsg_output(
        model, tmp_path, run_name=RUN_NAME, checkpoint=pickle_payload(breaking(targets))
    )
    out = tmp_path / "analysis"

    with pytest.raises(CommandError, match="checkpoint_unreadable") as failed:
        call_command("analyse", str(tarball), "-o", str(out))

    error = (out / "error.json").read_text()
    assert_every_attempt_failed(reports_in(json.loads(error)["details"]["log"]), secrets)
    assert_nothing_leaked(secrets, error, str(failed.value))


@pytest.mark.parametrize("payload", [with_opt_neuron_payload, with_mod_payload])
def test_manage_py_run_local_of_a_hostile_model(payload, hostile, tmp_path, settings):
    targets, secrets = hostile
    folder = payload(demo_copy(tmp_path / "model", DEMO_NAME), targets)
    package = tmp_path / f"{RUN_NAME}.zip"
    build_package(folder, run_name=RUN_NAME, offspring_size=2, max_ngen=2, out=package)
    out = tmp_path / "run"

    call_command(
        "run_local",
        str(package),
        "-o",
        str(out),
        "--cores",
        "1",
        "--runtime-hours",
        "0.1",
        "--mechanisms-cache",
        str(settings.MECHANISMS_CACHE_DIR),
    )

    report = json.loads((out / RUN_NAME / REPORT_NAME).read_text())
    assert_every_attempt_failed([report], secrets)
    for name in ("STDOUT", "STDERR", "output.tar.gz"):
        assert_nothing_leaked(secrets, (out / name).read_bytes())
    assert_nothing_leaked(secrets, *tar_texts((out / "output.tar.gz").read_bytes()).values())


# --- import of a catalogue model whose checkpoint is hostile -----------------------------


def test_importing_a_model_whose_checkpoint_pickle_is_hostile(alice, hostile, tmp_path):
    """Import reads each checkpoint's stored fitness by unpickling it: in the sandbox."""
    from models_app.bpo.checkpoints import survey_checkpoints
    from models_app.bpo.sandbox import Sandbox
    from models_app.services import optimisation_import

    targets, secrets = hostile
    model = demo_copy(tmp_path / "model", DEMO_NAME)
    (model / "checkpoints" / "seed1.pkl").write_bytes(pickle_payload(targets))

    archive = zip_folder(model, tmp_path / f"{model.name}.zip")
    with open(archive, "rb") as handle:
        outcome = optimisation_import(source=handle, kind=Optimisation.Source.UPLOAD, owner=alice)

    stored = Optimisation.objects.get(pk=outcome.optimisation.pk)
    assert [entry["name"] for entry in stored.checkpoints] == ["seed1.pkl"]
    assert stored.checkpoints[0]["fitness"] is None, stored.checkpoints  # no checkpoint in it
    assert secrets.written_outside() == []
    assert not redis_key_set(), "the payload reached the site's Redis"
    assert_nothing_leaked(secrets, json.dumps(stored.checkpoints))

    # The control: the same survey unconfined does run the payload, which then writes.
    survey_checkpoints(model, sandbox=Sandbox("off"))
    assert secrets.written_outside() != []
