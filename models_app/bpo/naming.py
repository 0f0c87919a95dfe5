"""Optimisation names: ``<region>_<pyr|int>_<e-type>_<morphology>_<YYYYmmddHHMMSS>``.

Examples: ``CA1_pyr_cACpyr_oh140807_A0_idJ_20170915113621`` (the morphology may hold
underscores: ``mpg141017_a1-2_idC``) and HHNB's ``W_20230711100058``, which has only a
date-time. A new run of an optimisation keeps everything up to the last ``_`` and puts the
current date-time after it.
"""

import re
from dataclasses import dataclass
from datetime import datetime

TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"

_CELL_TYPES = {"pyr": "pyramidal", "int": "interneuron"}
_TRAILING_TIMESTAMP = re.compile(r"(?P<stem>.*)_(?P<stamp>\d{14})")
_CATALOGUE_STEM = re.compile(
    r"(?P<region>[^_]+)_(?P<cell_class>pyr|int)_(?P<e_type>[^_]+)_(?P<morphology>.+)"
)
# A name becomes a folder name in archives and storage paths: keep it to safe characters.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_FOLDER_NAME = 150


@dataclass(frozen=True)
class OptimisationName:
    """The parts of an optimisation name; None where the name does not say."""

    name: str
    region: str | None = None
    cell_class: str | None = None  # "pyr" or "int"
    e_type: str | None = None
    morphology: str | None = None
    created: datetime | None = None

    @property
    def cell_type(self) -> str | None:
        """ "pyramidal" or "interneuron", as the catalogue metadata says it."""
        return _CELL_TYPES.get(self.cell_class or "")


def parse_name(name: str) -> OptimisationName:
    """Split ``name`` into its parts; never fails, unknown parts are None."""
    stem, created = _split_timestamp(name)
    match = _CATALOGUE_STEM.fullmatch(stem)
    if match is None:
        return OptimisationName(name=name, created=created)
    return OptimisationName(
        name=name,
        region=match["region"],
        cell_class=match["cell_class"],
        e_type=match["e_type"],
        morphology=match["morphology"],
        created=created,
    )


def new_run_name(name: str, now: datetime) -> str:
    """The name of a new run of ``name``: its trailing date-time replaced by ``now``'s.

    A name without a trailing date-time gets ``_<now>`` appended.
    """
    if not name:
        raise ValueError("An optimisation name cannot be empty")
    stem, _ = _split_timestamp(name)
    return f"{stem}_{now.strftime(TIMESTAMP_FORMAT)}"


def folder_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run folder, or None when it can."""
    if not name:
        return "The run name cannot be empty."
    if len(name) > _MAX_FOLDER_NAME:
        return f"The run name is longer than {_MAX_FOLDER_NAME} characters."
    if not _FOLDER_NAME.fullmatch(name):
        return (
            "The run name may hold only letters, digits, '_', '-' and '.', "
            "and must start with a letter or digit."
        )
    return None


def _split_timestamp(name: str) -> tuple[str, datetime | None]:
    """``name`` without its trailing ``_YYYYmmddHHMMSS``, and that date-time (if it is one)."""
    match = _TRAILING_TIMESTAMP.fullmatch(name)
    if match is None:
        return name, None
    try:
        created = datetime.strptime(match["stamp"], TIMESTAMP_FORMAT)
    except ValueError:  # fourteen digits that are not a date-time
        return name, None
    return match["stem"], created
