"""Sources that cannot be analysed fail early, with a reason, before NEURON is involved."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from analysis_app.engine import AnalysisError, analyse, read_progress
from analysis_app.engine.sources import choose_checkpoint, prepare_run
from models_app.bpo.archive import ArchiveLimits

from .conftest import ROOT, copy_demo, pack_nsg_output, unpacked_package


def tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def failure(source: Path, tmp_path: Path, **options) -> AnalysisError:
    with pytest.raises(AnalysisError) as raised:
        analyse(source, tmp_path / "out", mechanisms_cache=tmp_path / "cache", **options)
    return raised.value


def test_path_escape_in_the_tarball_is_refused(tmp_path):
    source = tar_with(tmp_path / "output.tar.gz", {"./job/ok.txt": b"1", "../evil.txt": b"2"})
    error = failure(source, tmp_path)
    assert error.kind == "unsafe_archive"
    assert any("goes up" in problem for problem in error.details["problems"])
    assert not (tmp_path / "evil.txt").exists()


def test_path_escape_in_a_results_zip_is_refused(tmp_path):
    source = tmp_path / "results.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("STDOUT", "")
        archive.writestr("/etc/evil", "x")
    error = failure(source, tmp_path)
    assert error.kind == "unsafe_archive"
    assert any("absolute" in problem for problem in error.details["problems"])


def test_too_big_a_tarball_is_refused(tmp_path):
    source = tar_with(tmp_path / "output.tar.gz", {"./job/big.bin": b"0" * 5000})
    error = failure(source, tmp_path, limits=ArchiveLimits(max_total_bytes=1000))
    assert error.kind == "unsafe_archive"
    assert any("at most" in problem for problem in error.details["problems"])


def test_a_damaged_tarball_is_reported(tmp_path):
    source = tmp_path / "output.tar.gz"
    source.write_bytes(b"\x1f\x8b this is not really gzip")
    progress = tmp_path / "progress.json"
    error = failure(source, tmp_path, progress_file=progress)
    assert error.kind == "corrupt_archive"
    assert error.details["problems"]
    assert read_progress(progress)["stage"] == "failed"
    assert read_progress(progress)["error_kind"] == "corrupt_archive"


def test_an_archive_without_an_optimisation_is_reported(tmp_path):
    source = tar_with(tmp_path / "output.tar.gz", {"./stdout.txt": b"hello", "./x/y.txt": b"1"})
    error = failure(source, tmp_path)
    assert error.kind == "no_run_folder"
    assert "opt_neuron.py" in error.message


def test_a_missing_source_is_reported(tmp_path):
    assert failure(tmp_path / "nothing.tar.gz", tmp_path).kind == "invalid_source"


def test_a_missing_checkpoint_says_why_it_is_often_missing(tmp_path):
    folder = copy_demo(tmp_path, checkpoints=False)
    error = failure(folder, tmp_path)
    assert error.kind == "no_checkpoint"
    assert "runtime was too short" in error.message
    assert "max_ngen" in error.message
    assert error.details["checkpoints_folder"] == ["cell_seed1_0.hoc"]


def test_a_one_generation_run_is_named_as_the_cause(tmp_path):
    run_folder = unpacked_package(tmp_path, max_ngen=1)
    source = pack_nsg_output(run_folder.parent, tmp_path / "output.tar.gz")
    error = failure(source, tmp_path)
    assert error.kind == "no_checkpoint"
    assert "asked for 1 generation" in error.message


def test_a_job_stopped_by_its_time_limit_is_named_as_the_cause(tmp_path):
    run_folder = unpacked_package(tmp_path)
    (run_folder.parent / "stderr.txt").write_text(
        "slurmstepd: error: *** JOB 1 ON exp-1 CANCELLED AT 2026 DUE TO TIME LIMIT ***\n"
    )
    source = pack_nsg_output(run_folder.parent, tmp_path / "output.tar.gz")
    error = failure(source, tmp_path)
    assert error.kind == "no_checkpoint"
    assert "time limit" in error.message
    assert "TIME LIMIT" in error.details["job_errors"]["stderr.txt"]


def test_a_named_checkpoint_must_exist(tmp_path):
    folder = copy_demo(tmp_path)
    error = failure(folder, tmp_path, checkpoint="seed7")
    assert error.kind == "no_checkpoint"
    assert error.details["available"] == ["seed1.pkl"]


def test_checkpoint_choice_leaves_several_to_the_stored_fitness(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name in ("seed1.pkl", "seed2.pkl", "checkpoint.pkl.tmp"):
        (checkpoints / name).write_bytes(b"")
    os.utime(checkpoints / "seed2.pkl", (1, 1))
    assert choose_checkpoint(tmp_path) == (None, "")
    assert choose_checkpoint(tmp_path, preferred="seed2.pkl") == (
        checkpoints / "seed2.pkl",
        "best_run",
    )
    assert choose_checkpoint(tmp_path, preferred="seed9.pkl") == (None, "")
    assert choose_checkpoint(tmp_path, name="seed2") == (checkpoints / "seed2.pkl", "name")
    (checkpoints / "seed1.pkl").unlink()
    assert choose_checkpoint(tmp_path) == (checkpoints / "seed2.pkl", "only")


def test_a_folder_is_copied_never_changed(tmp_path):
    folder = copy_demo(tmp_path)
    before = (folder / "model" / "template.py").read_text()
    prepared = prepare_run(folder, tmp_path / "work")
    assert prepared.run_folder != folder
    assert prepared.checkpoint.name == "seed1.pkl"
    assert (folder / "model" / "template.py").read_text() == before


def test_the_cli_writes_the_failure_as_error_json(tmp_path):
    folder = copy_demo(tmp_path, checkpoints=False)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "analysis_app.engine", str(folder), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    error = json.loads((out / "error.json").read_text())
    assert error["kind"] == "no_checkpoint"
    assert error["message"] in result.stderr


def test_an_existing_analysis_is_never_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "analysis.json").write_text("{}")
    error = failure(copy_demo(tmp_path), tmp_path)
    assert error.kind == "output_exists"
    assert (out / "analysis.json").read_text() == "{}"
