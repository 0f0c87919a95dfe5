"""One storage suite, run on the filesystem backend and on S3 (a moto server on loopback)."""

import os

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.test import override_settings


@pytest.fixture(params=["filesystem", "s3"])
def storage(request, tmp_path, settings):
    if request.param == "filesystem":
        default = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        }
    else:
        default = request.getfixturevalue("s3_server").new_bucket_storage()
    with override_settings(STORAGES={**settings.STORAGES, "default": default}):
        yield storages["default"]


def test_save_then_open_returns_the_same_bytes(storage):
    name = storage.save("BluePyOptOne/resultsNSG/alice/run1/STDOUT", ContentFile(b"hello\n"))

    assert name == "BluePyOptOne/resultsNSG/alice/run1/STDOUT"
    with storage.open(name, "rb") as handle:
        assert handle.read() == b"hello\n"
    assert storage.exists(name)
    assert storage.size(name) == 6


def test_listdir_shows_folders_and_files(storage):
    storage.save("root/a.txt", ContentFile(b"a"))
    storage.save("root/sub/b.txt", ContentFile(b"b"))

    folders, files = storage.listdir("root")

    assert folders == ["sub"]
    assert files == ["a.txt"]


def test_delete_removes_the_file(storage):
    name = storage.save("gone.txt", ContentFile(b"x"))
    storage.delete(name)

    assert not storage.exists(name)


def test_a_file_of_several_megabytes_round_trips(storage):
    payload = os.urandom(7 * 1024 * 1024 + 13)
    name = storage.save("big/output.tar.gz", ContentFile(payload))

    assert storage.size(name) == len(payload)
    with storage.open(name, "rb") as handle:
        assert handle.read() == payload
