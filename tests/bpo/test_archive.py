import io
import os
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from models_app.bpo import archive as archive_module
from models_app.bpo.archive import (
    ArchiveError,
    ArchiveLimits,
    CorruptArchive,
    UnsafeArchive,
    extract_tar,
    extract_zip,
)

from .builders import (
    patch_zip_headers,
    symlink_zip_entry,
    tar_bytes,
    tar_file,
    tar_special,
    zip_bytes,
)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` besides the archive files the test wrote."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("archive."))


def refused(extract, source, dest: Path, **options) -> ArchiveError:
    with pytest.raises(ArchiveError) as caught:
        extract(source, dest, **options)
    assert not dest.exists()
    assert leftovers(dest.parent) == []  # no half-written folder beside it either
    return caught.value


# --- what is extracted -----------------------------------------------------------------


def test_zip_is_extracted_with_its_folders(tmp_path):
    data = zip_bytes(
        [("model/config/features.json", b"{}"), ("model/", b""), ("model/opt_neuron.py", b"x")]
    )
    dest = tmp_path / "out" / "extracted"

    result = extract_zip(write(tmp_path / "archive.zip", data), dest)

    assert (dest / "model" / "config" / "features.json").read_bytes() == b"{}"
    assert (dest / "model" / "opt_neuron.py").read_bytes() == b"x"
    assert result.path == dest
    assert result.files == 2
    assert result.bytes_written == 3


def test_zip_can_be_read_from_a_file_object(tmp_path):
    data = zip_bytes([("a.txt", b"hello")])

    extract_zip(io.BytesIO(data), tmp_path / "dest")

    assert (tmp_path / "dest" / "a.txt").read_text() == "hello"


def test_only_the_executable_bit_of_a_mode_is_kept(tmp_path):
    script = zipfile.ZipInfo("run.sh")
    script.create_system = 3
    script.external_attr = (0o104755) << 16  # setuid, executable
    plain = zipfile.ZipInfo("notes.txt")
    plain.create_system = 3
    plain.external_attr = (0o100666) << 16  # world-writable
    dest = tmp_path / "dest"

    extract_zip(io.BytesIO(zip_bytes([(script, b"#!/bin/sh\n"), (plain, b"n")])), dest)

    assert (dest / "run.sh").stat().st_mode & 0o7777 == 0o755
    assert (dest / "notes.txt").stat().st_mode & 0o7000 == 0
    assert not (dest / "notes.txt").stat().st_mode & 0o002


def test_nsg_style_tar_gz_with_dot_prefixed_members_is_extracted(tmp_path):
    data = tar_bytes(
        [
            tar_special("./", tarfile.DIRTYPE),
            tar_file("./_JOBINFO.TXT", b"Tool=BLUEPYOPT_EXPANSE\n"),
            tar_special("./run", tarfile.DIRTYPE),
            tar_file("./run/checkpoints/checkpoint.pkl", b"pickle"),
        ]
    )
    dest = tmp_path / "dest"

    result = extract_tar(write(tmp_path / "archive.tar.gz", data), dest)

    assert (dest / "run" / "checkpoints" / "checkpoint.pkl").read_bytes() == b"pickle"
    assert (dest / "_JOBINFO.TXT").exists()
    assert result.files == 2


def test_plain_uncompressed_tar_is_extracted(tmp_path):
    data = tar_bytes([tar_file("a.txt", b"a")], mode="w")

    extract_tar(io.BytesIO(data), tmp_path / "dest")

    assert (tmp_path / "dest" / "a.txt").read_text() == "a"


def test_existing_destination_is_never_overwritten(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(FileExistsError):
        extract_zip(io.BytesIO(zip_bytes([("a.txt", b"a")])), dest)


def test_missing_archive_file_is_reported_as_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        extract_zip(tmp_path / "nowhere.zip", tmp_path / "dest")


# --- hostile names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute path"),
        ("../outside.txt", "goes up out of the archive's folder"),
        ("model/../../outside.txt", "goes up out of the archive's folder"),
        ("C:/Windows/evil.dll", "drive letter"),
        ("model\\..\\..\\evil.txt", "backslashes"),
        ("bad\nname.txt", "control characters"),
    ],
)
def test_zip_member_escaping_its_folder_is_refused(tmp_path, name, reason):
    data = zip_bytes([("ok.txt", b"ok"), (name, b"evil")])

    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert isinstance(error, UnsafeArchive)
    assert len(error.problems) == 1
    assert reason in error.problems[0]
    assert not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize("name", ["/abs.txt", "../up.txt", "a/../../up.txt"])
def test_tar_member_escaping_its_folder_is_refused(tmp_path, name):
    data = tar_bytes([tar_file(name, b"evil")])

    error = refused(extract_tar, io.BytesIO(data), tmp_path / "dest")

    assert isinstance(error, UnsafeArchive)


def test_symbolic_link_in_zip_is_refused(tmp_path):
    data = zip_bytes([("a.txt", b"a"), symlink_zip_entry("link", "/etc/passwd")])

    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert error.problems == ["'link' is a symbolic link."]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (tar_special("link", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
        (tar_special("hard", tarfile.LNKTYPE, linkname="a.txt"), "hard link"),
        (tar_special("dev", tarfile.CHRTYPE), "device"),
        (tar_special("pipe", tarfile.FIFOTYPE), "pipe"),
    ],
)
def test_links_devices_and_pipes_in_tar_are_refused(tmp_path, entry, reason):
    data = tar_bytes([tar_file("a.txt", b"a"), entry])

    error = refused(extract_tar, io.BytesIO(data), tmp_path / "dest")

    assert len(error.problems) == 1
    assert reason in error.problems[0]


def test_tar_links_can_be_left_out_and_are_reported(tmp_path):
    data = tar_bytes(
        [
            tar_file("x86_64/.libs/libnrnmech.so.0.0.0", b"lib"),
            tar_special(
                "x86_64/.libs/libnrnmech.so", tarfile.SYMTYPE, linkname="libnrnmech.so.0.0.0"
            ),
        ]
    )
    dest = tmp_path / "dest"

    result = extract_tar(io.BytesIO(data), dest, skip_links=True)

    assert result.skipped_links == ("x86_64/.libs/libnrnmech.so",)
    assert not (dest / "x86_64" / ".libs" / "libnrnmech.so").exists()
    assert (dest / "x86_64" / ".libs" / "libnrnmech.so.0.0.0").read_bytes() == b"lib"


def test_devices_are_refused_even_when_links_are_skipped(tmp_path):
    data = tar_bytes([tar_special("dev", tarfile.BLKTYPE)])

    refused(extract_tar, io.BytesIO(data), tmp_path / "dest", skip_links=True)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_names_are_refused(tmp_path):
    data = zip_bytes([("config/features.json", b"{}"), ("config/./features.json", b"evil")])

    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert error.problems == ["'config/features.json' appears more than once."]


def test_a_name_used_as_file_and_folder_is_refused(tmp_path):
    data = zip_bytes([("model", b"file"), ("model/evaluator.py", b"x")])

    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert error.problems == ["'model' is both a file and a folder."]


def test_undecodable_zip_names_are_refused(tmp_path):
    data = zip_bytes([("caf\u00e9.txt", b"x")])  # zipfile marks the name as UTF-8
    data = data.replace("caf\u00e9".encode(), b"caf\xff\xfe")

    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert isinstance(error, UnsafeArchive)
    assert "not valid UTF-8" in error.problems[0]


def test_undecodable_tar_names_are_refused(tmp_path):
    info, data = tar_file("caf\u00e9.txt", b"x")
    archive = tar_bytes([(info, data)], format=tarfile.GNU_FORMAT, encoding="latin-1")

    error = refused(extract_tar, io.BytesIO(archive), tmp_path / "dest")

    assert "not valid UTF-8" in error.problems[0]


def test_encrypted_zip_is_refused(tmp_path):
    data = patch_zip_headers(zip_bytes([("secret.txt", b"x")]), flags=0x1)

    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert "encrypted" in error.problems[0]


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_every_problem_is_reported_at_once(tmp_path):
    data = zip_bytes(
        [
            ("/abs.txt", b"x"),
            ("../up.txt", b"x"),
            symlink_zip_entry("link", "target"),
            ("ok.txt", b"x"),
            ("ok.txt", b"y"),
        ]
    )

    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert len(error.problems) == 4
    message = str(error)
    for fragment in ("/abs.txt", "../up.txt", "'link'", "'ok.txt'"):
        assert fragment in message


# --- sizes and counts ------------------------------------------------------------------


def test_too_many_zip_members_are_refused(tmp_path):
    data = zip_bytes([(f"f{number}.txt", b"") for number in range(11)])

    error = refused(
        extract_zip, io.BytesIO(data), tmp_path / "dest", limits=ArchiveLimits(max_members=10)
    )

    assert "11 entries; at most 10" in error.problems[0]


def test_too_many_tar_members_are_refused(tmp_path):
    data = tar_bytes([tar_file(f"f{number}.txt", b"") for number in range(11)])

    error = refused(
        extract_tar, io.BytesIO(data), tmp_path / "dest", limits=ArchiveLimits(max_members=10)
    )

    assert "more than 10 entries" in error.problems[0]


def test_highly_compressible_large_member_is_refused(tmp_path):
    data = zip_bytes([("bomb.txt", bytes(5 * 1024 * 1024))])
    assert len(data) < 50_000  # small on the wire, large unpacked

    error = refused(
        extract_zip,
        io.BytesIO(data),
        tmp_path / "dest",
        limits=ArchiveLimits(max_member_bytes=1024 * 1024),
    )

    assert "'bomb.txt' unpacks to 5.0 MB; a single file may be at most 1.0 MB" in error.problems[0]


def test_too_many_bytes_in_total_are_refused(tmp_path):
    data = tar_bytes([tar_file(f"f{number}.bin", bytes(600_000)) for number in range(2)])

    error = refused(
        extract_tar,
        io.BytesIO(data),
        tmp_path / "dest",
        limits=ArchiveLimits(max_total_bytes=1_000_000),
    )

    assert error.problems == ["It unpacks to 1.1 MB; at most 1,000,000 bytes are allowed."]


def test_bytes_are_counted_while_writing_not_taken_from_the_listing(tmp_path, monkeypatch):
    # Simulate an archive whose listing understates every size and a reader that trusts it.
    list_members = archive_module._zip_members

    def understated(archive, limits):
        listing = list_members(archive, limits)
        listing.members = [replace(member, declared_size=0) for member in listing.members]
        return listing

    monkeypatch.setattr(archive_module, "_zip_members", understated)
    data = zip_bytes([("small.txt", b"x"), ("bomb.txt", bytes(3 * 1024 * 1024))])

    error = refused(
        extract_zip,
        io.BytesIO(data),
        tmp_path / "dest",
        limits=ArchiveLimits(max_member_bytes=1024 * 1024),
    )

    assert error.problems == [
        "'bomb.txt' unpacks to more than 1.0 MB although the archive lists it as 0 bytes."
    ]


def test_zip_whose_declared_size_lies_is_refused(tmp_path):
    honest = zip_bytes([("bomb.txt", bytes(5 * 1024 * 1024))])
    lying = patch_zip_headers(honest, file_size=100)  # the listing claims 100 bytes

    error = refused(
        extract_zip,
        io.BytesIO(lying),
        tmp_path / "dest",
        limits=ArchiveLimits(max_member_bytes=1024 * 1024),
    )

    assert "'bomb.txt'" in error.problems[0]


def test_limits_must_be_positive_whole_numbers():
    with pytest.raises(ValueError):
        ArchiveLimits(max_members=0)


# --- damaged archives ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"this is not a zip file at all", zip_bytes([("a.txt", b"a" * 1000)])[:60], b""],
    ids=["garbage", "truncated", "empty"],
)
def test_damaged_zip_is_reported_as_corrupt(tmp_path, data):
    error = refused(extract_zip, io.BytesIO(data), tmp_path / "dest")

    assert isinstance(error, CorruptArchive)
    assert "not a readable zip archive" in error.problems[0]


def test_zip_with_bad_checksum_is_reported_as_corrupt(tmp_path):
    data = bytearray(zip_bytes([("a.txt", b"hello world, hello world")]))
    central = data.find(b"PK\x01\x02")
    data[central + 16] ^= 0xFF  # falsify the CRC-32 in the central directory

    error = refused(extract_zip, io.BytesIO(bytes(data)), tmp_path / "dest")

    assert isinstance(error, CorruptArchive)
    assert "checksum" in error.problems[0]


@pytest.mark.parametrize(
    "data",
    [b"not a tar", tar_bytes([tar_file("a.txt", os.urandom(4000))])[:-200]],
    ids=["garbage", "truncated"],
)
def test_damaged_tar_is_reported_as_corrupt(tmp_path, data):
    error = refused(extract_tar, io.BytesIO(data), tmp_path / "dest")

    assert isinstance(error, CorruptArchive)
    assert "\n-" not in str(error).split("\n", 2)[-1]  # one readable line per problem
