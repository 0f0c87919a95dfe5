"""Continue: more generations from a run's checkpoint, with the model's own resume mode."""

from __future__ import annotations

import json
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from analysis_app.engine.figures import evolution_figure
from models_app.bpo.package import seed_package
from models_app.models import Optimisation, RunPackage
from nsg_app.local import RunStatus, read_progress, run_package
from nsg_app.models import Job, ResultFile
from nsg_app.services import job_create_local
from tests.fixtures.demo import DEMO_FOLDER, DEMO_NAME
from tests.jobs.conftest import wait_for

pytestmark = pytest.mark.django_db

SEED = {"BLUEPYOPT_SEED": "7"}


def _demo_model() -> Optimisation:
    from models_app.demo_model import ensure_demo_model

    ensure_demo_model()
    return Optimisation.objects.get(source=Optimisation.Source.DEMO)


def _zip_text(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as archive:
        (member,) = [entry for entry in archive.namelist() if entry.split("/", 1)[1] == name]
        return archive.read(member).decode()


def _zip_bytes(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        (member,) = [entry for entry in archive.namelist() if entry.split("/", 1)[1] == name]
        return archive.read(member)


def _checkpoint(run_folder: Path) -> dict:
    # The test's own run of the project's demo model: a trusted pickle.
    with open(run_folder / "checkpoints" / "checkpoint.pkl", "rb") as stream:
        return pickle.load(stream, encoding="latin1")


def _run(package: Path, work: Path, cache: Path):
    result = run_package(
        package,
        work,
        cores=2,
        runtime_seconds=300,
        mechanisms_cache=cache,
        progress_file=work / "progress.json",
        extra_env=SEED,
    )
    assert result.status is RunStatus.COMPLETED, result.stderr_tail
    return result


@pytest.mark.slow
def test_a_two_generation_run_continued_to_four_keeps_its_first_generations(
    tmp_path, capsys, settings
):
    model = _demo_model()
    cache = tmp_path / "mechanisms"
    first_zip = tmp_path / "first.zip"
    call_command(
        "build_package", model.name, "--offspring", "4", "--generations", "2", "-o", first_zip
    )
    first = _run(first_zip, tmp_path / "first", cache)
    capsys.readouterr()

    continued_zip = tmp_path / "continued.zip"
    call_command(
        "build_package",
        model.name,
        "--continue",
        str(first.output_path),
        "--generations",
        "4",
        "-o",
        str(continued_zip),
    )

    printed = capsys.readouterr().out
    assert "generation 2, offspring size 4, up to generation 4 with --resume" in printed
    assert "evaluates the checkpoint's parents again" in printed
    init = _zip_text(continued_zip, "init.py")
    for argument in ("--max_ngen=4", "--offspring_size=4", "--resume", "--checkpoint"):
        assert f'"{argument}"' in init
    assert '"--start"' not in init
    original = (first.run_folder / "checkpoints" / "checkpoint.pkl").read_bytes()
    assert _zip_bytes(continued_zip, "checkpoints/checkpoint.pkl") == original
    manifest = json.loads(_zip_text(continued_zip, "rebuild_manifest.json"))
    assert manifest["continued_from"]["generation"] == 2
    assert manifest["run"]["command"].endswith("--resume --checkpoint ./checkpoints/checkpoint.pkl")

    continued = _run(continued_zip, tmp_path / "continued", cache)

    before = _checkpoint(first.run_folder)["logbook"]
    after = _checkpoint(continued.run_folder)["logbook"]
    assert [record["gen"] for record in after] == [1, 2, 3, 4]
    assert [dict(record) for record in after[:2]] == [dict(record) for record in before]
    progress = read_progress(tmp_path / "continued" / "progress.json")
    assert progress.generation == 4 and progress.max_ngen == 4 and progress.offspring_size == 4
    # The parents were evaluated again: more evaluations than the two new generations'.
    assert progress.evaluations_done > sum(record["nevals"] for record in after[2:])

    # The analysis draws the evolution joined with the earlier generations.
    out = tmp_path / "analysis"
    call_command("analyse", str(continued.output_path), "-o", str(out))
    analysis = json.loads((out / "analysis.json").read_text())
    assert [row["gen"] for row in analysis["logbook"]] == [1, 2, 3, 4]
    assert analysis["logbook"][0]["min"] == pytest.approx(before[0]["min"])
    assert analysis["continued_from"]["generation"] == 2
    evolution = evolution_figure(analysis)
    assert [shape.x0 for shape in evolution.layout.shapes] == [2]
    assert "continued after generation 2" in evolution.layout.annotations[0].text


def test_a_generation_count_at_or_below_the_checkpoints_is_refused(tmp_path, client, alice):
    model = _demo_model()  # its published seed1.pkl holds generation 4, 4 parents
    out = tmp_path / "continued.zip"

    for generations in ("4", "2"):
        with pytest.raises(CommandError, match="must be more than 4"):
            call_command(
                "build_package",
                model.name,
                "--continue",
                str(DEMO_FOLDER),
                "--generations",
                generations,
                "-o",
                str(out),
            )
    assert list(tmp_path.iterdir()) == []

    client.force_login(alice)
    page = client.get(f"/catalogue/{model.pk}/continue/").content.decode()
    assert 'id="stored-generation">4<' in page
    assert 'id="offspring-size">4<' in page
    assert "evaluates the checkpoint&#x27;s parents again" in page
    assert 'name="offspring_size"' not in page

    response = client.post(
        f"/catalogue/{model.pk}/continue/", {"max_ngen": "4", "backend": "local"}
    )
    assert response.status_code == 400
    assert "must be more than 4" in response.content.decode()
    assert not RunPackage.objects.exists()


def test_continue_builds_a_package_from_the_published_checkpoint_and_the_job_says_so(
    tmp_path, client, alice
):
    model = _demo_model()
    client.force_login(alice)

    response = client.post(f"/catalogue/{model.pk}/continue/", {"max_ngen": "6", "backend": "nsg"})

    package = RunPackage.objects.get(owner=alice)
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/run-nsg/{package.pk}/"
    assert (package.offspring_size, package.max_ngen) == (4, 6)
    assert package.continued_from["checkpoint"] == "seed1.pkl"
    assert package.continued_from["generation"] == 4
    # A job's copy of the package, with its seed written in, still resumes.
    with (
        default_storage.open(package.file, "rb") as source,
        open(tmp_path / "job.zip", "wb") as copy,
    ):
        assert seed_package(source, copy, seed=11)
    init = _zip_text(tmp_path / "job.zip", "init.py")
    assert '"--resume"' in init and '"--max_ngen=6"' in init and "SEED = 11" in init
    job = Job.objects.create(
        owner=alice, backend=Job.Backend.LOCAL, package=package, folder=package.run_name
    )
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "the published run of " + DEMO_NAME in page
    assert "from its generation 4" in page


def test_the_page_refuses_a_model_whose_opt_neuron_cannot_resume(tmp_path, client, alice):
    from models_app.services import optimisation_import

    folder = tmp_path / "CA1_pyr_cACpyr_noresume_20200101010101"
    shutil.copytree(DEMO_FOLDER, folder, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    script = folder / "opt_neuron.py"
    text = script.read_text()
    resume_option = (
        "    parser.add_argument('--continue_cp', '--resume', action='store_true',\n"
        "                        dest='continue_cp', default=False,\n"
        "                        help='continue the optimisation from --checkpoint')\n"
    )
    assert resume_option in text and "continue_cp=args.continue_cp,\n" in text
    text = text.replace(resume_option, "").replace("continue_cp=args.continue_cp,\n", "")
    script.write_text(text.replace("args.start or args.continue_cp", "args.start"))
    model = optimisation_import(
        source=folder, kind=Optimisation.Source.UPLOAD, owner=alice
    ).optimisation
    client.force_login(alice)

    page = client.get(f"/catalogue/{model.pk}/continue/")
    response = client.post(f"/catalogue/{model.pk}/continue/", {"max_ngen": "9"})

    for answer, status in ((page, 200), (response, 400)):
        assert answer.status_code == status
        text = answer.content.decode()
        assert "its opt_neuron.py has no resume mode" in text
        assert "Create the continuing zip file" not in text
    assert not RunPackage.objects.exists()
    with pytest.raises(CommandError, match="has no resume mode"):
        call_command(
            "build_package",
            model.name,
            "--continue",
            str(folder),
            "--generations",
            "9",
            "-o",
            str(tmp_path / "out.zip"),
        )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_cancelled_run_keeps_its_checkpoint_and_is_continued_here(
    client, alice, demo_package, running_worker
):
    package = demo_package(alice, offspring_size=4, max_ngen=200)
    job = job_create_local(owner=alice, package=package, cores_per_node=2, runtime_hours=1)
    wait_for(
        job,
        lambda j: (j.progress or {}).get("generation", 0) >= 3,
        timeout=180,
        what="generation 3 of the run",
    )
    client.force_login(alice)
    client.post(f"/jobs/{job.pk}/cancel/")
    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=120, what="the kept results")
    assert job.stage == "CANCELLED" and "checkpoint" in job.error

    job_page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/catalogue/continue-job/{job.pk}/"' in job_page
    page = client.get(f"/catalogue/continue-job/{job.pk}/").content.decode()
    stored = int(page.split('id="stored-generation">', 1)[1].split("<", 1)[0])
    assert stored >= 2 and 'id="offspring-size">4<' in page

    response = client.post(
        f"/catalogue/continue-job/{job.pk}/", {"max_ngen": str(stored + 2), "backend": "local"}
    )
    continuing = RunPackage.objects.exclude(pk=package.pk).get(owner=alice)
    assert response["Location"] == f"/jobs/run-here/{continuing.pk}/"
    client.post(
        f"/jobs/run-here/{continuing.pk}/",
        {"cores_per_node": "2", "runtime_hours": "1", "seed": "5"},
    )
    second = Job.objects.get(package=continuing)
    assert second.folder != job.folder
    wait_for(
        second, lambda j: j.state == Job.State.COLLECTED, timeout=180, what="the continued run"
    )

    assert second.results_prefix != job.results_prefix
    assert second.progress["generation"] == stored + 2
    with tarfile.open(
        fileobj=default_storage.open(f"{second.results_prefix}/output.tar.gz")
    ) as tar:
        member = f"./{continuing.run_name}/checkpoints/checkpoint.pkl"
        logbook = pickle.loads(tar.extractfile(member).read(), encoding="latin1")["logbook"]
    assert [record["gen"] for record in logbook] == list(range(1, stored + 3))
    page = client.get(f"/jobs/{second.pk}/").content.decode()
    assert f'<a href="/jobs/{job.pk}/">{job.folder}</a> from its generation {stored}' in page


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_published_run_continued_on_nsg_joins_its_logbook(
    client, alice, nsg_account, running_worker, running_beat
):
    model = _demo_model()
    nsg_account(alice)
    client.force_login(alice)

    response = client.post(f"/catalogue/{model.pk}/continue/", {"max_ngen": "5", "backend": "nsg"})
    package = RunPackage.objects.get(owner=alice)
    assert response["Location"] == f"/jobs/run-nsg/{package.pk}/"
    client.post(
        f"/jobs/run-nsg/{package.pk}/",
        {
            "tool": "BLUEPYOPT_EXPANSE",
            "nodes": "1",
            "cores_per_node": "2",
            # The emulator scales the runtime down (TIME_SCALE): NSG's longest.
            "runtime_hours": "48",
            "seed": "3",
        },
    )
    job = Job.objects.get(owner=alice)
    wait_for(job, lambda j: j.state == Job.State.COLLECTED, timeout=180, what="the NSG results")

    assert job.flag == ""
    with tarfile.open(fileobj=default_storage.open(f"{job.results_prefix}/output.tar.gz")) as tar:
        member = f"./{package.run_name}/checkpoints/checkpoint.pkl"
        logbook = pickle.loads(tar.extractfile(member).read(), encoding="latin1")["logbook"]
    with open(DEMO_FOLDER / "checkpoints" / "seed1.pkl", "rb") as stream:
        published = pickle.load(stream, encoding="latin1")["logbook"]
    assert [record["gen"] for record in logbook] == [1, 2, 3, 4, 5]
    assert [dict(record) for record in logbook[:4]] == [dict(record) for record in published]


def test_only_the_owner_continues_a_job_and_only_a_visible_model(client, alice, bob, tmp_path):
    from models_app.services import optimisation_import

    model = _demo_model()
    package = RunPackage.objects.create(
        optimisation=model,
        owner=alice,
        run_name="CA1_pyr_cACpyr_ballstick3_20261203000000",
        offspring_size=4,
        max_ngen=2,
        file="none.zip",
        size=0,
        sha256="0" * 64,
    )
    job = Job.objects.create(
        owner=alice, backend=Job.Backend.LOCAL, package=package, folder=package.run_name
    )
    folder = tmp_path / "CA1_pyr_cACpyr_private_20200101010101"
    shutil.copytree(DEMO_FOLDER, folder, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    private = optimisation_import(
        source=folder, kind=Optimisation.Source.UPLOAD, owner=alice
    ).optimisation
    client.force_login(bob)

    for url in (f"/catalogue/continue-job/{job.pk}/", f"/catalogue/{private.pk}/continue/"):
        assert client.get(url).status_code == 404
        assert client.post(url, {"max_ngen": "9", "backend": "local"}).status_code == 404
    assert RunPackage.objects.count() == 1

    # The owner's job without stored results: told what to do, no server error.
    client.force_login(alice)
    page = client.get(f"/catalogue/continue-job/{job.pk}/")
    assert page.status_code == 200
    assert "has no stored output.tar.gz: copy its results to storage first" in page.content.decode()
    assert 'id="continue-button"' not in client.get(f"/jobs/{job.pk}/").content.decode()

    # Its results listed but gone from storage: said, no server error.
    ResultFile.objects.create(
        job=job, name="output.tar.gz", storage_name="gone/output.tar.gz", size=1, sha256="0" * 64
    )
    assert 'id="continue-button"' in client.get(f"/jobs/{job.pk}/").content.decode()
    page = client.get(f"/catalogue/continue-job/{job.pk}/")
    assert page.status_code == 200
    assert "cannot be read from storage" in page.content.decode()
