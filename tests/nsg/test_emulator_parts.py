"""The emulator's pieces without a server: zips, vparams, faults, forms, options."""

from __future__ import annotations

import argparse
import io
import stat
import tarfile
import zipfile

import pytest

from nsg_app.emulator.__main__ import add_arguments, config_from_options
from nsg_app.emulator.archives import ArchiveError, extract_single_folder_zip, write_output_tarball
from nsg_app.emulator.faults import FaultRegistry, parse_fault_option
from nsg_app.emulator.forms import FormError, parse_form
from nsg_app.emulator.tools import TOOLS, render_commandline, validate_vparams
from tests.nsg.packages import zip_bytes


def unpack(tmp_path, data: bytes) -> str:
    archive = tmp_path / "input.zip"
    archive.write_bytes(data)
    target = tmp_path / "out"
    target.mkdir()
    return extract_single_folder_zip(archive, target)


def test_unpacks_one_top_folder(tmp_path):
    top = unpack(tmp_path, zip_bytes({"W_1/init.py": "x", "W_1/config/a.json": "{}"}))
    assert top == "W_1"
    assert (tmp_path / "out/W_1/config/a.json").read_text() == "{}"


def test_ignores_macos_metadata_folder(tmp_path):
    assert unpack(tmp_path, zip_bytes({"W/init.py": "x", "__MACOSX/W/._init.py": "y"})) == "W"
    assert not (tmp_path / "out/__MACOSX").exists()


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"a/init.py": "x", "b/init.py": "x"}, "exactly one top-level folder"),
        ({"init.py": "x"}, "not the file"),
        ({"a/../../x": "x"}, "unsafe path"),
        ({"/etc/x": "x"}, "unsafe path"),
        ({"a\\..\\x": "x"}, "unsafe path"),
        ({"C:/x": "x"}, "unsafe path"),
        ({}, "found 0"),
    ],
)
def test_refuses_bad_layouts(tmp_path, files, reason):
    with pytest.raises(ArchiveError, match=reason):
        unpack(tmp_path, zip_bytes(files))


def test_refuses_links(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/init.py", "x")
        link = zipfile.ZipInfo("a/passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="link"):
        unpack(tmp_path, buffer.getvalue())


def test_refuses_oversized_archives(tmp_path):
    archive = tmp_path / "big.zip"
    archive.write_bytes(zip_bytes({"a/zeros": b"\0" * 10_000}))
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match="more than 1000 bytes"):
        extract_single_folder_zip(archive, tmp_path / "out", max_bytes=1000)


def test_output_tarball_members_start_with_dot_slash(tmp_path):
    (tmp_path / "run/top").mkdir(parents=True)
    (tmp_path / "run/stdout.txt").write_text("hi")
    (tmp_path / "run/top/result.txt").write_text("r")
    write_output_tarball(tmp_path / "run", tmp_path / "output.tar.gz")
    with tarfile.open(tmp_path / "output.tar.gz") as tar:
        assert tar.getnames() == [".", "./stdout.txt", "./top", "./top/result.txt"]


def test_vparam_defaults_and_limits():
    settings, errors = validate_vparams(TOOLS["BLUEPYOPT_EXPANSE"], {})
    assert errors == {}
    assert (settings.filename, settings.nodes, settings.runtime_hours) == ("init.py", 1, 0.5)
    assert settings.compile_mechanisms and settings.python_mode
    assert render_commandline(settings) == "inputfile python3 init.py"
    _, errors = validate_vparams(
        TOOLS["PY_EXPANSE"],
        {
            "runtime_": ["0.05"],
            "number_nodes_": ["two"],
            "filename_": ["../x.py"],
            "pythonoption_": ["yes"],
            "number_gbmemorypernode_": ["244"],
            "tasks_per_node_": ["1", "2"],
        },
    )
    assert errors == {
        "runtime_": "Maximum Hours to Run must be at least 0.1.",
        "number_nodes_": "Number of nodes must be a whole number.",
        "filename_": "Input filename must be a relative path inside the input folder.",
        "pythonoption_": "Run in Python mode must be 0 or 1.",
        "number_gbmemorypernode_": "Memory per node in GB must be less than 243.",
        "tasks_per_node_": "Tasks per node must be given once.",
    }


def test_neuron_tool_runs_hoc_with_nrniv():
    settings, _ = validate_vparams(
        TOOLS["NEURON_EXPANSE"], {"filename_": ["init.hoc"], "cmdlineopts_": ["-c TSTOP=1"]}
    )
    assert render_commandline(settings) == "inputfile nrniv -c TSTOP=1 init.hoc"
    assert not settings.compile_mechanisms
    settings, _ = validate_vparams(
        TOOLS["NEURON_EXPANSE"], {"filename_": ["init.py"], "nrnivmodl_o_": ["1"]}
    )
    assert render_commandline(settings) == "inputfile python3 init.py"
    assert settings.compile_mechanisms


def test_fault_options_and_counts():
    user, fault = parse_fault_option("alice:usage_limit:count=2,reset_minutes=5")
    assert (user, fault.kind, fault.count, fault.reset_minutes) == ("alice", "usage_limit", 2, 5)
    registry = FaultRegistry()
    registry.add(user, fault)
    assert registry.take("bob", "usage_limit") is None
    assert registry.take("alice", "usage_limit").count == 1
    assert registry.take("alice", "usage_limit") is not None
    assert registry.take("alice", "usage_limit") is None
    registry.add("alice", parse_fault_option("alice:http500")[1])
    assert all(registry.take("alice", "http500") for _ in range(5))  # no count: for ever
    for bad in ["alice", "alice:teapot", "alice:slow:delay", "alice:slow:count=0", "a:slow:x=1"]:
        with pytest.raises(ValueError):
            parse_fault_option(bad)


def test_multipart_form_keeps_binary_content_exact():
    payload = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n"
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="tool"\r\n\r\n'
        b"PY_EXPANSE\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="input.infile_"; filename="in.zip"\r\n'
        b"Content-Type: application/zip\r\n\r\n" + payload + b"\r\n"
        b"--XyZ--\r\n"
    )
    form = parse_form("multipart/form-data; boundary=XyZ", body)
    assert form.fields == [("tool", "PY_EXPANSE")]
    [(name, uploaded)] = form.files
    assert (name, uploaded.filename, uploaded.content) == ("input.infile_", "in.zip", payload)


def test_truncated_multipart_form_is_refused():
    body = b'--XyZ\r\nContent-Disposition: form-data; name="tool"\r\n\r\nPY'
    with pytest.raises(FormError, match="truncated"):
        parse_form("multipart/form-data; boundary=XyZ", body)


def test_command_line_options_build_the_configuration(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = vars(
        parser.parse_args(
            [
                "--user=alice:secret",
                "--user=bob:pw",
                "--appkey=K",
                "--port=0",
                f"--data-dir={tmp_path}",
                "--fault=alice:slow:delay=2",
            ]
        )
    )
    config = config_from_options(options)
    assert config.users == {"alice": "secret", "bob": "pw"}
    assert (config.port, config.data_dir, config.min_poll_seconds) == (0, tmp_path, 60)
    assert config.faults[0][1].delay == 2
    with pytest.raises(ValueError):
        config_from_options({**options, "user": ["alice"]})


def test_management_command_takes_the_same_options():
    pytest.importorskip("django")
    from nsg_app.management.commands.nsg_emulator import Command

    parser = Command().create_parser("manage.py", "nsg_emulator")
    options = vars(parser.parse_args(["--user=alice:secret", "--appkey=K", "--stage-seconds=0"]))
    assert config_from_options(options).stage_seconds == 0
