"""How much faster the local runner is on 2 cores than a plain serial ``opt_neuron.py --start``.

The demo model's 0.3 s evaluations are too short for a ratio to mean much, so the benchmark
builds a slower variant in a temporary folder: fixed time steps of 0.01 ms instead of CVode
(``opt_neuron.py`` creates its evaluator with ``cvode_active=False, dt=0.01``), about 1 s per
evaluation. Its run package (8 offspring, 4 generations: 32 evaluations; a real HBP run is
60 x 128) is run

1. serially, as a user would: ``python opt_neuron.py --start ...`` in the unpacked package,
   the mechanisms compiled beforehand (compile time is left out of both timings);
2. by ``run_package`` with ``cores=2``: unpacking, the mechanisms from the cache,
   ``init.py``, output.tar.gz, all timed;
3. by ``run_package`` with ``cores=1``, to tell the runner's fixed costs from the gain of
   the second core.

Runs (1) and (2) alternate twice and the fastest of each counts. Figures: the speed-up
(1) / (2), target at least 1.8; the share of run (2)'s wall time spent outside the
evaluations (start-up, preparation, generation bookkeeping, packing), target below 5 %,
split into the model's own start-up (which the serial run pays as well) and the runner's
part; and the evaluation phase alone, 1 core against 2. The same seed must give the same
logbook in every run. The machine's load average is printed: other work on a 2-core machine
takes a core away and the figures with it.

``sandboxes``: the local runs (2) are made once per sandbox mode, alternating, the first
mode giving the figures above; with ("bwrap", "off") (the default) the sandbox's cost on a
whole run and per evaluation is reported beside them, with the same logbook required.

Run: ``python -m bench.local_speedup`` or ``python bench/local_speedup.py`` (from the project).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models_app" / "demo" / "CA1_pyr_cACpyr_ballstick3_20261101120000"
RUN_NAME = "CA1_pyr_cACpyr_ballstick3_20260101000000"
SEED = "1"
SPEEDUP_TARGET = 1.8
OUTSIDE_TARGET = 0.05
_DEMO_EVALUATOR_CALL = "model.evaluator.create('CA1_PC_demo', cvode_active=True, dt=0.025)"


def main(
    *,
    offspring_size: int = 8,
    max_ngen: int = 4,
    dt: float = 0.01,
    cores: int = 2,
    repeats: int = 2,
    sandboxes: tuple[str, ...] = ("bwrap", "off"),
) -> dict:
    """Run the optimisations, print the figures and return them.

    The serial and the ``cores`` runs alternate ``repeats`` times and the fastest of each
    counts: on a shared machine, the least disturbed run is the best estimate.
    """
    if str(ROOT) not in sys.path:  # started as `python bench/local_speedup.py`
        sys.path.insert(0, str(ROOT))
    from models_app.bpo.mechanisms import compile_mechanisms
    from models_app.bpo.package import build_package

    with tempfile.TemporaryDirectory(prefix="local-speedup-") as temporary:
        base = Path(temporary)
        source = _slow_variant(base / "source" / DEMO.name, dt=dt)
        package = base / "package.zip"
        build_package(
            source, run_name=RUN_NAME, offspring_size=offspring_size, max_ngen=max_ngen, out=package
        )
        cache = base / "mechanisms-cache"
        compiled = compile_mechanisms(source / "mechanisms", cache_dir=cache)
        _warm_up_imports()
        # Other work on the machine takes cores from the runs: shown with the figures.
        load_before = os.getloadavg()[0]

        serial_runs = []
        by_sandbox: dict[str, list[_Timed]] = {mode: [] for mode in sandboxes}
        for attempt in range(repeats):
            serial_runs.append(
                _serial_run(package, base / f"serial-{attempt}", compiled, offspring_size, max_ngen)
            )
            for mode in sandboxes:
                by_sandbox[mode].append(
                    _local_run(package, base / f"local-{mode}-{attempt}", cache, cores, mode)
                )
        parallel_runs = by_sandbox[sandboxes[0]]
        single = _local_run(package, base / "local-one-core", cache, 1, sandboxes[0])
        every_run = [*serial_runs, *(run for runs in by_sandbox.values() for run in runs), single]
        logbooks = [run.logbook for run in every_run]
        same_logbook = all(logbook == logbooks[0] for logbook in logbooks)

    serial_seconds = min(run.seconds for run in serial_runs)
    parallel = min(parallel_runs, key=lambda run: run.seconds)
    progress = parallel.progress
    evaluations = progress.evaluations_done
    outside = parallel.seconds - progress.evaluation_seconds
    # From the runner's start to DEAPOptimisation.run: preparation, then two interpreters
    # (init.py, opt_neuron.py) importing NEURON and BluePyOpt and creating the evaluator,
    # which a plain serial run pays too.
    to_first_evaluation = (progress.evaluations_started_at - progress.started_at).total_seconds()
    model_startup = to_first_evaluation - parallel.result.preparation_seconds
    runner_overhead = outside - model_startup
    figures = {
        "evaluations": evaluations,
        "cores": cores,
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "serial_seconds": round(serial_seconds, 2),
        "serial_seconds_all": [round(run.seconds, 2) for run in serial_runs],
        "local_seconds": round(parallel.seconds, 2),
        "local_seconds_all": [round(run.seconds, 2) for run in parallel_runs],
        "local_one_core_seconds": round(single.seconds, 2),
        "speedup": round(serial_seconds / parallel.seconds, 3),
        "seconds_per_evaluation": round(single.progress.evaluation_seconds / evaluations, 3),
        "evaluation_seconds": round(progress.evaluation_seconds, 2),
        "evaluation_seconds_one_core": round(single.progress.evaluation_seconds, 2),
        "evaluation_speedup": round(
            single.progress.evaluation_seconds / progress.evaluation_seconds, 3
        ),
        "outside_evaluations_seconds": round(outside, 2),
        "outside_evaluations_fraction": round(outside / parallel.seconds, 4),
        "preparation_seconds": round(parallel.result.preparation_seconds, 2),
        "model_startup_seconds": round(model_startup, 2),
        "packing_seconds": round(
            parallel.seconds
            - parallel.result.preparation_seconds
            - parallel.result.process_seconds,
            2,
        ),
        "runner_overhead_seconds": round(runner_overhead, 2),
        "runner_overhead_fraction": round(runner_overhead / parallel.seconds, 4),
        "load_average_before": round(load_before, 2),
        "same_logbook": same_logbook,
        "sandbox": sandboxes[0],
        "by_sandbox": {
            mode: {
                "local_seconds": round(min(run.seconds for run in runs), 2),
                "seconds_per_evaluation": round(
                    min(run.progress.evaluation_seconds for run in runs) / evaluations, 4
                ),
                "preparation_seconds": round(
                    min(run.result.preparation_seconds for run in runs), 2
                ),
            }
            for mode, runs in by_sandbox.items()
        },
        "speedup_target_met": serial_seconds / parallel.seconds >= SPEEDUP_TARGET,
        "outside_target_met": outside / parallel.seconds < OUTSIDE_TARGET,
    }
    _print(figures, offspring_size=offspring_size, max_ngen=max_ngen, dt=dt)
    return figures


@dataclass(frozen=True)
class _Timed:
    seconds: float
    logbook: list[dict]
    result: object = None  # LocalRunResult of a local run
    progress: object = None  # its final Progress


def _serial_run(package: Path, folder: Path, compiled, offspring_size: int, max_ngen: int):
    """``python opt_neuron.py --start ...`` in the unpacked package, mechanisms installed."""
    from models_app.bpo.archive import extract_zip
    from models_app.bpo.mechanisms import install_mechanisms
    from models_app.bpo.package import optimisation_arguments

    run_folder = extract_zip(package, folder).path / RUN_NAME
    install_mechanisms(compiled, run_folder)
    arguments = optimisation_arguments(offspring_size=offspring_size, max_ngen=max_ngen)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=run_folder,
        env=_plain_environment(),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"the serial run failed:\n{completed.stderr[-3000:]}")
    return _Timed(seconds, _logbook(run_folder))


def _local_run(package: Path, work: Path, cache: Path, cores: int, sandbox: str = "bwrap"):
    """The same package through run_package, timed from the call to its return."""
    from models_app.bpo.sandbox import Sandbox
    from nsg_app.local import read_progress, run_package

    started = time.perf_counter()
    result = run_package(
        package,
        work,
        cores=cores,
        runtime_seconds=3600,
        mechanisms_cache=cache,
        progress_file=work / "progress.json",
        extra_env={"BLUEPYOPT_SEED": SEED},
        sandbox=Sandbox(sandbox),
    )
    seconds = time.perf_counter() - started
    if not result.succeeded:
        raise RuntimeError(f"the local run failed: {result.reason}\n{result.stderr_tail}")
    return _Timed(
        seconds, _logbook(result.run_folder), result, read_progress(work / "progress.json")
    )


def _slow_variant(folder: Path, *, dt: float) -> Path:
    """A copy of the demo whose evaluations take about 1 s (fixed steps instead of CVode)."""
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("x86_64", "__pycache__"))
    script = folder / "opt_neuron.py"
    text = script.read_text()
    if _DEMO_EVALUATOR_CALL not in text:
        raise RuntimeError("the demo's opt_neuron.py no longer creates its evaluator as expected")
    slow_call = f"model.evaluator.create('CA1_PC_demo', cvode_active=False, dt={dt})"
    script.write_text(text.replace(_DEMO_EVALUATOR_CALL, slow_call))
    return folder


def _plain_environment() -> dict[str, str]:
    env = dict(os.environ, BLUEPYOPT_SEED=SEED, MPLBACKEND="Agg")
    for name in ("USEIPYP", "PYTHONPATH", "REBUILD_LOCAL_CORES"):
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _warm_up_imports() -> None:
    """Load NEURON and BluePyOpt once, so that neither timed run pays for a cold disk cache."""
    subprocess.run(
        [sys.executable, "-c", "import neuron, bluepyopt, efel"],
        env=_plain_environment(),
        capture_output=True,
        check=True,
    )


def _logbook(run_folder: Path) -> list[dict]:
    with open(run_folder / "checkpoints" / "checkpoint.pkl", "rb") as file:
        return [dict(record) for record in pickle.load(file, encoding="latin1")["logbook"]]


def _print(figures: dict, *, offspring_size: int, max_ngen: int, dt: float) -> None:
    print(
        f"Local runner speed-up: demo model with fixed steps of {dt} ms, "
        f"{offspring_size} offspring x {max_ngen} generations = {figures['evaluations']} "
        f"evaluations of ~{figures['seconds_per_evaluation']} s, "
        f"{figures['cpu_count']} CPUs"
    )
    print(
        f"  plain serial opt_neuron.py   {figures['serial_seconds']:8.2f} s   "
        f"(fastest of {figures['serial_seconds_all']})"
    )
    print(f"  local runner, 1 core         {figures['local_one_core_seconds']:8.2f} s")
    print(
        f"  local runner, {figures['cores']} cores        {figures['local_seconds']:8.2f} s   "
        f"(fastest of {figures['local_seconds_all']})"
    )
    print(
        f"  speed-up                     {figures['speedup']:8.3f}   "
        f"(target >= {SPEEDUP_TARGET}: {'met' if figures['speedup_target_met'] else 'NOT met'})"
    )
    print(
        f"  evaluation phase alone       {figures['evaluation_speedup']:8.3f}x  "
        f"({figures['evaluation_seconds_one_core']} s on 1 core, "
        f"{figures['evaluation_seconds']} s on {figures['cores']})"
    )
    print(
        f"  outside the evaluations      {figures['outside_evaluations_seconds']:8.2f} s = "
        f"{figures['outside_evaluations_fraction']:.1%} of the run "
        f"(target < {OUTSIDE_TARGET:.0%}: "
        f"{'met' if figures['outside_target_met'] else 'NOT met'})"
    )
    print(
        f"    model start-up (interpreters, imports, evaluator; a serial run pays it too) "
        f"{figures['model_startup_seconds']} s"
    )
    print(
        f"    the runner's own: {figures['runner_overhead_seconds']} s = "
        f"{figures['runner_overhead_fraction']:.1%} (preparation "
        f"{figures['preparation_seconds']} s, packing {figures['packing_seconds']} s, the "
        "rest between generations and at exit)"
    )
    print(f"  same logbook in every run: {figures['same_logbook']}")
    print(f"  the runs above: sandbox {figures['sandbox']}")
    for mode, run in figures["by_sandbox"].items():
        print(
            f"  sandbox {mode:5s}  local runner, {figures['cores']} cores {run['local_seconds']:8.2f} s, "
            f"{run['seconds_per_evaluation']:.4f} s per evaluation, preparation "
            f"{run['preparation_seconds']} s"
        )
    modes = list(figures["by_sandbox"])
    if len(modes) > 1:
        first, second = (figures["by_sandbox"][mode] for mode in modes[:2])
        print(
            f"  {modes[0]} / {modes[1]}: whole run {first['local_seconds'] / second['local_seconds']:.3f}, "
            f"per evaluation "
            f"{first['seconds_per_evaluation'] / second['seconds_per_evaluation']:.3f}"
        )
    print(f"  load average before the runs: {figures['load_average_before']}")


if __name__ == "__main__":
    main()
