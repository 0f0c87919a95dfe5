import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.demo import DEMO_FOLDER, DEMO_META


@pytest.fixture
def demo_model(db):
    # Imported here: conftests load before Django is set up.
    from models_app.models import Optimisation
    from models_app.services import optimisation_import

    return optimisation_import(
        source=DEMO_FOLDER, kind=Optimisation.Source.DEMO, published=True
    ).optimisation


@pytest.fixture
def demo_copy(tmp_path):
    """A copy of the demo folder under another name, to import as a new model."""

    def copy(name: str = "CA1_int_bAC_demo2_20200101010101") -> Path:
        target = tmp_path / name
        shutil.copytree(DEMO_FOLDER, target, ignore=shutil.ignore_patterns("__pycache__"))
        return target

    return copy


def zip_folder(folder: Path, *, top: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            relative = path.relative_to(folder).as_posix()
            archive.write(path, f"{top}/{relative}" if top else relative)
    return buffer.getvalue()


def demo_meta() -> dict:
    return json.loads(DEMO_META.read_text())
