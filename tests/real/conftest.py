"""The real-model tier (`make test-real`): the site's whole way on real HBP optimisations.

`make test-real MODELS=DIR` names a folder of HBP optimisation folders (default
../shared/reference/models, relative to the project root); it reaches the tests as the
environment variable REAL_MODELS. Every test that takes the `real_model` fixture runs once
per model folder found there, with module-scoped fixtures per model so that a module's
expensive work (imports, runs, analyses) is done once. A missing or empty folder stops the
tier with a message: it is never skipped.

`make test` does not collect tests/real/ (pyproject.toml's `--ignore=tests/real`); naming
the folder, as `make test-real` does, collects every file in it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.emulator import TIME_SCALE_VARIABLE

ROOT = Path(__file__).resolve().parents[2]
MODELS_VARIABLE = "REAL_MODELS"
DEFAULT_MODELS = "../shared/reference/models"
CONFIG_FILES = ("features", "parameters", "protocols", "morph")
# How morphology files name each kind of tree: NeuroLucida marks a tree "(Axon)",
# "(Dendrite)" or "(Apical)"; SWC gives a type per point.
_ASC_TREE = re.compile(r"^\s*\((Axon|Dendrite|Apical)\)", re.MULTILINE)
_ASC_KINDS = {"Axon": "axon", "Dendrite": "basal", "Apical": "apical"}
_SWC_KINDS = {"2": "axon", "3": "basal", "4": "apical"}


# A real model's 2 x 2 run takes minutes: NSG's longest runtime_ (48 h) scaled by the
# emulator's usual 0.002 is under 6 minutes, too short on a busy 2-core machine; 0.02 gives
# about an hour. Set at import, before tests/conftest.py starts the shared emulator.
os.environ[TIME_SCALE_VARIABLE] = "0.02"


def models_dir() -> Path:
    """The folder of model folders: REAL_MODELS, relative paths from the project root."""
    path = Path(os.environ.get(MODELS_VARIABLE) or DEFAULT_MODELS).expanduser()
    return path if path.is_absolute() else (ROOT / path).resolve()


def model_folders() -> list[Path]:
    """Every model folder in the MODELS folder, by name; UsageError when there is none."""
    folder = models_dir()
    how = (
        f"(MODELS={os.environ.get(MODELS_VARIABLE) or DEFAULT_MODELS}; `make test-real MODELS=DIR`)"
    )
    if not folder.is_dir():
        raise pytest.UsageError(
            f"The real-model tier needs a folder of HBP optimisation folders, and {folder} "
            f"does not exist {how}."
        )
    if (folder / "config").is_dir():
        raise pytest.UsageError(
            f"{folder} is one optimisation folder: give the folder that holds it {how}."
        )
    found = sorted(
        path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")
    )
    if not found:
        raise pytest.UsageError(f"{folder} holds no optimisation folder {how}.")
    return found


def pytest_configure(config):
    # Checked before anything starts, so that a wrong MODELS fails the tier at once.
    model_folders()


def pytest_generate_tests(metafunc):
    if "real_model" in metafunc.fixturenames:
        folders = model_folders()
        metafunc.parametrize(
            "real_model",
            folders,
            ids=[folder.name for folder in folders],
            indirect=True,
            scope="module",
        )


@dataclass(frozen=True)
class RealModel:
    """One HBP optimisation folder as its files describe it, read here without the site's
    code, so that what the site shows can be compared with it."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @cached_property
    def configs(self) -> dict[str, dict[str, Any]]:
        documents = {}
        for name in CONFIG_FILES:
            path = self.folder / "config" / f"{name}.json"
            documents[name] = json.loads(path.read_text(encoding="utf-8"))
        return documents

    @property
    def key(self) -> str:
        (key,) = self.configs["features"]
        return key

    @property
    def features(self) -> list[tuple[str, str, str, float, float]]:
        """(protocol, location, feature, mean, std) of every feature in features.json."""
        return [
            (protocol, location, feature, mean, std)
            for protocol, locations in self.configs["features"][self.key].items()
            for location, features in locations.items()
            for feature, (mean, std) in features.items()
        ]

    @property
    def optimised(self) -> list[tuple[str, str, float, float]]:
        """(section, name, lower, upper) of every optimised parameter in parameters.json."""
        return [
            (section, entry[0], entry[1], entry[2])
            for section, entries in self.configs["parameters"][self.key]["optimized"].items()
            for entry in entries
        ]

    @property
    def fixed(self) -> list[tuple[str, str, Any]]:
        """(section, name, value) of every fixed parameter in parameters.json."""
        return [
            (section, entry[0], entry[1])
            for section, entries in self.configs["parameters"][self.key]["fixed"].items()
            for entry in entries
        ]

    @property
    def protocols(self) -> list[str]:
        return list(self.configs["protocols"][self.key])

    @property
    def morphology(self) -> Path:
        return self.folder / "morphology" / self.configs["morph"][self.key]

    @property
    def neurite_kinds(self) -> list[str]:
        """The kinds of neurite the morphology file holds, in the order they come."""
        text = self.morphology.read_text(encoding="utf-8", errors="replace")
        if self.morphology.suffix.lower() == ".swc":
            types = [
                line.split()[1] for line in text.splitlines() if line.strip()[:1] not in ("", "#")
            ]
            kinds = [_SWC_KINDS[kind] for kind in types if kind in _SWC_KINDS]
        else:
            kinds = [_ASC_KINDS[kind] for kind in _ASC_TREE.findall(text)]
        return list(dict.fromkeys(kinds))


@pytest.fixture(scope="module")
def real_model(request) -> RealModel:
    """One model folder of MODELS (the tests taking it are parametrized over them)."""
    return RealModel(request.param)


# The browser tests' own fixtures (Playwright driving Debian's Chromium), for the real tier.
from tests.e2e.conftest import browser, login, page  # noqa: E402, F401
