"""Copy a finished job's result files into storage, streamed, checked, with a manifest last.

Used by both backends: NSG's files come from downloads, a local run's from its folder.
Files land under `BluePyOptOne/results<NSG|Local>/<username>/<folder>/`, a folder of the
job's own: the job's folder name is unique per user (one per run), and the first copy
reserves the storage folder on the job row before it writes, choosing another name when
something else is already stored there. Each file is streamed through a temporary file
(memory stays flat whatever the size), its size checked against the announced one and
hashed; `manifest.json` (name, size, sha256, seed) is written last, and the job's file rows
with it, so a folder without a manifest is an unfinished copy and a job's page lists only
what its manifest lists. A retried copy rewrites only its own unfinished folder; a stored
job is never copied again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from nsg_app.models import Job, ResultFile
from rebuild_site.stored import folder_used

MANIFEST = "manifest.json"
STDERR_TAIL_BYTES = 4000
_PREFIXES = {
    Job.Backend.NSG: "BluePyOptOne/resultsNSG",
    Job.Backend.LOCAL: "BluePyOptOne/resultsLocal",
}
_CHECKPOINT = re.compile(r"(^|/)checkpoints/[^/]+\.pkl$")
# The run folder of a checkpoint in output.tar.gz: "./<run>/checkpoints/x.pkl".
_RUN_FOLDER = re.compile(r"^(?:\./)?([A-Za-z0-9][A-Za-z0-9._-]{0,149})/checkpoints/[^/]+\.pkl$")
# NSG's job handles; a job submitted elsewhere without a clientJobName is named by one.
_HANDLE_NAME = re.compile(r"^NGBW-JOB-")
# A result's name comes from the service (or the run) and names a file in storage: one
# plain file name, never a path.
_RESULT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


class CollectError(Exception):
    """A result could not be copied (size mismatch, download failure); the job can retry."""


@dataclass(frozen=True)
class ResultSource:
    """One result file to copy: its name, announced size (None: unknown) and how to write it."""

    name: str
    size: int | None
    write_to: Callable[[BinaryIO], int]


class _Hashing(io.RawIOBase):
    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.target.write(data)


def results_prefix(job: Job) -> str:
    """Where the job's results go: the folder it reserved, or the one its name gives."""
    return job.results_prefix or f"{_PREFIXES[job.backend]}/{job.owner.get_username()}/{job.folder}"


def reserve_results_folder(job: Job) -> str:
    """The job's results folder, reserved on its row before anything is written there.

    A job keeps the folder it reserved (a retried copy finishes its own unfinished one).
    A new reservation never takes a folder where anything is stored, nor one another job
    reserved: those belong to other runs, and nothing stored is ever overwritten.
    """
    if job.results_prefix:
        return job.results_prefix
    wanted = results_prefix(job)
    candidate, number = wanted, 1
    while (
        folder_used(candidate)
        or Job.objects.filter(results_prefix=candidate).exclude(pk=job.pk).exists()
    ):
        number += 1
        candidate = f"{wanted}-{number}"
    Job.objects.filter(pk=job.pk).update(results_prefix=candidate)
    job.results_prefix = candidate
    return candidate


class _DownloadedFile(File):
    """A finished download on disk. Like Django's TemporaryUploadedFile it gives its path,
    so the filesystem storage moves it into place instead of copying it again; other
    storages (S3) read it."""

    def temporary_file_path(self) -> str:
        return self.file.name


def _save_own(name: str, handle: BinaryIO) -> None:
    # Only ever called inside the job's own reserved folder before its manifest exists: a
    # file already there is this job's unfinished earlier attempt, replaced here (the
    # filesystem storage would otherwise pick another name).
    if default_storage.exists(name):
        default_storage.delete(name)
    content = (
        _DownloadedFile(handle)
        if hasattr(handle, "name") and isinstance(handle.name, str)
        else File(handle)
    )
    saved = default_storage.save(name, content)
    if saved != name:
        default_storage.delete(saved)
        raise CollectError(f"storage refused the name {name} (it saved {saved})")


@dataclass
class _Findings:
    checkpoint_found: bool | None = None
    run_folder: str = ""
    stderr_tail: str = ""


def store_results(
    job: Job, sources: Iterable[ResultSource], *, heartbeat: Callable[[], None] = lambda: None
) -> None:
    """Copy every source into the job's results folder, then write the manifest.

    Never for a stored job (its manifest is final); the caller claims the job first.
    """
    if job.state == Job.State.COLLECTED or job.collected_at is not None:
        raise CollectError("the results are already in storage; they are never copied over")
    prefix = reserve_results_folder(job)
    manifest_name = f"{prefix}/{MANIFEST}"
    if default_storage.exists(manifest_name):
        # This job's own attempt, stopped between its manifest and the database: the folder
        # was reserved for this job alone, and is made again from the start.
        default_storage.delete(manifest_name)
    findings = _Findings()
    entries = []
    os.makedirs(settings.FILE_UPLOAD_TEMP_DIR, exist_ok=True)
    for source in sources:
        if not _RESULT_NAME.match(source.name) or source.name == MANIFEST:
            raise CollectError(f"the result name {source.name[:200]!r} is not a plain file name")
        # Downloads go to FILE_UPLOAD_TEMP_DIR, on the same disk as the filesystem storage,
        # from where they are moved into place (S3 uploads them from there).
        with tempfile.NamedTemporaryFile(
            dir=settings.FILE_UPLOAD_TEMP_DIR, prefix="collect-", delete=False
        ) as temp:
            hashing = _Hashing(temp)
            source.write_to(hashing)
            if source.size is not None and hashing.size != source.size:
                raise CollectError(
                    f"{source.name}: received {hashing.size} bytes, expected {source.size}"
                )
            _inspect(source.name, temp, findings)
            temp.seek(0)
            storage_name = f"{prefix}/{source.name}"
            try:
                _save_own(storage_name, temp)
            finally:
                if os.path.exists(temp.name):  # not moved: S3, or a failure
                    os.unlink(temp.name)
        entries.append(
            {"name": source.name, "size": hashing.size, "sha256": hashing.digest.hexdigest()}
        )
        heartbeat()
    folder = _run_name(job, findings.run_folder)
    manifest = json.dumps(
        {
            "job": job.handle or f"local-{job.pk}",
            "folder": folder,
            "seed": job.seed,
            "files": entries,
        },
        indent=2,
    ).encode()
    _save_own(manifest_name, io.BytesIO(manifest))
    flag, detail = _flag(findings)
    # The rows the page serves appear with the manifest, in one transaction.
    with transaction.atomic():
        ResultFile.objects.filter(job=job).delete()
        ResultFile.objects.bulk_create(
            ResultFile(
                job=job,
                name=entry["name"],
                storage_name=f"{prefix}/{entry['name']}",
                size=entry["size"],
                sha256=entry["sha256"],
            )
            for entry in entries
        )
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.COLLECTED,
            collected_at=timezone.now(),
            folder=folder,
            results_prefix=prefix,
            flag=flag,
            flag_detail=detail,
            stderr_tail=findings.stderr_tail,
            collect_heartbeat_at=None,
        )


def _run_name(job: Job, run_folder: str) -> str:
    """The job's name once its results are in: a job submitted elsewhere that NSG knew only
    by its handle takes the run folder found in its results (numbered if the user has a
    job of that name already), so that two such runs are told apart by what they ran."""
    if not (job.external and run_folder and _HANDLE_NAME.match(job.folder)):
        return job.folder
    taken = set(
        Job.objects.filter(owner=job.owner, folder__startswith=run_folder)
        .exclude(pk=job.pk)
        .values_list("folder", flat=True)
    )
    name, number = run_folder, 1
    while name in taken:
        number += 1
        name = f"{run_folder}-{number}"
    return name


def _inspect(name: str, temp: BinaryIO, findings: _Findings) -> None:
    if name == "STDERR":
        temp.seek(0, io.SEEK_END)
        size = temp.tell()
        temp.seek(max(0, size - STDERR_TAIL_BYTES))
        findings.stderr_tail = temp.read().decode("utf-8", "replace")
    elif name.endswith(".tar.gz"):
        temp.seek(0)
        findings.checkpoint_found = False
        try:
            # Streamed: the listing of a large archive never sits in memory at once.
            with tarfile.open(fileobj=temp, mode="r|*") as archive:
                for member in archive:
                    if member.isfile() and _CHECKPOINT.search(member.name):
                        findings.checkpoint_found = True
                        if folder := _RUN_FOLDER.match(member.name):
                            findings.run_folder = folder[1]
                        break
        except (tarfile.TarError, EOFError, OSError):
            findings.checkpoint_found = False


def _flag(findings: _Findings) -> tuple[str, str]:
    tail = findings.stderr_tail
    if "DUE TO TIME LIMIT" in tail:
        return Job.Flag.TIME_LIMIT, (
            "The run was stopped at its time limit before it finished: ask for a longer runtime "
            "or fewer generations/offspring."
        )
    if "Traceback (most recent call last)" in tail:
        last = [line for line in tail.strip().splitlines() if line.strip()]
        return (
            Job.Flag.SCRIPT_ERROR,
            f"The optimisation script failed: {last[-1] if last else 'see STDERR'}",
        )
    if findings.checkpoint_found is False:
        return Job.Flag.NO_CHECKPOINT, (
            "output.tar.gz holds no checkpoint: the runtime was probably too short for the "
            "generations asked, or fewer than 2 generations were run."
        )
    return Job.Flag.NONE, ""
