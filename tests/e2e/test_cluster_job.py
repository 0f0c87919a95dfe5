"""The job page of a run on an ipyparallel cluster: the engines and what each one did."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_job_page_shows_each_engine_s_evaluations_and_the_lost_one(
    page, live_server, login, alice, settings, tmp_path
):
    from nsg_app.backends.local import LocalBackend, work_dir
    from nsg_app.local.cli import write_result
    from nsg_app.local.runner import LocalRunResult, RunStatus
    from nsg_app.models import Job

    settings.LOCAL_RUNS_DIR = tmp_path / "local-runs"
    job = Job.objects.create(
        owner=alice,
        backend="local",
        folder="CA1_cluster_run",
        state=Job.State.ACTIVE,
        progress={
            "generation": 2,
            "max_ngen": 2,
            "evaluations": 8,
            "fraction": 1.0,
            "best": 1.5,
            "elapsed_text": "0:12",
        },
    )
    run = work_dir(job) / "run"
    run.mkdir(parents=True)
    (run / "output.tar.gz").write_bytes(b"")
    # What the runner writes at the end of a cluster run on which engine 1 was lost.
    write_result(
        run / "result.json",
        LocalRunResult(
            status=RunStatus.COMPLETED,
            exit_code=0,
            reason="The optimisation finished and wrote checkpoints/checkpoint.pkl.",
            stdout_path=run / "STDOUT",
            stderr_path=run / "STDERR",
            output_path=run / "output.tar.gz",
            checkpoint_found=True,
            elapsed_seconds=12.0,
            stderr_tail="",
            cores=2,
            cluster={
                "connection_file": "/srv/cluster/ipcontroller-client.json",
                "engines": [
                    {"id": 0, "host": "node-a", "pid": 10, "evaluations": 6, "lost": False},
                    {"id": 1, "host": "node-b", "pid": 11, "evaluations": 1, "lost": True},
                ],
                "engines_lost": [1],
            },
        ),
    )
    # The runner's first stage names the cluster by its connection file: a long path.
    connection_file = "/srv/" + "/".join(["a_rather_long_folder_name"] * 8) + "/ipcontroller.json"
    job.stages.create(
        stage="RUNNING", at=timezone.now(), message=f"Started on the cluster {connection_file}."
    )
    LocalBackend().adopt(job)  # its runner is gone: the result is read as at the end

    login(alice)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("#progress-engines")).to_have_text(
        "Engines of the cluster: 0 on node-a: 6 evaluations · "
        "1 on node-b: 1 evaluation (lost during the run)"
    )
    # The long path wraps inside the stage table: the table does not run under the stored
    # results beside it.
    stages = page.get_by_role("table", name="Stage history")
    expect(stages).to_contain_text(connection_file)
    assert stages.evaluate("(table) => table.scrollWidth <= table.parentElement.clientWidth")
