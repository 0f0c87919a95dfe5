"""Unpack an uploaded job zip safely, and pack a finished job's folder as NSG does.

The zip comes from a user: refuse absolute paths, `..`, links and special files, cap its
unpacked size and member count, and require exactly one top folder (NSG unpacks the
upload and changes into that folder, docs/nsg-protocol.md §7).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from models_app.bpo.untrusted import regular_files_only

MAX_UNPACKED_BYTES = 4 * 1024**3
MAX_MEMBERS = 100_000
# Folders some zip tools add beside the real content; NSG users send them by accident.
IGNORED_TOP_ENTRIES = {"__MACOSX"}


class ArchiveError(Exception):
    """The upload cannot be staged; the message says why, for the job's messages."""


def extract_single_folder_zip(
    zip_path: Path,
    destination: Path,
    *,
    max_bytes: int = MAX_UNPACKED_BYTES,
    max_members: int = MAX_MEMBERS,
) -> str:
    """Unpack `zip_path` into `destination` (which must exist); return the top folder's name."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = _checked_members(archive, max_bytes, max_members)
            top = _single_top_folder(members)
            for info, parts in members:
                _extract_member(archive, info, destination.joinpath(*parts))
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"The input file is not a valid zip archive ({exc}).") from exc
    except (OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise ArchiveError(f"The input zip could not be unpacked ({exc}).") from exc
    return top


def _checked_members(
    archive: zipfile.ZipFile, max_bytes: int, max_members: int
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    infos = archive.infolist()
    if len(infos) > max_members:
        raise ArchiveError(f"The input zip has more than {max_members} entries.")
    members = []
    total = 0
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        if (
            not name
            or "\\" in name
            or "\0" in name
            or path.is_absolute()
            or ".." in path.parts
            or ":" in path.parts[0]
        ):
            raise ArchiveError(f"The input zip holds an unsafe path: {name!r}.")
        if not path.parts or path.parts[0] in IGNORED_TOP_ENTRIES:
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveError(f"The input zip holds a link, which is not allowed: {name!r}.")
        if stat.S_IFMT(mode) not in {0, stat.S_IFREG, stat.S_IFDIR}:
            raise ArchiveError(f"The input zip holds a special file: {name!r}.")
        total += info.file_size
        if total > max_bytes:
            raise ArchiveError(f"The input zip unpacks to more than {max_bytes} bytes.")
        members.append((info, path.parts))
    return members


def _single_top_folder(members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]]) -> str:
    tops = sorted({parts[0] for _, parts in members})
    if len(tops) != 1:
        found = ", ".join(tops[:5]) or "nothing"
        raise ArchiveError(
            f"The input zip must hold exactly one top-level folder; found {len(tops)}: {found}."
        )
    for info, parts in members:
        if len(parts) == 1 and not info.is_dir():
            raise ArchiveError(
                f"The input zip must hold one top-level folder, not the file {parts[0]!r}."
            )
    return tops[0]


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    executable = (info.external_attr >> 16) & 0o111
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(target, flags, 0o755 if executable else 0o644)
    except FileExistsError as exc:
        raise ArchiveError(f"The input zip holds {info.filename!r} twice.") from exc
    with os.fdopen(descriptor, "wb") as out, archive.open(info) as source:
        shutil.copyfileobj(source, out, 1 << 20)


def write_output_tarball(folder: Path, tarball: Path) -> None:
    """Pack `folder` as NSG's output.tar.gz: every member named `./...`."""
    with tarfile.open(tarball, "w:gz") as tar:
        # The job's code wrote in the folder: its links and pipes stay out.
        tar.add(folder, arcname=".", recursive=True, filter=regular_files_only)
