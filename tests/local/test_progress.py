"""The progress file: tolerant reading, time left, the runner's phases, the terminal line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nsg_app.local.cli import progress_line
from nsg_app.local.inject.rebuild_local_optimisation import (
    ProgressRecorder,
    progress_document,
)
from nsg_app.local.progress import (
    Progress,
    estimate_time_left,
    read_progress,
    remove_stale_temporaries,
    write_runner_phase,
)

START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def running(**changes) -> Progress:
    values = dict(
        phase="running",
        started_at=START,
        updated_at=START + timedelta(seconds=30),
        evaluations_started_at=START + timedelta(seconds=10),
        generation=1,
        max_ngen=3,
        offspring_size=10,
        evaluations_done=10,
        evaluations_expected=30,
        best=3.5,
    )
    values.update(changes)
    return Progress(**values)


def test_a_missing_file_reads_as_none(tmp_path):
    assert read_progress(tmp_path / "progress.json") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"format": 1, "phase": "runn',  # cut short
        "[1, 2]",
        '{"phase": "running"}',
        '{"phase": "dancing", "started_at": "2026-01-01T00:00:00+00:00", '
        '"updated_at": "2026-01-01T00:00:00+00:00"}',
        '{"phase": "running", "started_at": "2026-01-01T00:00:00+00:00", '
        '"updated_at": "2026-01-01T00:00:00+00:00", "evaluations_done": "many"}',
    ],
)
def test_a_half_written_or_foreign_file_reads_as_none(tmp_path, text):
    path = tmp_path / "progress.json"
    path.write_text(text)
    assert read_progress(path) is None


def test_the_recorder_writes_what_read_progress_reads(tmp_path):
    path = tmp_path / "progress.json"
    recorder = ProgressRecorder(str(path), cores=2, started_at=START.isoformat())
    recorder.run_started(max_ngen=3, offspring_size=4, continue_cp=False)
    recorder.map_started()
    recorder.evaluation_done()
    progress = read_progress(path)
    assert progress.phase == "running" and progress.cores == 2
    assert (progress.evaluations_done, progress.evaluations_in_generation) == (1, 1)
    assert progress.evaluations_expected == 12
    for _ in range(3):
        recorder.evaluation_done()
    recorder.map_finished()
    recorder.generation_recorded(
        {"gen": 1, "nevals": 4, "avg": 2.5, "std": 0.5, "min": 1.25, "max": float("nan")}
    )
    progress = read_progress(path)
    assert progress.generation == 1
    assert (progress.best, progress.average, progress.std) == (1.25, 2.5, 0.5)
    assert progress.worst is None  # NaN is not JSON
    assert progress.evaluations_in_generation == 0 and progress.evaluations_done == 4
    assert progress.fraction_done == pytest.approx(4 / 12)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_continued_run_learns_its_expected_evaluations_at_the_first_record(tmp_path):
    recorder = ProgressRecorder(str(tmp_path / "p.json"), cores=1, started_at=START.isoformat())
    recorder.run_started(max_ngen=5, offspring_size=4, continue_cp=True)
    assert recorder.document["evaluations_expected"] is None
    for _ in range(4):
        recorder.evaluation_done()
    recorder.generation_recorded({"gen": 3, "min": 1.0, "avg": 2.0, "std": 0.1, "max": 3.0})
    assert recorder.document["evaluations_expected"] == 4 + 2 * 4


def test_the_runner_phase_keeps_the_optimisation_figures(tmp_path):
    path = tmp_path / "progress.json"
    document = progress_document(cores=2, started_at=START.isoformat())
    document.update(generation=2, evaluations_done=8, best=1.5)
    path.write_text(json.dumps(document))
    write_runner_phase(
        path, phase="completed", message="done", started_at=START.isoformat(), cores=2
    )
    progress = read_progress(path)
    assert (progress.phase, progress.message) == ("completed", "done")
    assert (progress.generation, progress.evaluations_done, progress.best) == (2, 8, 1.5)
    assert progress.finished and progress.fraction_done == 1.0


def test_a_previous_runs_figures_are_not_kept(tmp_path):
    path = tmp_path / "progress.json"
    old = progress_document(cores=2, started_at="2025-01-01T00:00:00+00:00")
    old.update(generation=9)
    path.write_text(json.dumps(old))
    write_runner_phase(path, phase="preparing", message="", started_at=START.isoformat(), cores=1)
    assert read_progress(path).generation == 0


def test_stale_temporaries_are_removed(tmp_path):
    path = tmp_path / "progress.json"
    (tmp_path / ".progress.json.1234.tmp").write_text("{")
    (tmp_path / "other.tmp").write_text("kept")
    remove_stale_temporaries(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.tmp"]


def test_time_left_follows_the_pace_of_the_evaluations():
    # 10 evaluations in 20 s: 20 more take 40 s, 5 of which have passed since the update.
    progress = running()
    left = estimate_time_left(progress, progress.updated_at + timedelta(seconds=5))
    assert left == timedelta(seconds=35)


def test_time_left_is_unknown_before_the_first_evaluation_and_zero_at_the_end():
    assert estimate_time_left(running(evaluations_done=0), START) is None
    assert estimate_time_left(running(evaluations_expected=None), START) is None
    assert estimate_time_left(running(phase="failed"), START) == timedelta(0)
    overdue = running()
    assert estimate_time_left(overdue, overdue.updated_at + timedelta(hours=1)) == timedelta(0)


def test_the_terminal_line_shows_generation_evaluations_best_and_times():
    progress = running()
    line = progress_line(
        progress, elapsed_seconds=75, now=progress.updated_at + timedelta(seconds=5)
    )
    assert line == (
        "[#######.............] | gen 1/3 | evals 10/30 | best 3.5 | elapsed 0:01:15 "
        "| left ~0:00:35"
    )
    assert progress_line(None, elapsed_seconds=1) == "starting | elapsed 0:00:01"
    preparing = running(phase="preparing", message="Compiling the mechanisms")
    assert progress_line(preparing, elapsed_seconds=2).startswith(
        "preparing: Compiling the mechanisms"
    )


def test_progress_line_ends_with_the_final_phase():
    line = progress_line(running(phase="time_limit"), elapsed_seconds=3)
    assert line.endswith("| time_limit")


def test_read_progress_accepts_a_path_string(tmp_path: Path):
    path = tmp_path / "progress.json"
    path.write_text(json.dumps(progress_document(cores=1, started_at=START.isoformat())))
    assert read_progress(str(path)).started_at == START


def test_each_engine_s_evaluations_and_the_lost_engines_are_read_back(tmp_path):
    path = tmp_path / "progress.json"
    recorder = ProgressRecorder(str(path), cores=2, started_at=START.isoformat())
    recorder.engine_evaluations([0, 1, 1, 0, 1])
    recorder.engine_lost(0)
    recorder.engine_evaluations([1, 1])
    progress = read_progress(path)
    assert progress.engines == {0: 2, 1: 5}
    assert progress.engines_lost == (0,)


def test_engine_figures_the_run_wrote_badly_are_left_out_not_the_whole_file(tmp_path):
    # The run's own process (the model's code among it) writes the file.
    path = tmp_path / "progress.json"
    document = progress_document(cores=2, started_at=START.isoformat())
    document["evaluations_done"] = 4
    document["engines"] = {"0": 3, "one": 1, "2": -1, "3": "x", "4": 1}
    document["engines_lost"] = ["4", None, -2, "..", 7]
    path.write_text(json.dumps(document))
    progress = read_progress(path)
    assert progress.evaluations_done == 4
    assert progress.engines == {0: 3, 4: 1}
    assert progress.engines_lost == (4, 7)
    document["engines"] = ["not", "a", "mapping"]
    path.write_text(json.dumps(document))
    assert read_progress(path).engines == {}
