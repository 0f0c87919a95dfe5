"""Safe extraction of untrusted zip and tar archives.

Uploaded optimisation zips and NSG's ``output.tar.gz`` come from outside. Before anything
is written, the whole listing is checked and every problem is reported at once: paths that
would land outside the destination (absolute, ``..``, drive letters, backslashes), links,
devices, duplicate names, undecodable names, encrypted or unsupported entries, and too many
entries or bytes. While extracting, the bytes actually written are counted, because the
sizes an archive declares can lie (zip bombs).

Nothing half-written is left: the archive is unpacked into a fresh hidden folder beside the
destination, which is renamed into place only when everything succeeded.
"""

import contextlib
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from .errors import BpoError

MB = 1024 * 1024
GB = 1024 * MB

# Read and write in slices this big, so a member's size is checked as it grows.
_CHUNK = 1 * MB
# A file name part longer than this is refused by common file systems anyway.
_MAX_NAME_PART_BYTES = 255
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_ZIP_ENCRYPTED_FLAG = 0x1
_ZIP_METHODS = {
    zipfile.ZIP_STORED,
    zipfile.ZIP_DEFLATED,
    zipfile.ZIP_BZIP2,
    zipfile.ZIP_LZMA,
}
# Errors raised while reading a damaged archive, by the archive modules or the decompressors.
_READ_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,  # gzip.BadGzipFile and truncated streams
    ValueError,
    NotImplementedError,
)


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may unpack to. Exceeding any limit refuses the whole archive."""

    max_members: int = 5_000
    max_total_bytes: int = 500 * MB
    max_member_bytes: int = 250 * MB

    def __post_init__(self) -> None:
        for name in ("max_members", "max_total_bytes", "max_member_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ArchiveLimits.{name} must be a positive whole number")


# An optimisation folder is a few megabytes: configs, a morphology, mechanisms, code, and
# at most some checkpoints and figures.
ZIP_LIMITS = ArchiveLimits()
# NSG's output.tar.gz holds the whole run folder after the run (checkpoints, figures,
# traces, compiled mechanisms, ipyparallel logs) plus the uploaded zip itself.
TAR_LIMITS = ArchiveLimits(max_members=20_000, max_total_bytes=20 * GB, max_member_bytes=5 * GB)


class ArchiveError(BpoError):
    """The archive cannot be extracted; ``problems`` says why."""

    summary = "The archive cannot be extracted"


class UnsafeArchive(ArchiveError):
    """The archive holds entries that must not be written (or too much data)."""

    summary = "The archive was refused because it is unsafe to extract"


class CorruptArchive(ArchiveError):
    """The archive is damaged, not an archive of the expected kind, or unreadable."""

    summary = "The archive is damaged or not a valid archive"


@dataclass(frozen=True)
class ExtractedArchive:
    """What an extraction wrote. ``skipped_links`` lists links left out (``skip_links=True``)."""

    path: Path
    files: int
    bytes_written: int
    skipped_links: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Member:
    name: str  # normalised: relative, "/"-separated, no "." or ".." parts
    kind: Literal["file", "dir"]
    declared_size: int
    executable: bool
    entry: object  # the ZipInfo or TarInfo to read the data from


Source = str | os.PathLike[str] | BinaryIO


def extract_zip(
    source: Source, dest: str | os.PathLike[str], *, limits: ArchiveLimits = ZIP_LIMITS
) -> ExtractedArchive:
    """Extract the zip ``source`` (a path or a seekable binary file) into the new folder ``dest``.

    ``dest`` must not exist yet; its parent is created when missing. Raises
    ``UnsafeArchive`` or ``CorruptArchive`` (both ``ArchiveError``) listing every problem, and
    then leaves nothing behind.
    """
    dest = _check_destination(dest)
    with _opened(source) as stream:
        try:
            archive = zipfile.ZipFile(stream)
        except UnicodeDecodeError:
            # zipfile decodes every name on opening: one bad name makes all unreadable.
            raise UnsafeArchive(
                ["The archive has file names that are not valid UTF-8 text."]
            ) from None
        except _READ_ERRORS as error:
            raise CorruptArchive(
                [f"It is not a readable zip archive ({_reason(error)})."]
            ) from None
        with archive:
            members = _checked(_zip_members(archive, limits), limits)
            return _extract(members, dest, limits, lambda member: archive.open(member.entry))


def extract_tar(
    source: Source,
    dest: str | os.PathLike[str],
    *,
    limits: ArchiveLimits = TAR_LIMITS,
    skip_links: bool = False,
) -> ExtractedArchive:
    """Extract the tar ``source`` (plain, gzip, bzip2 or xz) into the new folder ``dest``.

    Same guarantees as ``extract_zip``. Symbolic and hard links are refused unless
    ``skip_links`` is true: then they are left out and listed in the result, for run outputs
    whose compiled-mechanism folders may hold library links nobody needs.
    """
    dest = _check_destination(dest)
    with _opened(source) as stream:
        try:
            archive = tarfile.open(fileobj=stream, mode="r:*")
        except _READ_ERRORS as error:
            raise CorruptArchive(
                [f"It is not a readable tar archive ({_reason(error)})."]
            ) from None
        with archive:
            members, skipped = _tar_members(archive, limits, skip_links=skip_links)
            checked = _checked(members, limits)

            def open_member(member: _Member) -> BinaryIO:
                data = archive.extractfile(member.entry)  # type: ignore[arg-type]
                if data is None:  # only for non-files, which the listing has refused
                    raise CorruptArchive([f"{_shown_name(member.name)} cannot be read."])
                return data

            result = _extract(checked, dest, limits, open_member)
    return ExtractedArchive(
        path=result.path,
        files=result.files,
        bytes_written=result.bytes_written,
        skipped_links=tuple(skipped),
    )


# --- listing ---------------------------------------------------------------------------


@dataclass
class _Listing:
    """Members found so far, and every problem with them."""

    members: list[_Member]
    problems: list[str]


def _zip_members(archive: zipfile.ZipFile, limits: ArchiveLimits) -> _Listing:
    listing = _Listing(members=[], problems=[])
    entries = archive.infolist()
    if len(entries) > limits.max_members:
        listing.problems.append(
            f"It holds {len(entries):,} entries; at most {limits.max_members:,} are allowed."
        )
        return listing
    for info in entries:
        name, problems = _normalised_name(info.filename)
        mode = info.external_attr >> 16
        file_type = stat.S_IFMT(mode)
        is_dir = info.is_dir() or file_type == stat.S_IFDIR
        if file_type == stat.S_IFLNK:
            problems.append("is a symbolic link")
        elif file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            problems.append("is a device, pipe or socket, not a file or folder")
        if info.flag_bits & _ZIP_ENCRYPTED_FLAG:
            problems.append("is encrypted (password-protected archives are not supported)")
        if not is_dir and info.compress_type not in _ZIP_METHODS:
            problems.append(f"uses an unsupported compression method ({info.compress_type})")
        _record(
            listing,
            raw_name=info.filename,
            name=name,
            problems=problems,
            kind="dir" if is_dir else "file",
            declared_size=0 if is_dir else info.file_size,
            executable=bool(mode & stat.S_IXUSR),
            entry=info,
        )
    return listing


def _tar_members(
    archive: tarfile.TarFile, limits: ArchiveLimits, *, skip_links: bool
) -> tuple[_Listing, list[str]]:
    listing = _Listing(members=[], problems=[])
    skipped: list[str] = []
    count = 0
    try:
        # Iterate rather than getmembers(): a hostile tar of millions of empty headers is
        # stopped at the limit instead of being loaded whole.
        for info in archive:
            count += 1
            if count > limits.max_members:
                listing.problems.append(
                    f"It holds more than {limits.max_members:,} entries, the most allowed."
                )
                break
            name, problems = _normalised_name(info.name)
            if info.issym() or info.islnk():
                if skip_links and not problems:
                    skipped.append(name)
                    continue
                problems.append(
                    "is a symbolic link" if info.issym() else "is a hard link to another entry"
                )
            elif info.ischr() or info.isblk() or info.isfifo():
                problems.append("is a device or pipe, not a file or folder")
            elif not (info.isreg() or info.isdir()):
                problems.append("is not a regular file or folder")
            _record(
                listing,
                raw_name=info.name,
                name=name,
                problems=problems,
                kind="dir" if info.isdir() else "file",
                declared_size=info.size if info.isreg() else 0,
                executable=bool(info.mode & stat.S_IXUSR),
                entry=info,
            )
    except _READ_ERRORS as error:
        raise CorruptArchive([f"Its listing cannot be read ({_reason(error)})."]) from None
    return listing, skipped


def _record(
    listing: _Listing,
    *,
    raw_name: str,
    name: str,
    problems: list[str],
    kind: Literal["file", "dir"],
    declared_size: int,
    executable: bool,
    entry: object,
) -> None:
    if problems:
        shown = _shown_name(raw_name)
        listing.problems.extend(f"{shown} {problem}." for problem in problems)
        return
    if not name:
        if kind == "file":
            listing.problems.append(f"{_shown_name(raw_name)} has an empty file name.")
        # Otherwise the entry is the archive's own root folder ("./" in NSG's tar).
        return
    listing.members.append(
        _Member(
            name=name,
            kind=kind,
            declared_size=declared_size,
            executable=executable,
            entry=entry,
        )
    )


def _normalised_name(raw: str) -> tuple[str, list[str]]:
    """The member's relative "/"-separated path, or the reasons it must not be written."""
    problems = []
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # tarfile keeps undecodable bytes as surrogates
        problems.append("has a name that is not valid UTF-8 text")
    if any(ord(character) < 32 or ord(character) == 127 for character in raw):
        problems.append("has control characters in its name")
    if "\\" in raw:
        problems.append("uses backslashes in its path, which could escape on Windows")
    if raw.startswith("/"):
        problems.append("is an absolute path")
    if _DRIVE_LETTER.match(raw):
        problems.append("starts with a drive letter")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        problems.append("goes up out of the archive's folder (..)")
    if any(len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME_PART_BYTES for part in parts):
        problems.append(f"has a name longer than {_MAX_NAME_PART_BYTES} bytes")
    return "/".join(parts), problems


def _checked(listing: _Listing, limits: ArchiveLimits) -> list[_Member]:
    """The members to write, once the listing as a whole is known to be acceptable."""
    problems = list(listing.problems)
    files: dict[str, _Member] = {}
    directories: set[str] = set()
    for member in listing.members:
        if member.kind == "dir":
            if member.name in files:
                problems.append(f"{_shown_name(member.name)} is both a file and a folder.")
            directories.add(member.name)
            continue
        if member.name in files:
            problems.append(f"{_shown_name(member.name)} appears more than once.")
        elif member.name in directories:
            problems.append(f"{_shown_name(member.name)} is both a file and a folder.")
        files[member.name] = member
        if member.declared_size > limits.max_member_bytes:
            problems.append(
                f"{_shown_name(member.name)} unpacks to {_size(member.declared_size)}; "
                f"a single file may be at most {_size(limits.max_member_bytes)}."
            )
    for name in files:
        for parent in _parents(name):
            if parent in files:
                problems.append(f"{_shown_name(parent)} is both a file and a folder.")
    declared_total = sum(member.declared_size for member in files.values())
    if declared_total > limits.max_total_bytes:
        problems.append(
            f"It unpacks to {_size(declared_total)}; at most "
            f"{_size(limits.max_total_bytes)} are allowed."
        )
    if problems:
        raise UnsafeArchive(_unique(problems))
    return listing.members


def _parents(name: str) -> Iterator[str]:
    parts = name.split("/")
    for length in range(1, len(parts)):
        yield "/".join(parts[:length])


# --- writing ---------------------------------------------------------------------------


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[BinaryIO]:
    """A binary stream for ``source``; a path is opened (and closed) here, so a missing file
    raises FileNotFoundError rather than passing for a damaged archive."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as stream:
            yield stream
    else:
        yield source


def _check_destination(dest: str | os.PathLike[str]) -> Path:
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists; extraction needs a new folder")
    return dest


def _extract(
    members: list[_Member],
    dest: Path,
    limits: ArchiveLimits,
    open_member: Callable[[_Member], BinaryIO],
) -> ExtractedArchive:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        files = 0
        total = 0
        for member in members:
            target = staging.joinpath(*member.name.split("/"))
            if member.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            total += _write_member(member, target, open_member, limits, already_written=total)
            files += 1
            if member.executable:
                # Only the executable bit is kept: modes from outside (setuid, world-writable)
                # are never applied.
                target.chmod(0o755)
        staging.chmod(0o755)
        if dest.exists():
            raise FileExistsError(f"{dest} appeared while the archive was being extracted")
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExtractedArchive(path=dest, files=files, bytes_written=total)


def _write_member(
    member: _Member,
    target: Path,
    open_member: Callable[[_Member], BinaryIO],
    limits: ArchiveLimits,
    *,
    already_written: int,
) -> int:
    """Stream one member to ``target``, counting the bytes really produced."""
    written = 0
    try:
        stream = open_member(member)
    except _READ_ERRORS as error:
        raise CorruptArchive(
            [f"{_shown_name(member.name)} cannot be read ({_reason(error)})."]
        ) from None
    # "xb": never write through something that already exists at the target.
    with stream, open(target, "xb") as output:
        while True:
            try:
                chunk = stream.read(_CHUNK)
            except _READ_ERRORS as error:
                raise CorruptArchive(
                    [f"{_shown_name(member.name)} cannot be read ({_reason(error)})."]
                ) from None
            if not chunk:
                return written
            written += len(chunk)
            if written > limits.max_member_bytes:
                raise UnsafeArchive(
                    [
                        f"{_shown_name(member.name)} unpacks to more than "
                        f"{_size(limits.max_member_bytes)} although the archive lists it as "
                        f"{_size(member.declared_size)}."
                    ]
                )
            if already_written + written > limits.max_total_bytes:
                raise UnsafeArchive(
                    [
                        f"It unpacks to more than {_size(limits.max_total_bytes)}, "
                        "more than its listing declares."
                    ]
                )
            output.write(chunk)


# --- wording ---------------------------------------------------------------------------


def _shown_name(name: str) -> str:
    """The name quoted for a message, with control characters and bad bytes made visible."""
    shown = repr(name)
    return shown if len(shown) <= 120 else shown[:117] + "...'"


def _size(size: int) -> str:
    if size >= GB:
        return f"{size / GB:.1f} GB"
    if size >= MB:
        return f"{size / MB:.1f} MB"
    return f"{size:,} bytes"


def _reason(error: BaseException) -> str:
    if isinstance(error, zipfile.BadZipFile) and "CRC" in str(error):
        return "its data does not match its checksum; the archive is damaged or its sizes are falsified"
    if isinstance(error, tarfile.ReadError) and "could not be opened" in str(error):
        return "not a tar, tar.gz, tar.bz2 or tar.xz file"
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _unique(problems: list[str]) -> list[str]:
    return list(dict.fromkeys(problems))
