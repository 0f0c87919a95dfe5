"""Import checks what a run needs, on every real HBP model of the tier's MODELS folder.

Each model folder passes every check; a copy missing all but 2 of its .mod files (as a
real catalogue download once did) is refused by the upload page and by
`manage.py import_model` with the mechanisms it lacks, and nothing is stored.
"""

from __future__ import annotations

import re
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

KEPT_MOD_FILES = 2
_DEFINES = re.compile(r"^\s*(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(\w+)", re.MULTILINE)

pytestmark = pytest.mark.slow


@pytest.fixture
def incomplete_copy(real_model, tmp_path) -> tuple[Path, str]:
    """A copy without all but 2 .mod files, and the message its import must give: the
    mechanisms parameters.json names that the removed files defined, in the order first met,
    with the section lists naming them."""
    copy = tmp_path / real_model.name
    shutil.copytree(real_model.folder, copy, ignore=shutil.ignore_patterns("x86_64"))
    copy.chmod(0o755)
    for path in copy.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the models folder may be read-only
    removed: set[str] = set()
    for mod in sorted((copy / "mechanisms").glob("*.mod"))[KEPT_MOD_FILES:]:
        removed.update(_DEFINES.findall(mod.read_text(errors="replace")))
        mod.unlink()
    names: dict[str, None] = {}
    sections: dict[str, None] = {}
    mechanisms = real_model.configs["parameters"][real_model.key]["mechanisms"]
    for section, section_names in mechanisms.items():
        for name in section_names:
            if name in removed:
                names[name] = None
                sections[section] = None
    assert names, "the removed .mod files define nothing the model uses"
    message = (
        f"parameters.json uses mechanisms that no .mod file defines: {', '.join(names)} "
        f"(in {', '.join(sections)})"
    )
    return copy, message


def _stored() -> list[str]:
    if not default_storage.exists("catalogue"):
        return []
    folders, files = default_storage.listdir("catalogue")
    return sorted(folders + files)


def test_the_real_model_passes_every_check(real_model):
    assert validate_optimisation(real_model.folder, with_neuron=True) == []


@pytest.mark.django_db
def test_the_incomplete_copy_is_refused_by_the_upload_page_and_nothing_is_stored(
    incomplete_copy, client, alice
):
    folder, message = incomplete_copy
    client.force_login(alice)
    stored_before = _stored()

    response = client.post(
        "/catalogue/upload/",
        {
            "archive": SimpleUploadedFile(
                f"{folder.name}.zip", zip_folder(folder, top=folder.name), "application/zip"
            )
        },
    )

    assert response.status_code == 400
    errors = response.content.decode().split('id="upload-errors"', 1)[1].split("</div>", 1)[0]
    assert message in errors
    assert not Optimisation.objects.exists()
    assert _stored() == stored_before


@pytest.mark.django_db
def test_the_incomplete_copy_is_refused_by_import_model_and_nothing_is_stored(incomplete_copy):
    folder, message = incomplete_copy
    stored_before = _stored()

    with pytest.raises(CommandError) as caught:
        call_command("import_model", str(folder))

    assert str(caught.value) == f"The optimisation was not imported:\n- {message}"
    assert not Optimisation.objects.exists()
    assert _stored() == stored_before
