"""Files a model's code wrote are read back only when they are what they claim to be."""

from __future__ import annotations

import os
import tarfile
import threading

import pytest

from models_app.bpo.untrusted import (
    UntrustedFileError,
    copy_untrusted,
    read_untrusted_bytes,
    read_untrusted_json,
    read_untrusted_tail,
    regular_files_only,
)


@pytest.fixture
def work(tmp_path):
    folder = tmp_path / "work"
    (folder / "out").mkdir(parents=True)
    return folder


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "credentials.key"
    path.write_text("the site's key\n")
    return path


def test_a_regular_file_inside_the_folder_is_read(work):
    (work / "out" / "result.json").write_text('{"fitness": 1.5}')
    assert read_untrusted_json(work / "out" / "result.json", root=work, max_bytes=100) == {
        "fitness": 1.5
    }


def test_a_link_to_a_secret_is_refused_and_nothing_of_it_is_read(work, secret):
    (work / "out" / "result.json").symlink_to(secret)
    with pytest.raises(UntrustedFileError, match="symbolic link"):
        read_untrusted_bytes(work / "out" / "result.json", root=work, max_bytes=100)
    assert read_untrusted_tail(work / "out" / "result.json", root=work, max_chars=100) == ""


def test_a_linked_folder_on_the_way_is_refused(work, secret):
    (work / "linked").symlink_to(secret.parent)
    with pytest.raises(UntrustedFileError, match="'linked' is a symbolic link"):
        read_untrusted_bytes(work / "linked" / secret.name, root=work, max_bytes=100)


def test_paths_out_of_the_folder_are_refused(work, secret):
    for path in (secret, work / "out" / ".." / ".." / secret.name, "../credentials.key"):
        with pytest.raises(UntrustedFileError):
            read_untrusted_bytes(path, root=work, max_bytes=100)


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(work):
    os.mkfifo(work / "out" / "progress.json")
    outcome = {}

    def read():
        try:
            read_untrusted_bytes(work / "out" / "progress.json", root=work, max_bytes=100)
        except UntrustedFileError as error:
            outcome["error"] = str(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert "not a regular file" in outcome["error"]


def test_a_file_over_its_size_cap_is_refused(work):
    (work / "out" / "result.json").write_bytes(b" " * 101)
    with pytest.raises(UntrustedFileError, match="101 bytes; at most 100"):
        read_untrusted_bytes(work / "out" / "result.json", root=work, max_bytes=100)


def test_invalid_json_is_refused_clearly(work):
    (work / "out" / "error.json").write_text("{not json")
    with pytest.raises(UntrustedFileError, match="not valid JSON"):
        read_untrusted_json(work / "out" / "error.json", root=work, max_bytes=100)


def test_a_missing_file_is_reported_as_missing(work):
    with pytest.raises(FileNotFoundError):
        read_untrusted_bytes(work / "out" / "nothing.json", root=work, max_bytes=100)


def test_a_refused_copy_leaves_nothing_behind(work, secret, tmp_path):
    (work / "out" / "cell.hoc").symlink_to(secret)
    target = tmp_path / "copy.hoc"
    with pytest.raises(UntrustedFileError):
        copy_untrusted(work / "out" / "cell.hoc", target, root=work, max_bytes=100)
    assert not target.exists()
    (work / "out" / "real.hoc").write_text("create soma\n")
    assert copy_untrusted(work / "out" / "real.hoc", target, root=work, max_bytes=100) == 12
    assert target.read_text() == "create soma\n"


def test_only_the_end_of_a_long_log_is_read(work):
    (work / "out" / "STDERR").write_text("x" * 10_000 + "Traceback: the end\n")
    assert read_untrusted_tail(work / "out" / "STDERR", root=work, max_chars=19) == (
        "Traceback: the end\n"
    )


def test_a_results_tarball_leaves_out_links_and_pipes(work, secret, tmp_path):
    (work / "out" / "checkpoint.pkl").write_bytes(b"data")
    (work / "out" / "key").symlink_to(secret)
    os.mkfifo(work / "out" / "pipe")
    tarball = tmp_path / "output.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(work, arcname=".", filter=regular_files_only)
    with tarfile.open(tarball) as archive:
        names = sorted(member.name for member in archive)
    assert names == [".", "./out", "./out/checkpoint.pkl"]
