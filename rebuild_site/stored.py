"""Listing a folder of the site's storage (the filesystem or S3): one way, for every app."""

from __future__ import annotations

from django.core.files.storage import default_storage


def stored_files(prefix: str) -> list[str]:
    """Every file stored under ``prefix``, at any depth."""
    try:
        directories, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [f"{prefix}/{name}" for name in files]
    for name in directories:
        found += stored_files(f"{prefix}/{name}")
    return found


def folder_used(prefix: str) -> bool:
    """Whether any file is stored under ``prefix`` (empty folders, which a filesystem keeps
    after a failed write and S3 never has, do not count)."""
    try:
        directories, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return bool(files) or any(folder_used(f"{prefix}/{name}") for name in directories)
