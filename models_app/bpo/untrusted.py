"""Reading back what a model's code wrote: every file is checked before a byte is read.

A run or an analysis runs the model's own code (opt_neuron.py, model/*.py, .mod files,
checkpoint pickles), which may be hostile. Whatever it leaves in its work folder is read
by the site's own processes, outside the sandbox, so a file there can be a trap: a symbolic
link to the site's credentials key (read, then shown or stored for the user), a named pipe
(a reader blocks for ever), a file of many gigabytes, or a name with ``..`` in it.

So the site reads such files only through this module: the path must lie inside the work
folder it came from, every folder on the way and the file itself are opened without
following symbolic links (``openat`` with ``O_NOFOLLOW``, so a link swapped in between a
check and the open is refused too), the file must be a regular file, and no more than a
stated number of bytes is ever read. Pickles written by model code are never read here at
all: they are unpickled only inside the sandbox.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from .errors import BpoError

KB = 1024
MB = 1024 * KB
GB = 1024 * MB

_CHUNK = 1 * MB
_OPEN_FLAGS = (
    os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
)
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UntrustedFileError(BpoError):
    """A file written by model code was refused; ``problems`` says why."""

    summary = "A file written by the model's code was refused"


def relative_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> PurePosixPath:
    """``path`` relative to ``root``, refusing anything that is not a plain path below it.

    Purely textual: no file is touched. A relative ``path`` is taken relative to ``root``.
    """
    root_path = Path(os.path.abspath(root))
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root_path / candidate
    # abspath would fold "a/../b" into "b": look at the parts as given first.
    if ".." in candidate.parts:
        raise UntrustedFileError([f"{_shown(path)} goes up out of its folder (..)."])
    try:
        relative = candidate.relative_to(root_path)
    except ValueError:
        raise UntrustedFileError([f"{_shown(path)} is not inside {_shown(root)}."]) from None
    if not relative.parts:
        raise UntrustedFileError([f"{_shown(path)} is the folder itself, not a file in it."])
    return PurePosixPath(*relative.parts)


@contextlib.contextmanager
def open_untrusted(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str], max_bytes: int
) -> Iterator[BinaryIO]:
    """Open ``path`` (inside ``root``) for reading, if it is a regular file of at most
    ``max_bytes`` reached without following any link below ``root``.

    Raises ``FileNotFoundError`` when it does not exist and ``UntrustedFileError`` for
    anything else that is wrong with it. ``root`` itself is the site's choice and trusted.
    """
    relative = relative_inside(path, root)
    descriptor = _open_below(Path(root), relative, path)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise UntrustedFileError([f"{_shown(path)} is not a regular file."])
        if status.st_size > max_bytes:
            raise UntrustedFileError(
                [f"{_shown(path)} holds {status.st_size:,} bytes; at most {max_bytes:,} are read."]
            )
        stream = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with stream:
        yield _Capped(stream, max_bytes, path)  # type: ignore[misc]


def read_untrusted_bytes(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str], max_bytes: int
) -> bytes:
    """The whole content of ``path``, checked as ``open_untrusted`` does."""
    with open_untrusted(path, root=root, max_bytes=max_bytes) as stream:
        return stream.read()


def read_untrusted_json(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str], max_bytes: int
) -> Any:
    """The JSON document in ``path``; ``UntrustedFileError`` when it is not valid JSON."""
    data = read_untrusted_bytes(path, root=root, max_bytes=max_bytes)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UntrustedFileError([f"{_shown(path)} is not valid JSON."]) from None


def read_untrusted_tail(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str], max_chars: int
) -> str:
    """The last ``max_chars`` bytes of ``path`` as text (a log: any size, only its end read).

    A missing or refused file reads as "": a log is evidence, not a result.
    """
    try:
        relative = relative_inside(path, root)
        descriptor = _open_below(Path(root), relative, path)
    except (OSError, UntrustedFileError):
        return ""
    with os.fdopen(descriptor, "rb") as stream:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode):
            return ""
        stream.seek(max(0, status.st_size - max_chars))
        return stream.read(max_chars).decode("utf-8", "replace")


def copy_untrusted(
    path: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str],
    max_bytes: int,
) -> int:
    """Copy ``path`` (checked as ``open_untrusted`` does) to the new file ``destination``.

    Returns the bytes copied; a refused copy leaves no destination behind.
    """
    destination = Path(destination)
    with open_untrusted(path, root=root, max_bytes=max_bytes) as source:
        try:
            with open(destination, "xb") as target:
                shutil.copyfileobj(source, target, _CHUNK)
                return target.tell()
        except BaseException:
            destination.unlink(missing_ok=True)
            raise


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` to the log file ``path`` in a folder the model's code could write in.

    Never through a link, never into a pipe or device: a log swapped for one of those is
    refused (``UntrustedFileError``) rather than written to wherever it points.
    """
    flags = (
        os.O_WRONLY
        | os.O_APPEND
        | os.O_CREAT
        | os.O_NOFOLLOW
        | os.O_NONBLOCK
        | os.O_NOCTTY
        | getattr(os, "O_CLOEXEC", 0)
    )
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as error:
        raise _refusal(error, path) from None
    with os.fdopen(descriptor, "ab") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UntrustedFileError([f"{_shown(path)} is not a regular file."])
        stream.write(text.encode("utf-8"))


def regular_files_only(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """A ``tarfile.add`` filter: files and folders go into a results tarball, nothing else.

    Links, pipes and devices a run left in its folder are left out, so that no reader of
    the tarball (the site, the user) finds a link pointing anywhere.
    """
    if member.isreg() or member.isdir():
        member.mode &= 0o755  # never setuid, never world-writable
        return member
    return None


# --- the checks ----------------------------------------------------------------------


def _open_below(root: Path, relative: PurePosixPath, shown: object) -> int:
    """A descriptor of ``root/relative``, each step opened without following links."""
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in relative.parts[:-1]:
            try:
                inner = os.open(part, _FOLDER_FLAGS, dir_fd=folder)
            except OSError as error:
                if error.errno == errno.ENOTDIR and _is_link(part, folder):
                    # O_DIRECTORY answers ENOTDIR, not ELOOP, for a link.
                    error = OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                raise _refusal(error, shown, folder_part=part) from None
            os.close(folder)
            folder = inner
        try:
            return os.open(relative.parts[-1], _OPEN_FLAGS, dir_fd=folder)
        except OSError as error:
            raise _refusal(error, shown) from None
    finally:
        os.close(folder)


def _is_link(name: str, folder: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refusal(error: OSError, shown: object, *, folder_part: str | None = None) -> Exception:
    if error.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, "No such file", str(shown))
    if error.errno in (errno.ELOOP, errno.EMLINK):
        where = f"its folder {folder_part!r}" if folder_part else "it"
        return UntrustedFileError([f"{_shown(shown)} was refused: {where} is a symbolic link."])
    if error.errno == errno.ENOTDIR:
        return UntrustedFileError(
            [f"{_shown(shown)} was refused: {folder_part!r} is not a folder."]
        )
    return UntrustedFileError([f"{_shown(shown)} cannot be read ({error.strerror})."])


class _Capped:
    """A read-only stream that refuses to give more than ``limit`` bytes in all.

    The size is checked when the file is opened, but a process still writing it (a run
    that outlived its cancel) could make it grow afterwards.
    """

    def __init__(self, stream: BinaryIO, limit: int, shown: object) -> None:
        self._stream = stream
        self._left = limit
        self._limit = limit
        self._shown = shown

    def read(self, size: int = -1) -> bytes:
        wanted = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        data = self._stream.read(wanted)
        self._left -= len(data)
        if self._left < 0:
            raise UntrustedFileError(
                [f"{_shown(self._shown)} grew past {self._limit:,} bytes while being read."]
            )
        return data

    def readinto(self, buffer) -> int:  # numpy and zipfile read through it
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._stream.seek(offset, whence)
        self._left = self._limit - position
        return position

    def tell(self) -> int:
        return self._stream.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self) -> None:
        self._stream.close()

    @property
    def closed(self) -> bool:
        return self._stream.closed

    def __enter__(self) -> _Capped:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _shown(path: object) -> str:
    text = repr(str(path))
    return text if len(text) <= 160 else text[:157] + "...'"
