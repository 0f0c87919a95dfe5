"""Continue a real HBP optimisation from its own published checkpoint.

The reference checkpoint holds generation 2 of an offspring-size-10 run; continuing it by
one generation evaluates its 10 parents again and then 10 offspring, 20 evaluations of
10-25 s each, several minutes on a shared 2-core machine: too slow for every CI run. So this
checks that the package is built for continuing (the model's own --resume flag, the
checkpoint inside, the generation and offspring size read from it), that a generation count
at or below the checkpoint's is refused, and that the continued run starts in the sandbox,
resumes (re-evaluating the parents) and writes progress; then it is cancelled.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from models_app.models import Optimisation, RunPackage
from nsg_app.local import RunStatus, read_progress, run_package
from tests.real.conftest import RealModel

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

CHECKPOINT = "checkpoints/checkpoint.pkl"
RUN_SECONDS = 1800  # generous: the machine is shared; cancelled long before


def _entry(archive: zipfile.ZipFile, name: str) -> bytes:
    (member,) = [entry for entry in archive.namelist() if entry.split("/", 1)[1] == name]
    return archive.read(member)


def _published_checkpoint(real_model: RealModel) -> Path:
    (found,) = sorted((real_model.folder / "checkpoints").glob("*.pkl"))
    return found


def test_the_published_checkpoint_is_continued_by_a_package_that_resumes_it(
    real_model, client, alice, tmp_path, settings
):
    model = _import(real_model)
    client.force_login(alice)
    checkpoint = _published_checkpoint(real_model)

    page = client.get(f"/catalogue/{model.pk}/continue/").content.decode()
    generation = _shown(page, "stored-generation")
    offspring = _shown(page, "offspring-size")
    assert "opt_neuron.py --resume" in page

    refused = client.post(
        f"/catalogue/{model.pk}/continue/", {"max_ngen": str(generation), "backend": "local"}
    )
    assert refused.status_code == 400
    assert f"must be more than {generation}" in refused.content.decode()
    with pytest.raises(CommandError, match=f"must be more than {generation}"):
        call_command(
            "build_package",
            model.name,
            "--continue",
            str(real_model.folder),
            "--generations",
            str(generation),
            "-o",
            str(tmp_path / "refused.zip"),
        )
    assert not (tmp_path / "refused.zip").exists()

    response = client.post(
        f"/catalogue/{model.pk}/continue/", {"max_ngen": str(generation + 1), "backend": "local"}
    )
    package = RunPackage.objects.get(owner=alice)
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/run-here/{package.pk}/"
    assert package.offspring_size == offspring and package.max_ngen == generation + 1
    assert package.continued_from["checkpoint"] == checkpoint.name
    zip_path = tmp_path / "continued.zip"
    with default_storage.open(package.file, "rb") as stored:
        zip_path.write_bytes(stored.read())
    with zipfile.ZipFile(zip_path) as archive:
        assert _entry(archive, CHECKPOINT) == checkpoint.read_bytes()
        init = _entry(archive, "init.py").decode()
        manifest = json.loads(_entry(archive, "rebuild_manifest.json"))
    for argument in (
        f"--max_ngen={generation + 1}",
        f"--offspring_size={offspring}",
        "--resume",
        "./checkpoints/checkpoint.pkl",
    ):
        assert f'"{argument}"' in init
    assert manifest["continued_from"]["generation"] == generation
    assert manifest["source"]["key"] == real_model.key

    def evaluating() -> bool:
        progress = read_progress(tmp_path / "run" / "progress.json")
        return progress is not None and progress.evaluations_done >= 1

    result = run_package(
        zip_path,
        tmp_path / "run",
        cores=2,
        runtime_seconds=RUN_SECONDS,
        mechanisms_cache=settings.MECHANISMS_CACHE_DIR,
        progress_file=tmp_path / "run" / "progress.json",
        cancel_check=evaluating,
    )

    assert result.status is RunStatus.CANCELLED, result.stderr_tail
    progress = read_progress(tmp_path / "run" / "progress.json")
    assert progress.max_ngen == generation + 1 and progress.offspring_size == offspring
    assert progress.evaluations_done >= 1
    # A new optimisation knows its evaluations from the start; a resumed one only at its
    # first new generation, after the parents: it resumed, and was re-evaluating them.
    assert progress.evaluations_expected is None and progress.generation == 0
    print(
        f"\n{real_model.name}: {progress.evaluations_done} evaluation(s) on 2 cores in "
        f"{progress.evaluation_seconds:.1f} s of evaluating"
    )


def _import(real_model: RealModel) -> Optimisation:
    printed = io.StringIO()
    call_command("import_model", str(real_model.folder), stdout=printed)
    return Optimisation.objects.get(name=real_model.name, owner=None)


def _shown(page: str, element_id: str) -> int:
    start = page.index(f'id="{element_id}">') + len(f'id="{element_id}">')
    return int(page[start : page.index("<", start)])
