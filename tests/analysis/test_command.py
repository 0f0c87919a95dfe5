"""`manage.py analyse RESULT -o DIR`: the same engine, from the command line."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.fixtures.demo import DEMO_FOLDER

from .conftest import RUN_NAME, SEED1_STORED_FITNESS

pytestmark = pytest.mark.slow


def analyse(*args) -> str:
    out = StringIO()
    call_command("analyse", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_folder_is_analysed_with_a_summary(tmp_path):
    out = tmp_path / "analysis"
    printed = analyse(str(DEMO_FOLDER), "-o", str(out))
    document = json.loads((out / "analysis.json").read_text())
    fitness = document["individuals"][0]["fitness"]
    assert fitness["stored"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)
    assert "Checkpoint: seed1.pkl" in printed
    assert (
        f"Fitness of best: stored {fitness['stored']:.4f}, recomputed {fitness['recomputed']:.4f}"
        in printed
    )
    assert str(out / "cell_best.hoc") in printed
    assert (out / "cell_best.hoc").is_file()
    assert "Done: fitness" in printed  # the engine's progress, as it goes


def test_an_output_tarball_is_analysed(tmp_path, nsg_output):
    out = tmp_path / "analysis"
    printed = analyse(str(nsg_output), "-o", str(out), "--top", "2")
    document = json.loads((out / "analysis.json").read_text())
    assert document["source"]["kind"] == "nsg_output"
    assert document["model"]["name"] == RUN_NAME
    assert "Fitness of top2" in printed
    assert (out / "traces" / "top2").is_dir()


def test_a_stored_result_is_analysed_by_job_id_or_storage_prefix(
    tmp_path, alice, collected_job, nsg_output
):
    job = collected_job(alice, nsg_output)
    printed = analyse(f"job:{job.pk}", "-o", str(tmp_path / "by_id"))
    assert f"Copying {job.results_prefix}/output.tar.gz out of storage" in printed
    assert (tmp_path / "by_id" / "analysis.json").is_file()
    analyse(job.results_prefix, "-o", str(tmp_path / "by_prefix"))
    assert (tmp_path / "by_prefix" / "analysis.json").is_file()


def test_bad_results_are_refused_clearly(tmp_path, db, escaping_tarball):
    with pytest.raises(CommandError, match="neither a local folder"):
        analyse("job:424242", "-o", str(tmp_path / "a"))
    with pytest.raises(CommandError, match=r"failed \(unsafe_archive\)"):
        analyse(str(escaping_tarball), "-o", str(tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "error.json").read_text())["kind"] == "unsafe_archive"
    analyse(str(DEMO_FOLDER), "-o", str(tmp_path / "c"))
    with pytest.raises(CommandError, match="already holds an analysis"):
        analyse(str(DEMO_FOLDER), "-o", str(tmp_path / "c"))
    with pytest.raises(CommandError, match="--top"):
        analyse(str(DEMO_FOLDER), "-o", str(tmp_path / "d"), "--top", "0")
