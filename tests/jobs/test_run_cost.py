"""Cost before submitting: Run here and Run NSG simulation forecast wall time and core-hours
from the model's measured time per evaluation, and warn when the runtime limit is too short."""

import math

import pytest

from models_app.bpo.run_cost import run_cost
from nsg_app.models import Job
from nsg_app.services import job_create_local
from tests.jobs.conftest import wait_for


def test_a_continued_run_counts_its_parents_evaluated_again():
    new = run_cost(
        seconds_per_evaluation=20,
        offspring_size=10,
        max_ngen=3,
        nodes=1,
        cores_per_node=4,
        runtime_hours=1,
    )
    continued = run_cost(
        seconds_per_evaluation=20,
        offspring_size=10,
        max_ngen=3,
        nodes=1,
        cores_per_node=4,
        runtime_hours=1,
        continued_from_generation=2,
    )
    assert new.evaluations == 30 and continued.evaluations == 20
    assert new.wall_seconds == 3 * math.ceil(10 / 4) * 20
    assert continued.wall_seconds == 2 * math.ceil(10 / 4) * 20
    assert new.core_hours == pytest.approx(new.wall_seconds * 4 / 3600)
    assert not new.over_limit and new.warning == ""


@pytest.mark.django_db
def test_without_a_measurement_the_page_says_how_to_get_one(client, alice, demo_package):
    package = demo_package(alice)
    client.force_login(alice)

    page = client.get(f"/jobs/run-here/{package.pk}/").content.decode()

    assert "No time per evaluation of this model is measured yet" in page


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_here_measures_the_time_the_next_runs_are_forecast_with(
    client, alice, bob, demo_package, nsg_account, running_worker
):
    first = demo_package(alice, offspring_size=4, max_ngen=2)
    job = job_create_local(owner=alice, package=first, cores_per_node=2, runtime_hours=1)
    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=180, what="the first run")
    progress = job.progress
    per_evaluation = progress["evaluation_seconds"] * 2 / progress["evaluations"]
    assert per_evaluation > 0

    # 200 generations: half the wall time is over the form's least runtime limit (0.01 h)
    # even on a fast machine, and the whole fits in an hour even on a loaded one.
    bigger = demo_package(alice, offspring_size=8, max_ngen=200)
    client.force_login(alice)
    page = client.get(f"/jobs/run-here/{bigger.pk}/").content.decode()
    assert (
        f"{per_evaluation:.1f} s per evaluation on one core, measured by the run {job.folder}"
        in page
    )

    fits = client.get(
        f"/jobs/run-cost/{bigger.pk}/", {"cores_per_node": "2", "runtime_hours": "1"}
    ).json()
    wall = math.ceil(8 / 2) * 200 * per_evaluation
    assert f"{wall * 2 / 3600:.2f} core-hours for 1600 evaluations" in fits["summary"]
    assert fits["warning"] == ""

    short_hours = wall / 2 / 3600
    assert short_hours >= 0.01, f"the demo evaluated faster ({per_evaluation} s) than allowed for"
    too_short = client.get(
        f"/jobs/run-cost/{bigger.pk}/",
        {"cores_per_node": "2", "runtime_hours": f"{short_hours:.6f}"},
    ).json()
    assert "more than the runtime limit" in too_short["warning"]
    response = client.post(
        f"/jobs/run-here/{bigger.pk}/",
        {"cores_per_node": "2", "runtime_hours": f"{short_hours:.6f}"},
        follow=True,
    )
    assert "Expected to take too long" in response.content.decode()
    started = Job.objects.get(package=bigger)
    client.post(f"/jobs/{started.pk}/cancel/")
    wait_for(started, lambda j: not j.is_active, timeout=60, what="the cancelled run to end")

    # NSG charges every core of every node.
    nsg_account(alice)
    nsg_page = client.get(f"/jobs/run-nsg/{bigger.pk}/").content.decode()
    assert 'id="run-cost"' in nsg_page
    nsg = client.get(
        f"/jobs/run-cost/{bigger.pk}/",
        {"nodes": "2", "cores_per_node": "10", "runtime_hours": "1"},
    ).json()
    nsg_wall = 1 * 200 * per_evaluation
    assert f"{nsg_wall * 20 / 3600:.2f} core-hours" in nsg["summary"]

    # Another user's measurements are theirs: bob has none, and alice's package is hers.
    client.force_login(bob)
    assert client.get(f"/jobs/run-cost/{bigger.pk}/").status_code == 404
    own = demo_package(bob)
    assert "measured yet" in client.get(f"/jobs/run-here/{own.pk}/").content.decode()
