"""The source files shown in the "toggle source code" panel (highlighting is the web's job)."""

from dataclasses import dataclass
from pathlib import Path

from .layout import (
    ENTRY_SCRIPT,
    INIT_SCRIPT,
    MECHANISM_SUFFIX,
    MECHANISMS_DIR,
    MODEL_DIR,
    is_never_copied,
)

# Larger files are cut here (and marked): the panel is for reading, not for downloading.
MAX_SOURCE_BYTES = 512 * 1024


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the optimisation folder, "/"-separated
    text: str
    language: str  # "python" or "nmodl"
    truncated: bool = False


def source_files(root: Path) -> list[SourceFile]:
    """init.py, opt_neuron.py, model/*.py and mechanisms/*.mod of ``root``, those that exist.

    In that order, each group sorted by name. Bytes that are not UTF-8 (legacy comments)
    show as replacement characters.
    """
    root = Path(root)
    groups = [
        ([root / INIT_SCRIPT, root / ENTRY_SCRIPT], "python"),
        (_sorted_files(root / MODEL_DIR, ".py"), "python"),
        (_sorted_files(root / MECHANISMS_DIR, MECHANISM_SUFFIX), "nmodl"),
    ]
    return [
        _read(root, path, language)
        for paths, language in groups
        for path in paths
        if path.is_file() and not is_never_copied(path)
    ]


def _sorted_files(folder: Path, suffix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    paths = [path for path in folder.iterdir() if path.suffix == suffix]
    return sorted(paths, key=lambda path: (path.name.casefold(), path.name))


def _read(root: Path, path: Path, language: str) -> SourceFile:
    with open(path, "rb") as stream:
        data = stream.read(MAX_SOURCE_BYTES + 1)
    truncated = len(data) > MAX_SOURCE_BYTES
    # A cut may split a UTF-8 character; "replace" shows it as one replacement character.
    text = data[:MAX_SOURCE_BYTES].decode("utf-8", errors="replace")
    return SourceFile(
        path=path.relative_to(root).as_posix(), text=text, language=language, truncated=truncated
    )
