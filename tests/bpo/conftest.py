from pathlib import Path

import pytest

from .builders import write_optimisation


@pytest.fixture
def optimisation_dir(tmp_path: Path) -> Path:
    """A valid optimisation folder with old run leftovers, under tmp_path/source/."""
    return write_optimisation(tmp_path / "source")
