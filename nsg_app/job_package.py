"""The zip a job runs: its package with the job's seed written in (see seed_package)."""

from __future__ import annotations

import tempfile
from typing import BinaryIO

from django.core.files.storage import default_storage

from models_app.bpo.package import seed_package
from nsg_app.models import Job


def write_job_package(job: Job, target: BinaryIO) -> None:
    """Write the job's package, carrying its seed, to ``target`` (a binary file)."""
    with (
        default_storage.open(job.package.file, "rb") as stored,
        tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as source,
    ):
        # The storage's file may not seek (S3 streams): zipfile needs a seekable copy.
        while chunk := stored.read(1024 * 1024):
            source.write(chunk)
        source.seek(0)
        if job.seed is None:
            while chunk := source.read(1024 * 1024):
                target.write(chunk)
        else:
            seed_package(source, target, seed=job.seed)
