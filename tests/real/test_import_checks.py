"""Import checks what a run needs, on the real HBP model W_20230711100058.

The reference folder passes every check; a copy missing 10 of its 12 .mod files (as a
real catalogue download once did) is refused by the upload page and by
`manage.py import_model` with the mechanisms it lacks, and nothing is stored.

The models folder comes from the MODELS environment variable (REAL_MODELS, as
`make test-real` passes it, is read too), default ../shared/reference/models beside the
project. A missing folder fails these tests: they are never skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from models_app.bpo.optimisation import validate_optimisation
from models_app.models import Optimisation
from tests.catalogue.conftest import zip_folder

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = "W_20230711100058"
# The two .mod files the incomplete copy keeps: they define cacum and cagk.
KEPT_MOD_FILES = {"cacumm.mod", "cagk.mod"}
# parameters.json's "mechanisms", in its order: all [pas kdr nax], axonal [kmb kap],
# somatic [kmb kap hd can cal cat kca cagk cacum], alldend [kad hd can cal cat kca cagk
# cacum]; pas is built into NEURON.
MISSING_MECHANISMS = (
    "parameters.json uses mechanisms that no .mod file defines: kdr, nax, kmb, kap, hd, can, "
    "cal, cat, kca, kad (in all, axonal, somatic, alldend)"
)

pytestmark = pytest.mark.slow


def _models_dir() -> Path:
    named = os.environ.get("MODELS") or os.environ.get("REAL_MODELS")
    path = Path(named).expanduser() if named else ROOT.parent / "shared" / "reference" / "models"
    return path if path.is_absolute() else (ROOT / path).resolve()


@pytest.fixture(scope="module")
def reference() -> Path:
    folder = _models_dir() / REFERENCE
    if not (folder / "config" / "parameters.json").is_file():
        pytest.fail(
            f"The real model {REFERENCE} is not in {_models_dir()}; set MODELS to the folder "
            "of HBP optimisation folders."
        )
    return folder


@pytest.fixture
def incomplete_copy(reference, tmp_path) -> Path:
    copy = tmp_path / REFERENCE
    shutil.copytree(reference, copy)
    copy.chmod(0o755)
    for path in copy.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the reference is read-only
    removed = [mod for mod in (copy / "mechanisms").glob("*.mod") if mod.name not in KEPT_MOD_FILES]
    for mod in removed:
        mod.unlink()
    assert len(removed) == 10
    return copy


def _stored() -> list[str]:
    if not default_storage.exists("catalogue"):
        return []
    folders, files = default_storage.listdir("catalogue")
    return sorted(folders + files)


def test_the_reference_model_passes_every_check(reference):
    assert validate_optimisation(reference, with_neuron=True) == []


@pytest.mark.django_db
def test_the_incomplete_copy_is_refused_by_the_upload_page_and_nothing_is_stored(
    incomplete_copy, client, alice
):
    client.force_login(alice)
    stored_before = _stored()

    response = client.post(
        "/catalogue/upload/",
        {
            "archive": SimpleUploadedFile(
                f"{REFERENCE}.zip", zip_folder(incomplete_copy, top=REFERENCE), "application/zip"
            )
        },
    )

    assert response.status_code == 400
    errors = response.content.decode().split('id="upload-errors"', 1)[1].split("</div>", 1)[0]
    assert MISSING_MECHANISMS in errors
    assert not Optimisation.objects.exists()
    assert _stored() == stored_before


@pytest.mark.django_db
def test_the_incomplete_copy_is_refused_by_import_model_and_nothing_is_stored(incomplete_copy):
    stored_before = _stored()

    with pytest.raises(CommandError) as caught:
        call_command("import_model", str(incomplete_copy))

    assert str(caught.value) == (f"The optimisation was not imported:\n- {MISSING_MECHANISMS}")
    assert not Optimisation.objects.exists()
    assert _stored() == stored_before
