"""One storage suite, run on the filesystem backend and on S3 (a moto server on loopback)."""

import os
import subprocess
import sys
import time

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.test import override_settings

from rebuild_site.services import free_port, wait_for_port


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, timeout=30, process=server)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)
    log.close()


def _s3_storage_settings(endpoint: str, bucket: str) -> dict:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint,
            "access_key": "testing",
            "secret_key": "testing",
            "region_name": "us-east-1",
            "default_acl": None,
            "file_overwrite": True,
        },
    }


@pytest.fixture(params=["filesystem", "s3"])
def storage(request, tmp_path, settings):
    if request.param == "filesystem":
        default = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        }
    else:
        endpoint = request.getfixturevalue("s3_server")
        bucket = f"test-{time.monotonic_ns()}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        default = _s3_storage_settings(endpoint, bucket)
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
