"""What a hostile model goes for, in this test session: the site's real secrets and files.

``targets`` names them for the payloads (tests/sandbox/payloads.py); ``leaks`` holds their
contents, to look for in everything a user can see afterwards; ``outside`` checks that no
file a payload tried to create exists on this machine, and removes any it did create.
"""

from __future__ import annotations

import os
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, TEST_VAR

from .payloads import Targets


@dataclass
class Secrets:
    """The secrets' contents, and the files a payload tried to write."""

    contents: dict[str, bytes]
    write_targets: dict[str, str]

    def found_in(self, text: str | bytes) -> list[str]:
        """The secrets that appear in ``text`` (whole, or any 16-byte piece of one)."""
        data = text.encode("utf-8", "replace") if isinstance(text, str) else text
        found = []
        for what, secret in self.contents.items():
            pieces = {secret[i : i + 16] for i in range(0, max(1, len(secret) - 15), 8)}
            if any(piece and piece in data for piece in pieces):
                found.append(what)
        return found

    def written_outside(self) -> list[str]:
        return [what for what, path in self.write_targets.items() if os.path.lexists(path)]


@pytest.fixture
def hostile(db, bob, tmp_path):
    """The targets of a payload, and the secrets to look for, for this test."""
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db import connection

    token = secrets.token_hex(6)
    bob_secret = f"bob's own result {secrets.token_hex(16)}\n".encode()
    bob_file = default_storage.save(
        f"BluePyOptOne/resultsLocal/bob/private-{token}/STDOUT", ContentFile(bob_secret)
    )
    media_root = Path(settings.MEDIA_ROOT)
    secret_files = {
        "credentials key": str(TEST_VAR / "dev-credentials-key"),
        "secret key": str(TEST_VAR / "dev-secret-key"),
        "other user's stored file": str(media_root / bob_file),
    }
    contents = {
        "credentials key": settings.CREDENTIALS_KEY.encode(),
        "secret key": settings.SECRET_KEY.encode(),
        "other user's stored file": bob_secret,
    }
    if connection.vendor == "sqlite":
        secret_files["database"] = str(connection.settings_dict["NAME"])
    else:  # PostgreSQL: its data are not a file of ours; the probe reads the sqlite path
        secret_files["database"] = str(TEST_VAR / "db.sqlite3")
    outside = TEST_VAR / f"outside-{token}"
    outside.mkdir()
    write_targets = {
        "a folder outside the work folder": str(outside / "written.txt"),
        "the storage": str(media_root / f"hostile-{token}.txt"),
        "the project's code": str(ROOT / f"hostile-{token}.py"),
        "the home folder": str(Path.home() / f"hostile-{token}.txt"),
        "the system's temporary folder": f"/tmp/hostile-{token}.txt",
    }
    targets = Targets(
        secret_files=secret_files,
        folders_to_list={"the storage": str(media_root), "the site's var folder": str(TEST_VAR)},
        redis_port=urlsplit(os.environ["REDIS_URL"]).port or 6379,
        write_targets=write_targets,
    )
    found = Secrets(contents=contents, write_targets=write_targets)
    yield targets, found
    for path in write_targets.values():
        if os.path.lexists(path):
            os.unlink(path)
    outside.rmdir()
    default_storage.delete(bob_file)


def redis_key_set() -> bool:
    """Whether the probe's SET reached the test Redis."""
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return bool(client.exists("hostile-probe-was-here"))
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _no_probe_key_left():
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete("hostile-probe-was-here")
    yield
    client.delete("hostile-probe-was-here")
    client.close()


def tar_texts(data: bytes) -> dict[str, bytes]:
    """Every regular file of a stored output.tar.gz, by member name."""
    import io

    texts = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive:
            if member.isreg():
                texts[member.name] = archive.extractfile(member).read()
    return texts
