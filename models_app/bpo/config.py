"""Reading the four ``config/*.json`` files of an optimisation, reporting every problem.

Each file is a JSON object with exactly one top-level key, the optimisation key, which is
the same in all four and the one opt_neuron.py passes to ``evaluator.create``.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import CONFIG_DIR, CONFIG_FILES, config_path
from .wording import json_type

# Real config files are a few kilobytes; anything far larger is not one and is not read.
MAX_CONFIG_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class ConfigFile:
    """One config file as read: its document (None when unreadable) and its problems."""

    kind: str
    document: dict[str, Any] | None
    problems: tuple[str, ...]

    @property
    def label(self) -> str:
        return config_label(self.kind)

    @property
    def key(self) -> str | None:
        """The single top-level key; None when the file is unreadable or has not exactly one."""
        if self.document is not None and len(self.document) == 1:
            return next(iter(self.document))
        return None

    @property
    def content(self) -> Any:
        """The value under the key (None when there is no single key)."""
        key = self.key
        return None if key is None or self.document is None else self.document[key]


def config_label(kind: str) -> str:
    """How messages name a config file: "config/features.json"."""
    return f"{CONFIG_DIR}/{CONFIG_FILES[kind]}"


def read_config(root: Path, kind: str) -> ConfigFile:
    """Read ``config/<kind>.json`` under ``root``; problems are sentences naming the file."""
    document, problems = _read_document(config_path(root, kind), config_label(kind))
    return ConfigFile(kind=kind, document=document, problems=tuple(problems))


def parse_config_text(data: bytes, *, label: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse a config file's bytes; returns the document (or None) and the problems found."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [f"{label} is not UTF-8 text (unreadable byte at position {error.start})."]
    repeated: list[str] = []

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # JSON silently keeps the last of two equal keys; say so instead.
        seen: dict[str, Any] = {}
        for name, value in pairs:
            if name in seen:
                repeated.append(name)
            seen[name] = value
        return seen

    try:
        document = json.loads(text, object_pairs_hook=keep_pairs)
    except json.JSONDecodeError as error:
        return None, [
            f"{label} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ]
    except ValueError as error:
        # Python refuses to read an integer of more than 4,300 digits (a guard against
        # quadratic-time parsing); no parameter bound or feature needs one.
        return None, [f"{label} holds a number too long to read ({error})."]
    except RecursionError:
        return None, [f"{label} nests its brackets too deeply to be read."]
    problems = [
        f"{label} repeats the key '{name}'; only its last value would be used."
        for name in dict.fromkeys(repeated)
    ]
    if not isinstance(document, dict):
        problems.append(
            f"{label} must hold a JSON object {{...}} whose one key is the optimisation key; "
            f"it holds {json_type(document)}."
        )
        return None, problems
    if not document:
        problems.append(f"{label} is empty; it must have one key, the optimisation key.")
    elif len(document) > 1:
        names = ", ".join(f"'{name}'" for name in document)
        problems.append(
            f"{label} must have exactly one top-level key, the optimisation key; "
            f"it has {len(document)}: {names}."
        )
    return document, problems


def _read_document(path: Path, label: str) -> tuple[dict[str, Any] | None, list[str]]:
    if not path.is_file():
        return None, [f"{label} is missing."]
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        return None, [
            f"{label} is {size // (1024 * 1024)} MB; a configuration file is a few kilobytes."
        ]
    return parse_config_text(path.read_bytes(), label=label)
