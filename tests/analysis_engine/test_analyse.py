"""Analyses of the demo model through its own evaluator, in a process of their own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from analysis_app.engine import AnalysisError, analyse, read_progress
from analysis_app.engine.sources import prepare_run
from analysis_app.engine.traces import read_trace_csv
from tests.fixtures.processes import alive, command_line, descendants

from .conftest import KEY, ROOT, RUN_NAME, SEED1_STORED_FITNESS, copy_demo, run_environment

pytestmark = pytest.mark.slow

RECORDINGS = {
    "bAP.soma.v",
    "bAP.dend150.v",
    "bAP.dend250.v",
    "step_-0.1.soma.v",
    "step_0.5.soma.v",
}


def test_catalogue_model_recomputes_its_stored_fitness(catalogue_analysis):
    analysis = catalogue_analysis.analysis
    assert analysis["model"]["key"] == KEY
    assert analysis["checkpoint"]["name"] == "seed1.pkl"
    assert analysis["source"]["kind"] == "folder"
    fitness = catalogue_analysis.best["fitness"]
    assert fitness["stored"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)
    assert fitness["recomputed"] == pytest.approx(fitness["stored"], rel=1e-3)
    assert not fitness["large_difference"]
    objectives = catalogue_analysis.best["objectives"]
    assert len(objectives) == 8
    for objective in objectives:
        assert objective["score"] == pytest.approx(objective["stored_score"], rel=1e-3, abs=1e-6)
    assert sum(o["score"] for o in objectives) == pytest.approx(fitness["recomputed"])
    # the legacy replace_axon signature was fixed in the copy that ran, and said so
    assert [fix["id"] for fix in analysis["model"]["fixes"]] == ["replace-axon-kwargs"]
    assert set(analysis["software"]) >= {"neuron", "bluepyopt", "efel"}


def test_outputs_hold_hoc_traces_and_morphology(catalogue_analysis):
    out = catalogue_analysis.out_dir
    assert f"begintemplate {KEY}" in (out / "cell_best.hoc").read_text()
    traces = catalogue_analysis.best["traces"]
    assert {trace["name"] for trace in traces} == RECORDINGS
    for trace in traces:
        time_values, voltage = read_trace_csv(out / trace["csv"])
        assert len(time_values) == trace["points"] >= len(trace["time"])
        assert len(trace["time"]) <= 2000
        # the light copy keeps the trace's extremes (the spikes' peaks)
        assert max(trace["voltage"]) == pytest.approx(voltage.max(), abs=1e-3)
        assert np.all(np.diff(time_values) >= 0)
    assert catalogue_analysis.morphology_path.read_bytes().startswith(b"# ballstick3.swc")
    on_disk = json.loads(catalogue_analysis.analysis_file.read_text())
    assert on_disk["individuals"][0]["fitness"] == catalogue_analysis.best["fitness"]


def test_parameters_and_stimuli_come_from_the_evaluator(catalogue_analysis):
    parameters = catalogue_analysis.best["parameters"]
    assert len(parameters) == 9
    for row in parameters:
        assert row["lower"] <= row["value"] <= row["upper"]
        assert 0 <= row["position"] <= 1
    protocols = {p["name"]: p for p in catalogue_analysis.analysis["protocols"]}
    assert set(protocols) == {"bAP", "step_-0.1", "step_0.5"}
    step = protocols["step_0.5"]["stimuli"][0]
    assert step["settings"]["step_amplitude"] == 0.5
    assert [0.0, 0.0] in step["envelope"]


def test_progress_ends_done_with_every_protocol(catalogue_analysis):
    progress = read_progress(catalogue_analysis.out_dir.parent / "progress.json")
    assert progress["stage"] == "done"
    assert progress["protocols_done"] == progress["protocols_total"] == 3


def test_nsg_output_tarball_is_analysed(nsg_analysis):
    analysis = nsg_analysis.analysis
    assert analysis["source"]["kind"] == "nsg_output"
    assert analysis["source"]["run_folder"] == RUN_NAME
    assert analysis["source"]["skipped_links"] >= 1
    assert analysis["checkpoint"]["name"] == "checkpoint.pkl"
    assert [row["gen"] for row in analysis["logbook"]] == [1, 2]
    assert [individual["label"] for individual in analysis["individuals"]] == ["best", "top2"]
    for individual in analysis["individuals"]:
        assert (nsg_analysis.out_dir / individual["hoc_file"]).is_file()
        assert individual["fitness"]["recomputed"] == pytest.approx(
            individual["fitness"]["stored"], rel=1e-3
        )
    assert (nsg_analysis.out_dir / "traces" / "top2" / "step_0.5.soma.v.csv").is_file()
    assert len(analysis["timings"]["protocols"]) == 6


def test_a_zip_of_nsg_results_is_unpacked_to_its_run_folder(nsg_output, tmp_path):
    results = tmp_path / "results.zip"
    with zipfile.ZipFile(results, "w") as archive:
        archive.writestr("STDOUT", "stdout of the job\n")
        archive.writestr("STDERR", "")
        archive.write(nsg_output, "output.tar.gz")
    prepared = prepare_run(results, tmp_path / "work")
    assert prepared.source["kind"] == "nsg_results_zip"
    assert prepared.source["run_folder"] == RUN_NAME
    assert prepared.checkpoint.name == "checkpoint.pkl"
    assert prepared.optimisation.key == KEY


def test_second_analysis_reuses_the_compiled_mechanisms(catalogue_analysis, nsg_analysis):
    assert not catalogue_analysis.mechanisms_from_cache
    assert nsg_analysis.mechanisms_from_cache
    assert (
        catalogue_analysis.analysis["mechanisms"]["digest"]
        == nsg_analysis.analysis["mechanisms"]["digest"]
    )
    assert nsg_analysis.analysis["timings"]["compiling"] < 1.0


def test_model_code_that_raises_is_reported_with_its_traceback(tmp_path, mechanisms_cache):
    folder = copy_demo(tmp_path)
    evaluator = folder / "model" / "evaluator.py"
    evaluator.write_text(
        evaluator.read_text().replace(
            '    """Create the cell evaluator"""\n',
            '    """Create the cell evaluator"""\n    raise RuntimeError("broken on purpose")\n',
        )
    )
    progress = tmp_path / "progress.json"
    with pytest.raises(AnalysisError) as raised:
        analyse(folder, tmp_path / "out", mechanisms_cache=mechanisms_cache, progress_file=progress)
    error = raised.value
    assert error.kind == "model_error"
    assert "broken on purpose" in error.message
    assert "evaluator.py" in error.details["traceback"]
    assert "RuntimeError: broken on purpose" in error.details["traceback"]
    assert read_progress(progress)["stage"] == "failed"
    assert not (tmp_path / "out" / "analysis.json").exists()


def test_a_truncated_checkpoint_is_reported(tmp_path, mechanisms_cache):
    folder = copy_demo(tmp_path)
    checkpoint = folder / "checkpoints" / "seed1.pkl"
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    with pytest.raises(AnalysisError) as raised:
        analyse(folder, tmp_path / "out", mechanisms_cache=mechanisms_cache)
    assert raised.value.kind == "checkpoint_unreadable"
    assert "seed1.pkl" in raised.value.message and "truncated" in raised.value.message


def test_a_protocol_that_fails_is_reported_with_its_traceback(tmp_path, mechanisms_cache):
    folder = copy_demo(tmp_path)
    evaluator = folder / "model" / "evaluator.py"
    # the stimuli are placed on somatic[5], which the cell does not have
    evaluator.write_text(evaluator.read_text().replace("sec_index=0,", "sec_index=5,"))
    with pytest.raises(AnalysisError) as raised:
        analyse(folder, tmp_path / "out", mechanisms_cache=mechanisms_cache)
    assert raised.value.kind == "model_error"
    assert raised.value.details["protocol"] in {"bAP", "step_-0.1", "step_0.5"}
    assert "section index 5" in raised.value.message
    assert "section index 5" in raised.value.details["traceback"]


def test_a_recording_without_response_is_flagged(tmp_path, mechanisms_cache):
    folder = copy_demo(tmp_path)
    protocols = folder / "config" / "protocols.json"
    # 5 mm from the soma of a 340 um dendrite: BluePyOpt records nothing there
    protocols.write_text(
        protocols.read_text().replace('"somadistance": 250', '"somadistance": 5000')
    )
    result = analyse(folder, tmp_path / "out", mechanisms_cache=mechanisms_cache)
    traces = {trace["name"]: trace for trace in result.best["traces"]}
    assert traces["bAP.dend250.v"]["failed"]
    scores = {objective["name"]: objective["score"] for objective in result.best["objectives"]}
    assert scores["bAP.dend250.AP1_amp"] == 250
    assert result.best["fitness"]["large_difference"]
    assert "efel" in result.best["fitness"]["note"]
    assert any("bAP.dend250.v" in warning for warning in result.analysis["warnings"])


def test_mechanisms_that_do_not_compile_are_reported_with_the_log(tmp_path, mechanisms_cache):
    folder = copy_demo(tmp_path)
    (folder / "mechanisms" / "broken.mod").write_text("NEURON { SUFFIX broken\nTHIS IS NOT NMODL\n")
    with pytest.raises(AnalysisError) as raised:
        analyse(folder, tmp_path / "out", mechanisms_cache=mechanisms_cache)
    assert raised.value.kind == "mechanisms"
    assert "broken" in raised.value.details["log"]
    assert raised.value.details["problems"]


def test_legacy_create_signature_gets_opt_neuron_arguments(tmp_path, mechanisms_cache):
    folder = copy_demo(tmp_path)
    evaluator = folder / "model" / "evaluator.py"
    evaluator.write_text(
        evaluator.read_text().replace(
            "def create(etype, cvode_active=True, dt=0.025, cvode_minstep=None):\n"
            '    """Create the cell evaluator"""\n',
            "def create(etype, feature_set, cvode_active=True, dt=0.025, cvode_minstep=None):\n"
            '    """Create the cell evaluator"""\n'
            "    assert feature_set == 'all'\n",
        )
    )
    script = folder / "opt_neuron.py"
    script.write_text(
        script.read_text().replace(
            "model.evaluator.create('CA1_PC_demo', cvode_active=True, dt=0.025)",
            "model.evaluator.create('CA1_PC_demo', 'all', cvode_active=True, dt=0.025)",
        )
    )
    result = analyse(folder, tmp_path / "out", mechanisms_cache=mechanisms_cache)
    assert result.analysis["evaluator"]["create_arguments"] == {
        "args": ["all"],
        "kwargs": {"cvode_active": True, "dt": 0.025},
        "imports": ["model.evaluator"],
    }
    assert result.best["fitness"]["recomputed"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)


def test_cli_time_limit_kills_the_simulation(tmp_path, mechanisms_cache):
    folder = copy_demo(tmp_path)
    evaluator = folder / "model" / "evaluator.py"
    # The model's code starts a process of its own and sleeps: both must go at the limit.
    token = f"sleeper-{tmp_path.name}"
    evaluator.write_text(
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {token!r}])\n"
        "time.sleep(120)\n" + evaluator.read_text()
    )
    out = tmp_path / "out"
    started = time.monotonic()
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analysis_app.engine",
            str(folder),
            "-o",
            str(out),
            "--mechanisms-cache",
            str(mechanisms_cache),
            "--timeout",
            # Long enough for the simulation to start on a loaded 2-core machine.
            "25",
        ],
        cwd=ROOT,
        env=run_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tree: dict[int, str] = {}  # every process the analysis started, seen while it ran
    while engine.poll() is None and time.monotonic() - started < 120:
        tree.update({pid: command_line(pid) for pid in descendants(engine.pid)})
        time.sleep(0.1)
    engine.wait(timeout=10)

    assert engine.returncode != 0
    assert time.monotonic() - started < 60
    error = json.loads((out / "error.json").read_text())
    assert error["kind"] == "timeout"
    assert re.search(r"time limit of 25 s", error["message"])
    # The sandboxed simulation ran (and its sleeper too, if the model's code was reached in
    # time on a loaded machine): nothing of it is left.
    assert any("analysis_app.engine.simulation" in line for line in tree.values())
    assert [pid for pid in tree if alive(pid)] == []


@pytest.mark.parametrize("init_file", [None, ""], ids=["namespace-package", "empty-init"])
def test_a_model_that_works_only_through_opt_neuron_imports_is_analysed(
    tmp_path, mechanisms_cache, init_file
):
    """The HBP family's quirk: model/evaluator.py does `import model` and calls
    `model.template.create`, which exists only because opt_neuron.py imported
    model.template first; model/ has no __init__.py or an empty one."""
    folder = copy_demo(tmp_path)
    init = folder / "model" / "__init__.py"
    init.unlink()
    if init_file is not None:
        init.write_text(init_file)
    evaluator = folder / "model" / "evaluator.py"
    source = evaluator.read_text()
    assert "from . import template\n" in source and "template.create(etype)" in source
    evaluator.write_text(
        source.replace("from . import template\n", "import model  # NOQA\n")
        .replace("template.load_config(", "model.template.load_config(")
        .replace("cell = template.create(etype)", "cell = model.template.create(etype)")
    )
    script = folder / "opt_neuron.py"
    script.write_text(
        script.read_text().replace(
            "import model.evaluator\n",
            "from model.evaluator import *\nfrom model.template import *\n"
            "from model.analysis import *\n",
        )
    )
    result = analyse(folder, tmp_path / "out", mechanisms_cache=mechanisms_cache)
    assert result.analysis["evaluator"]["create_arguments"]["imports"] == [
        "model.evaluator",
        "model.template",
        "model.analysis",
    ]
    assert result.best["fitness"]["recomputed"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)


def test_the_engine_and_its_simulation_die_with_a_killed_worker(tmp_path, mechanisms_cache):
    """A Celery worker SIGKILLed mid-analysis: the sweep gives the analysis to another
    worker, so nothing of the old one's engine (a session of its own) may run on."""
    folder = copy_demo(tmp_path)
    evaluator = folder / "model" / "evaluator.py"
    evaluator.write_text("import time\ntime.sleep(120)\n" + evaluator.read_text())
    work = tmp_path / "work"
    work.mkdir()
    # The worker: run_engine, as the analysis task calls it, with a time limit far away.
    worker_code = (
        "import sys; from pathlib import Path\n"
        "from analysis_app.engine_process import run_engine\n"
        "w = Path(sys.argv[2])\n"
        "run_engine(source=Path(sys.argv[1]), out_dir=w / 'out', progress_file=w / "
        "'progress.json', mechanisms_cache=Path(sys.argv[3]), timeout=300, work_dir=w, "
        "max_unpacked_bytes=2**30)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", worker_code, str(folder), str(work), str(mechanisms_cache)],
        cwd=ROOT,
        env={**run_environment(), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(
            "analysis_app.engine.simulation" in command_line(pid) for pid in descendants(worker.pid)
        ):
            assert worker.poll() is None and time.monotonic() < deadline, "no simulation began"
            time.sleep(0.1)
        tree = {pid: command_line(pid) for pid in descendants(worker.pid)}
    finally:
        worker.kill()
        worker.wait()
    deadline = time.monotonic() + 10
    while left := [pid for pid in tree if alive(pid)]:
        assert time.monotonic() < deadline, [tree[pid][:120] for pid in left]
        time.sleep(0.1)
