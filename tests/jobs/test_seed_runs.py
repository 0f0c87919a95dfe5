"""One Run starts several seeds: one job each, shown together, the best analysed marked."""

import re
import time

import pytest

from analysis_app import services as analyses
from analysis_app.models import Analysis
from models_app.bpo.package import MAX_SEED
from nsg_app.models import Job
from tests.jobs.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FORM = {"cores_per_node": "1", "runtime_hours": "1"}


def _analysed(owner, job) -> Analysis:
    """An analysis of the job's stored run, run here as the task would (or by the test's
    live worker when it took the queued task first)."""
    analysis = analyses.analysis_create(owner=owner, source_kind="job", job=job)
    if analyses.analysis_run(analysis_id=analysis.pk) == analyses.RUNNING_ELSEWHERE:
        deadline = time.monotonic() + 180
        while analysis.status not in (Analysis.Status.DONE, Analysis.Status.FAILED):
            assert time.monotonic() < deadline, "the worker's run of the analysis did not end"
            time.sleep(0.2)
            analysis.refresh_from_db()
    analysis.refresh_from_db()
    assert analysis.status == Analysis.Status.DONE, analysis.error_message
    return analysis


def _rows(page: str) -> list[str]:
    table = re.search(r'<section class="mb-3" id="seed-runs">(.*?)</section>', page, re.S)
    assert table, "no table of the runs started together"
    return re.findall(r"<tr(?: [^>]*)?>(.*?)</tr>", table.group(1), re.S)[1:]


@pytest.mark.slow
def test_one_run_here_with_three_seeds_starts_three_runs_and_marks_the_best_analysed(
    client, alice, demo_package, running_worker
):
    package = demo_package(alice, offspring_size=2, max_ngen=2)
    client.force_login(alice)

    response = client.post(f"/jobs/run-here/{package.pk}/", {**FORM, "seeds": "3"}, follow=True)

    jobs = list(Job.objects.filter(owner=alice).order_by("seed"))
    assert len(jobs) == 3
    assert len({job.seed for job in jobs}) == 3 and len({job.folder for job in jobs}) == 3
    assert len({job.launch for job in jobs}) == 1 and jobs[0].launch
    page = response.content.decode()
    assert f"3 runs of {package.run_name}" in page
    for job in jobs:
        wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=300, what="a run stored")
    # Two of the three analysed: their fitnesses, the lower marked best; the third waits.
    first, second = _analysed(alice, jobs[0]), _analysed(alice, jobs[1])
    fitness = {
        jobs[0].pk: first.fitness["recomputed"],
        jobs[1].pk: second.fitness["recomputed"],
    }
    best = min(fitness, key=fitness.get)

    for url in (f"/jobs/{jobs[2].pk}/", f"/analyses/{first.pk}/"):
        rows = _rows(client.get(url).content.decode())
        assert len(rows) == 3
        for job, row in zip(jobs, rows, strict=True):
            assert f"<code>{job.seed}</code>" in row
            if job.pk in fitness:
                assert f"{fitness[job.pk]:.4f}" in row
                assert ('<span class="badge text-bg-success">best</span>' in row) == (
                    job.pk == best
                )
            else:
                assert "not analysed yet" in row


def test_a_chosen_seed_gives_it_and_the_next_ones(client, alice, script_package):
    package = script_package(alice, "print('x')\n")
    client.force_login(alice)

    client.post(f"/jobs/run-here/{package.pk}/", {**FORM, "seeds": "3", "seed": "40"})

    assert sorted(Job.objects.filter(owner=alice).values_list("seed", flat=True)) == [40, 41, 42]


def test_seeds_that_would_pass_the_largest_seed_are_refused_and_nothing_starts(
    client, alice, script_package
):
    package = script_package(alice, "print('x')\n")
    client.force_login(alice)

    response = client.post(
        f"/jobs/run-here/{package.pk}/", {**FORM, "seeds": "3", "seed": str(MAX_SEED)}
    )

    assert response.status_code == 400
    assert f"With 3 seeds, the seed can be at most {MAX_SEED - 2}." in response.content.decode()
    assert not Job.objects.filter(owner=alice).exists()


def test_more_seeds_than_allowed_are_refused(client, alice, script_package):
    package = script_package(alice, "print('x')\n")
    client.force_login(alice)

    response = client.post(f"/jobs/run-here/{package.pk}/", {**FORM, "seeds": "9"})

    assert response.status_code == 400
    assert "Ensure this value is less than or equal to 8." in response.content.decode()
    assert not Job.objects.filter(owner=alice).exists()


def test_a_run_started_alone_lists_no_other_seeds(client, alice, script_package):
    package = script_package(alice, "print('x')\n")
    client.force_login(alice)

    client.post(f"/jobs/run-here/{package.pk}/", FORM)

    job = Job.objects.get(owner=alice)
    assert not job.launch
    assert 'id="seed-runs"' not in client.get(f"/jobs/{job.pk}/").content.decode()


@pytest.mark.slow
def test_run_nsg_simulation_with_two_seeds_submits_two_jobs(
    client, alice, nsg_account, demo_package, running_worker
):
    nsg_account(alice)
    package = demo_package(alice)
    client.force_login(alice)
    form = {
        "tool": "BLUEPYOPT_EXPANSE",
        "nodes": "1",
        "cores_per_node": "2",
        "runtime_hours": "0.5",
    }

    response = client.post(f"/jobs/run-nsg/{package.pk}/", {**form, "seeds": "2"}, follow=True)

    assert f"Submitting 2 runs of {package.run_name}" in response.content.decode()
    jobs = list(Job.objects.filter(owner=alice).order_by("seed"))
    assert len(jobs) == 2 and jobs[0].seed != jobs[1].seed and jobs[0].launch == jobs[1].launch
    for job in jobs:
        wait_for(job, lambda j: bool(j.handle), timeout=120, what="NSG's handle")
    assert jobs[0].handle != jobs[1].handle
