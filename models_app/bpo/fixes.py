"""Known fixes that let legacy models run on current BluePyOpt.

Fixes change only the copy that runs (a run package, an extracted result), never the
catalogue's original, and every fix applied is reported so the user knows what changed.
To add a fix, write a function ``text -> new text | None`` (None when it does not apply)
and list a ``Fix`` for it in ``KNOWN_FIXES``.
"""

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .layout import is_never_copied


@dataclass(frozen=True)
class Fix:
    """One known fix: which files it looks at and how it rewrites their text."""

    id: str
    files: str  # a glob relative to the optimisation folder, e.g. "model/*.py"
    description: str
    apply: Callable[[str], str | None]

    def applies_to(self, relative_path: str) -> bool:
        """True when the "/"-separated ``relative_path`` matches ``files``, part by part."""
        path_parts = relative_path.split("/")
        pattern_parts = self.files.split("/")
        return len(path_parts) == len(pattern_parts) and all(
            fnmatchcase(part, pattern)
            for part, pattern in zip(path_parts, pattern_parts, strict=True)
        )


@dataclass(frozen=True)
class AppliedFix:
    """A fix that changed a file (path relative to the optimisation folder)."""

    id: str
    file: str
    description: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "file": self.file, "description": self.description}


# `def replace_axon(<parameters>):`, one parameter list without nested parentheses, possibly
# over several lines, with an optional return annotation.
_REPLACE_AXON = re.compile(
    r"(?P<head>\bdef\s+replace_axon\s*\()(?P<parameters>[^()]*)(?P<tail>\)\s*(?:->[^:\n]+)?:)"
)


def accept_replace_axon_kwargs(text: str) -> str | None:
    """Let ``replace_axon`` accept keyword arguments it does not know.

    Current BluePyOpt calls ``replace_axon(sim=..., icell=..., axon_stub_length=...,
    axon_nseg_frequency=...)``; the 2018-2023 models define
    ``replace_axon(sim=None, icell=None)``, which raises TypeError.
    """

    def widen(match: re.Match[str]) -> str:
        parameters = match["parameters"]
        if "**" in parameters or "#" in parameters:
            # Already accepts keywords, or a comment we would rather not edit around.
            return match[0]
        kept = parameters.rstrip()
        trailing = parameters[len(kept) :]
        if not kept.strip():
            widened = "**kwargs"
        elif kept.endswith(","):
            widened = f"{kept} **kwargs"
        else:
            widened = f"{kept}, **kwargs"
        return f"{match['head']}{widened}{trailing}{match['tail']}"

    fixed = _REPLACE_AXON.sub(widen, text)
    return fixed if fixed != text else None


REPLACE_AXON_KWARGS = Fix(
    id="replace-axon-kwargs",
    files="model/*.py",
    description=(
        "replace_axon() now also accepts **kwargs: current BluePyOpt passes "
        "axon_stub_length and axon_nseg_frequency, which the legacy signature "
        "replace_axon(sim=None, icell=None) rejects with a TypeError. The model's own "
        "axon replacement is unchanged."
    ),
    apply=accept_replace_axon_kwargs,
)

KNOWN_FIXES: tuple[Fix, ...] = (REPLACE_AXON_KWARGS,)


def fix_text(
    relative_path: str, text: str, *, fixes: Iterable[Fix] = KNOWN_FIXES
) -> tuple[str, list[AppliedFix]]:
    """``text`` of the file at ``relative_path`` with every matching fix applied, in order."""
    applied = []
    for fix in fixes:
        if not fix.applies_to(relative_path):
            continue
        fixed = fix.apply(text)
        if fixed is not None and fixed != text:
            text = fixed
            applied.append(AppliedFix(fix.id, relative_path, fix.description))
    return text, applied


def fix_bytes(
    relative_path: str, data: bytes, *, fixes: Iterable[Fix] = KNOWN_FIXES
) -> tuple[bytes, list[AppliedFix]]:
    """Like ``fix_text`` for a file's bytes; bytes that are not UTF-8 text are left alone."""
    fixes = tuple(fixes)
    if not any(fix.applies_to(relative_path) for fix in fixes):
        return data, []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, []
    fixed, applied = fix_text(relative_path, text, fixes=fixes)
    return (fixed.encode("utf-8") if applied else data), applied


def apply_known_fixes(folder: Path, *, fixes: Iterable[Fix] = KNOWN_FIXES) -> list[AppliedFix]:
    """Apply the fixes in place to the files of ``folder`` (an extracted copy, never an original).

    Files that are not UTF-8 text are left alone. Each changed file is replaced atomically.
    """
    folder = Path(folder)
    fixes = tuple(fixes)
    applied: list[AppliedFix] = []
    for relative_path in _candidate_files(folder, fixes):
        path = folder.joinpath(*relative_path.split("/"))
        fixed, changes = fix_bytes(relative_path, path.read_bytes(), fixes=fixes)
        if changes:
            _replace_file(path, fixed)
            applied += changes
    return applied


def _candidate_files(folder: Path, fixes: tuple[Fix, ...]) -> list[str]:
    candidates = set()
    for fix in fixes:
        for path in folder.glob(fix.files):
            relative = path.relative_to(folder)
            enclosing = [folder / parent for parent in relative.parents if parent != Path(".")]
            if path.is_file() and not any(is_never_copied(p) for p in [path, *enclosing]):
                candidates.add(relative.as_posix())
    return sorted(candidates)


def _replace_file(path: Path, data: bytes) -> None:
    mode = path.stat().st_mode & 0o777
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as output:
            output.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
