"""Analyses through the site: results of the demo model in storage, analysed for real.

The NSG-shaped output.tar.gz is made once per session the way a job makes it: the demo's
run package is built and unzipped, its mechanisms compiled (through the cache), `python
init.py` run (2 generations of 2), and the job folder packed with `./` member names.
It is then put in storage as a collected job's results, by the collector's own code.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.demo import DEMO_FOLDER, DEMO_KEY

RUN_NAME = "CA1_pyr_cACpyr_ballstick3_20261125150000"
# The demo's best run, as stored in checkpoints/seed1.pkl.
SEED1_STORED_FITNESS = 8.469
RECORDINGS = {
    "bAP.soma.v",
    "bAP.dend150.v",
    "bAP.dend250.v",
    "step_-0.1.soma.v",
    "step_0.5.soma.v",
}
OBJECTIVES = 8
__all__ = ["DEMO_KEY", "OBJECTIVES", "RECORDINGS", "RUN_NAME", "SEED1_STORED_FITNESS"]


def _run_package(dest: Path, *, max_ngen: int, run: bool) -> Path:
    """The demo's package unzipped in ``dest/job``, run there when asked; the job folder."""
    from django.conf import settings

    from models_app.bpo.archive import extract_zip
    from models_app.bpo.mechanisms import compile_mechanisms, install_mechanisms
    from models_app.bpo.package import build_package

    zip_path = dest / "package.zip"
    build_package(DEMO_FOLDER, run_name=RUN_NAME, offspring_size=2, max_ngen=max_ngen, out=zip_path)
    job = dest / "job"
    extract_zip(zip_path, job)
    shutil.copyfile(zip_path, job / "inputfile")
    run_folder = job / RUN_NAME
    if run:
        compiled = compile_mechanisms(
            run_folder / "mechanisms", cache_dir=settings.MECHANISMS_CACHE_DIR
        )
        install_mechanisms(compiled, run_folder)
        env = dict(os.environ, BLUEPYOPT_SEED="1", MPLBACKEND="Agg")
        env.pop("USEIPYP", None)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        result = subprocess.run(
            [sys.executable, "init.py"],
            cwd=run_folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        (job / "stdout.txt").write_text(result.stdout)
        (job / "stderr.txt").write_text(result.stderr)
    for name, text in {
        "_JOBINFO.TXT": "JobHandle=NGBW-JOB-BLUEPYOPT_EXPANSE-TEST\n",
        "_COMMANDLINE": "python3 init.py\n",
        "start.txt": "Job starting\n",
        "done.txt": "Job finished\n",
    }.items():
        (job / name).write_text(text)
    return job


def pack(job: Path, tarball: Path) -> Path:
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(job, arcname=".")
    return tarball


@pytest.fixture(scope="session")
def nsg_output(tmp_path_factory) -> Path:
    """NSG's output.tar.gz of a real 2 x 2 run of the demo's package."""
    dest = tmp_path_factory.mktemp("nsg_run")
    job = _run_package(dest, max_ngen=2, run=True)
    assert (job / RUN_NAME / "checkpoints" / "checkpoint.pkl").is_file()
    return pack(job, dest / "output.tar.gz")


@pytest.fixture(scope="session")
def output_without_checkpoint(tmp_path_factory) -> Path:
    """An output.tar.gz of a job stopped before its first checkpoint (never run)."""
    dest = tmp_path_factory.mktemp("nsg_short")
    job = _run_package(dest, max_ngen=2, run=False)
    (job / "stderr.txt").write_text(
        "slurmstepd: error: *** JOB 1 CANCELLED DUE TO TIME LIMIT ***\n"
    )
    return pack(job, dest / "output.tar.gz")


@pytest.fixture
def escaping_tarball(tmp_path) -> Path:
    """A tar.gz with a member that would land outside the folder it is unpacked in."""
    path = tmp_path / "output.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = b"owned\n"
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    return path


def results_zip(output: Path, *, folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{folder}STDOUT", "stdout of the job\n")
        archive.writestr(f"{folder}STDERR", "")
        archive.write(output, f"{folder}output.tar.gz")
    return buffer.getvalue()


@pytest.fixture
def demo(db):
    """The demo model in the shared catalogue, with its own best run (seed1.pkl)."""
    from models_app.demo_model import ensure_demo_model
    from models_app.models import Optimisation

    ensure_demo_model()
    return Optimisation.objects.get(source=Optimisation.Source.DEMO, owner=None)


@pytest.fixture
def collected_job(db):
    """A job of `owner` whose results (STDOUT, STDERR, output.tar.gz) are in storage,
    copied there by the collector's own code."""
    from nsg_app.collection import ResultSource, store_results
    from nsg_app.models import Job

    def make(owner, tarball: Path, *, backend: str = "nsg", folder: str = RUN_NAME) -> Job:
        job = Job.objects.create(
            owner=owner,
            backend=backend,
            folder=folder,
            handle=f"NGBW-JOB-TEST-{time.monotonic_ns()}" if backend == "nsg" else "",
            state=Job.State.COMPLETED,
        )
        files = {"STDOUT": b"stdout\n", "STDERR": b"", "output.tar.gz": tarball.read_bytes()}
        store_results(
            job,
            [
                ResultSource(name, len(data), lambda handle, data=data: handle.write(data))
                for name, data in files.items()
            ],
        )
        job.refresh_from_db()
        return job

    return make


@pytest.fixture
def analysed(db):
    """Create an analysis through the service and run it here, as the task would."""
    from analysis_app import services
    from analysis_app.models import Analysis

    def run(owner, **source):
        analysis = services.analysis_create(owner=owner, **source)
        if services.analysis_run(analysis_id=analysis.pk) == services.RUNNING_ELSEWHERE:
            # A test's live worker took the queued task first (transactional tests commit
            # at once): its run is the one that ends the analysis.
            wait_for(
                analysis,
                lambda a: a.status in (Analysis.Status.DONE, Analysis.Status.FAILED),
                timeout=180,
                what="the worker's run of the analysis",
            )
        analysis.refresh_from_db()
        return analysis

    return run


@pytest.fixture
def catalogue_analysis(alice, demo, analysed):
    """Alice's analysis of the demo model's own best run, done."""
    analysis = analysed(alice, source_kind="catalogue", optimisation=demo)
    assert analysis.status == "done", (analysis.error_kind, analysis.error_message)
    return analysis


@pytest.fixture
def run_analysis(alice, collected_job, nsg_output, analysed):
    """Alice's analysis of a new 2 x 2 run of the demo (seed 1), done."""
    job = collected_job(alice, nsg_output)
    analysis = analysed(alice, source_kind="job", job=job)
    assert analysis.status == "done", (analysis.error_kind, analysis.error_message)
    return analysis


@pytest.fixture
def pair(catalogue_analysis, run_analysis):
    return [catalogue_analysis, run_analysis]


def compare_url(*analyses, **extra) -> str:
    from django.urls import reverse

    query = "&".join(
        [f"analysis={a if isinstance(a, int | str) else a.pk}" for a in analyses]
        + [f"{key}={value}" for key, value in extra.items()]
    )
    return f"{reverse('analysis_app:compare')}?{query}"


@pytest.fixture
def saved_comparison(pair):
    """The pair's default saved comparison folder (and its "-2"), empty before the test and
    after it."""
    from analysis_app import services

    prefix = f"BluePyOptAnalysis/alice/{services.comparison_folder(pair)}"
    remove_stored_folder(prefix)
    remove_stored_folder(f"{prefix}-2")
    yield prefix
    remove_stored_folder(prefix)
    remove_stored_folder(f"{prefix}-2")


@pytest.fixture
def comparison_saving_now():
    """The comparison save task, run at once in this process instead of by a worker (on
    commit: capture the callbacks with ``execute=True``)."""
    from unittest import mock

    from analysis_app import services

    def run(comparison_id):
        return services.comparison_save_write(comparison_id=comparison_id)

    with mock.patch("analysis_app.tasks.save_comparison.delay", side_effect=run) as delay:
        yield delay


def stored_files(prefix: str) -> set[str]:
    """Every file stored under ``prefix``, by its name below it."""
    from django.core.files.storage import default_storage

    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return set()
    found = set(files)
    for folder in folders:
        found.update(f"{folder}/{name}" for name in stored_files(f"{prefix}/{folder}"))
    return found


def remove_stored_folder(prefix: str) -> None:
    """Storage lives for the whole session: a test that saves starts (and ends) clean."""
    from django.core.files.storage import default_storage

    for name in stored_files(prefix):
        default_storage.delete(f"{prefix}/{name}")


def wait_for(analysis, predicate, *, timeout: float = 120, what: str = "the analysis"):
    deadline = time.monotonic() + timeout
    while True:
        analysis.refresh_from_db()
        if predicate(analysis):
            return analysis
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}: status={analysis.status} "
                f"progress={analysis.progress} error={analysis.error_message!r}"
            )
        time.sleep(0.2)


def better_on(first: tuple[str, dict], second: tuple[str, dict]) -> str:
    """The comparison page's sentence for two analyses, worked out here from their
    objectives' scores (``(name, {objective: score})``): lower is better."""
    (first_name, first_scores), (second_name, second_scores) = first, second
    first_wins = sum(first_scores[name] < second_scores[name] for name in first_scores)
    second_wins = sum(second_scores[name] < first_scores[name] for name in first_scores)
    equal = len(first_scores) - first_wins - second_wins
    return (
        f"{first_name} is better on {first_wins} of the {len(first_scores)} objectives, "
        f"{second_name} on {second_wins}"
        + (f"; {equal} {'is' if equal == 1 else 'are'} equal" if equal else "")
    )


def best_scores(analysis) -> dict[str, float | None]:
    """The best individual's score of each objective, from the stored analysis.json."""
    from analysis_app import services

    document = services.analysis_document(analysis=analysis)
    return {row["name"]: row["score"] for row in document["individuals"][0]["objectives"]}
