"""The catalogue metadata that sits beside each optimisation as ``<NAME>_meta.json``.

Parsing is tolerant: a missing or oddly typed field becomes empty (or None for numbers)
rather than failing, since the metadata only describes a model; it never runs.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import BpoError
from .numeric import parse_whole_number

# Keys of the JSON file whose names are not valid Python identifiers.
_JSON_NAMES = {"e_type": "e-type"}


class InvalidMetadata(BpoError):
    """The metadata file is not a JSON object."""

    summary = "The catalogue metadata cannot be read"


@dataclass(frozen=True)
class CatalogueMetadata:
    """What the HBP catalogue says about one optimisation."""

    brain_structure: str = ""
    cell_soma_location: str = ""
    cell_type: str = ""  # "pyramidal" or "interneuron"
    e_type: str = ""  # e.g. cACpyr, bAC, cAC, cNAC
    fitting_name: str = ""
    channels: tuple[str, ...] = ()
    mod_repo: str = ""
    mod_tag: str = ""
    mod_path: str = ""
    morphology: str = ""
    max_ngen: int | None = None
    offspring_size: int | None = None
    best_run: str = ""  # checkpoint file name of the best seed, e.g. seed4.pkl
    best_cell: str = ""  # hoc file of the best cell
    description: str = ""
    contributors: str = ""
    affiliations: str = ""
    species: str = ""
    # Fields this version does not know, kept so that nothing is lost.
    extra: Mapping[str, Any] = field(default_factory=dict)


def metadata_file_name(name: str) -> str:
    """The metadata file name for the optimisation ``name``."""
    return f"{name}_meta.json"


def parse_metadata(source: Mapping[str, Any] | str | bytes) -> CatalogueMetadata:
    """Metadata from the JSON text (or already-parsed object) of a ``_meta.json`` file."""
    if isinstance(source, str | bytes):
        try:
            document = json.loads(source)
        except (ValueError, RecursionError) as error:
            # ValueError covers bad JSON, bad UTF-8 and integers too long for Python to
            # read; RecursionError, brackets nested too deeply.
            reason = "brackets nested too deeply" if isinstance(error, RecursionError) else error
            raise InvalidMetadata([f"It is not valid JSON ({reason})."]) from None
    else:
        document = source
    if not isinstance(document, Mapping):
        raise InvalidMetadata(["It must hold a JSON object {...}."])

    values: dict[str, Any] = {}
    known: set[str] = set()
    for spec in fields(CatalogueMetadata):
        if spec.name == "extra":
            continue
        json_name = _JSON_NAMES.get(spec.name, spec.name)
        known.add(json_name)
        if json_name not in document:
            continue
        raw = document[json_name]
        if spec.name == "channels":
            values["channels"] = _channels(raw)
        elif spec.name in ("max_ngen", "offspring_size"):
            values[spec.name] = _whole_number(raw)
        else:
            values[spec.name] = _text(raw)
    extra = {name: value for name, value in document.items() if name not in known}
    return CatalogueMetadata(**values, extra=extra)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _whole_number(value: object) -> int | None:
    try:
        return parse_whole_number(value)
    except ValueError:
        return None


def _channels(value: object) -> tuple[str, ...]:
    """Channel names from "kdr, nax,  kmb" (the catalogue's form) or from a list."""
    if isinstance(value, str):
        items: list[object] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        return ()
    names = (item.strip() for item in items if isinstance(item, str))
    return tuple(name for name in names if name)
