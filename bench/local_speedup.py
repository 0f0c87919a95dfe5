"""How much faster the local runner is on 2 cores than a plain serial ``opt_neuron.py --start``.

Models (``main(model=...)``):

- ``demo``: the demo model's 0.3 s evaluations are too short for a ratio to mean much, so
  the benchmark builds a slower variant in a temporary folder: fixed time steps of 0.01 ms
  instead of CVode (``opt_neuron.py`` creates its evaluator with ``cvode_active=False,
  dt=0.01``), about 1 s per evaluation; 8 offspring x 4 generations = 32 evaluations (a real
  HBP run is 60 x 128).
- ``reference``: the real HBP CA1 model (../shared/reference/models, or ``$MODELS``) as it
  is, 10-25 s per evaluation: 4 offspring x 2 generations = 8 evaluations, one repeat and
  no 1-core run by default (the serial run alone takes minutes).

The model's run package, built by ``build_package`` (with the known fixes it applies), is run

1. serially, as a user would: ``python opt_neuron.py --start ...`` in the unpacked package,
   the mechanisms compiled beforehand (compile time is left out of both timings);
2. by ``run_package`` with ``cores=2``: unpacking, the mechanisms from the cache,
   ``init.py``, output.tar.gz, all timed;
3. by ``run_package`` with ``cores=1``, to tell the runner's fixed costs from the gain of
   the second core.

Runs (1) and (2) alternate ``repeats`` times and the fastest of each counts; run (3) is
optional (``one_core``). Figures: the speed-up
(1) / (2), target at least 1.8; the share of run (2)'s wall time spent outside the
evaluations (start-up, preparation, generation bookkeeping, packing), target below 5 %,
split into the model's own start-up (which the serial run pays as well) and the runner's
part; and the evaluation phase alone, 1 core against 2. The same seed must give the same
logbook in every run. The machine's load average is printed: other work on a 2-core machine
takes a core away and the figures with it.

Run: ``python -m bench local_speedup`` / ``python -m bench local_speedup_reference``
(``BENCH_REPEATS=N``), or ``python -m bench.local_speedup [demo|reference]``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models import DEMO, SEED, copy_model, model_folder, script_environment

SPEEDUP_TARGET = 1.8
OUTSIDE_TARGET = 0.05
DEMO_DT = 0.01
_DEMO_EVALUATOR_CALL = "model.evaluator.create('CA1_PC_demo', cvode_active=True, dt=0.025)"


@dataclass(frozen=True)
class _Case:
    """One model's run: what is packaged, and the defaults of its settings."""

    description: str
    source: Callable[[Path], Path]  # scratch folder -> the model folder to package
    run_name: str
    offspring_size: int
    max_ngen: int
    repeats: int
    one_core: bool


CASES = {
    "demo": _Case(
        description=f"demo model with fixed steps of {DEMO_DT} ms",
        source=lambda scratch: _slow_variant(scratch / DEMO.name, dt=DEMO_DT),
        run_name="CA1_pyr_cACpyr_ballstick3_20260101000000",
        offspring_size=8,
        max_ngen=4,
        repeats=2,
        one_core=True,
    ),
    "reference": _Case(
        description="reference model W_20230711100058 as it is (CVode)",
        source=lambda scratch: copy_model(
            model_folder("reference"), scratch / model_folder("reference").name
        ),
        run_name="W_20260101000000",
        offspring_size=4,
        max_ngen=2,
        repeats=1,
        one_core=False,
    ),
}


def main(
    model: str = "demo",
    *,
    offspring_size: int | None = None,
    max_ngen: int | None = None,
    cores: int = 2,
    repeats: int | None = None,
    one_core: bool | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict:
    """Run the optimisations of ``model`` (demo or reference), print the figures, return them.

    Settings left at None take the model's defaults (``CASES``). The serial and the
    ``cores`` runs alternate ``repeats`` times and the fastest of each counts: on a shared
    machine, the least disturbed run is the best estimate. ``one_core`` adds a run of ours
    on one core. ``options``: keyword arguments for every ``run_package`` call of ours.
    """
    case = CASES[model]
    offspring_size = offspring_size or case.offspring_size
    max_ngen = max_ngen or case.max_ngen
    repeats = repeats or case.repeats
    one_core = case.one_core if one_core is None else one_core
    options = dict(options or {})
    from models_app.bpo.mechanisms import compile_mechanisms
    from models_app.bpo.package import build_package

    with tempfile.TemporaryDirectory(prefix="local-speedup-") as temporary:
        base = Path(temporary)
        source = case.source(base / "source")
        package = base / "package.zip"
        built = build_package(
            source,
            run_name=case.run_name,
            offspring_size=offspring_size,
            max_ngen=max_ngen,
            out=package,
        )
        cache = base / "mechanisms-cache"
        compiled = compile_mechanisms(source / "mechanisms", cache_dir=cache)
        _warm_up_imports()
        # Other work on the machine takes cores from the runs: shown with the figures.
        load_before = os.getloadavg()[0]

        serial_runs, parallel_runs = [], []
        for attempt in range(repeats):
            serial_runs.append(
                _serial_run(
                    package,
                    base / f"serial-{attempt}",
                    compiled,
                    case.run_name,
                    offspring_size,
                    max_ngen,
                )
            )
            parallel_runs.append(
                _local_run(package, base / f"local-{attempt}", cache, cores, options)
            )
        single = (
            _local_run(package, base / "local-one-core", cache, 1, options) if one_core else None
        )
        logbooks = [
            run.logbook for run in (*serial_runs, *parallel_runs, single) if run is not None
        ]
        same_logbook = all(logbook == logbooks[0] for logbook in logbooks)
        load_after = os.getloadavg()[0]

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
        "model": model,
        "description": case.description,
        "offspring_size": offspring_size,
        "max_ngen": max_ngen,
        "package_fixes": [f"{fix.id} ({fix.file})" for fix in built.fixes],
        "evaluations": evaluations,
        "cores": cores,
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "serial_seconds": round(serial_seconds, 2),
        "serial_seconds_all": [round(run.seconds, 2) for run in serial_runs],
        # A run that started on a busier machine is slower: the ratio moves with the difference.
        "serial_load_averages": [round(run.load, 2) for run in serial_runs],
        "local_seconds": round(parallel.seconds, 2),
        "local_seconds_all": [round(run.seconds, 2) for run in parallel_runs],
        "local_load_averages": [round(run.load, 2) for run in parallel_runs],
        "local_one_core_seconds": round(single.seconds, 2) if single else None,
        "speedup": round(serial_seconds / parallel.seconds, 3),
        # Without a 1-core run, the serial run's whole time per evaluation (an upper bound).
        "seconds_per_evaluation": round(
            (single.progress.evaluation_seconds if single else serial_seconds) / evaluations, 3
        ),
        "evaluation_seconds": round(progress.evaluation_seconds, 2),
        "evaluation_seconds_one_core": (
            round(single.progress.evaluation_seconds, 2) if single else None
        ),
        "evaluation_speedup": (
            round(single.progress.evaluation_seconds / progress.evaluation_seconds, 3)
            if single
            else None
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
        "load_average_after": round(load_after, 2),
        "options": options,
        "same_logbook": same_logbook,
        "speedup_target_met": serial_seconds / parallel.seconds >= SPEEDUP_TARGET,
        "outside_target_met": outside / parallel.seconds < OUTSIDE_TARGET,
    }
    _print(figures)
    return figures


@dataclass(frozen=True)
class _Timed:
    seconds: float
    logbook: list[dict]
    load: float  # the machine's load average when the run started
    result: object = None  # LocalRunResult of a local run
    progress: object = None  # its final Progress


def _serial_run(
    package: Path, folder: Path, compiled, run_name: str, offspring_size: int, max_ngen: int
):
    """``python opt_neuron.py --start ...`` in the unpacked package, mechanisms installed."""
    from models_app.bpo.archive import extract_zip
    from models_app.bpo.mechanisms import install_mechanisms
    from models_app.bpo.package import optimisation_arguments

    run_folder = extract_zip(package, folder).path / run_name
    install_mechanisms(compiled, run_folder)
    arguments = optimisation_arguments(offspring_size=offspring_size, max_ngen=max_ngen)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, *arguments],
        cwd=run_folder,
        env=script_environment(),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"the serial run failed:\n{completed.stderr[-3000:]}")
    return _Timed(seconds, _logbook(run_folder), load)


def _local_run(package: Path, work: Path, cache: Path, cores: int, options: Mapping[str, Any]):
    """The same package through run_package, timed from the call to its return: the one
    place the benchmark runs ours."""
    from nsg_app.local import read_progress, run_package

    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = run_package(
        package,
        work,
        cores=cores,
        runtime_seconds=3600,
        mechanisms_cache=cache,
        progress_file=work / "progress.json",
        extra_env={"BLUEPYOPT_SEED": SEED},
        **options,
    )
    seconds = time.perf_counter() - started
    if not result.succeeded:
        raise RuntimeError(f"the local run failed: {result.reason}\n{result.stderr_tail}")
    return _Timed(
        seconds, _logbook(result.run_folder), load, result, read_progress(work / "progress.json")
    )


def _slow_variant(folder: Path, *, dt: float) -> Path:
    """A copy of the demo whose evaluations take about 1 s (fixed steps instead of CVode)."""
    copy_model(DEMO, folder)
    script = folder / "opt_neuron.py"
    text = script.read_text()
    if _DEMO_EVALUATOR_CALL not in text:
        raise RuntimeError("the demo's opt_neuron.py no longer creates its evaluator as expected")
    slow_call = f"model.evaluator.create('CA1_PC_demo', cvode_active=False, dt={dt})"
    script.write_text(text.replace(_DEMO_EVALUATOR_CALL, slow_call))
    return folder


def _warm_up_imports() -> None:
    """Load NEURON and BluePyOpt once, so that neither timed run pays for a cold disk cache."""
    subprocess.run(
        [sys.executable, "-c", "import neuron, bluepyopt, efel"],
        env=script_environment(),
        capture_output=True,
        check=True,
    )


def _logbook(run_folder: Path) -> list[dict]:
    with open(run_folder / "checkpoints" / "checkpoint.pkl", "rb") as file:
        return [dict(record) for record in pickle.load(file, encoding="latin1")["logbook"]]


def _print(figures: dict) -> None:
    print(
        f"Local runner speed-up: {figures['description']}, "
        f"{figures['offspring_size']} offspring x {figures['max_ngen']} generations = "
        f"{figures['evaluations']} evaluations of ~{figures['seconds_per_evaluation']} s, "
        f"{figures['cpu_count']} CPUs"
    )
    print(f"  known fixes in the package: {', '.join(figures['package_fixes']) or 'none'}")
    if figures["options"]:
        print(f"  run_package options: {figures['options']}")
    print(
        f"  plain serial opt_neuron.py   {figures['serial_seconds']:8.2f} s   "
        f"(fastest of {figures['serial_seconds_all']}; load averages at their start "
        f"{figures['serial_load_averages']})"
    )
    if figures["local_one_core_seconds"] is not None:
        print(f"  local runner, 1 core         {figures['local_one_core_seconds']:8.2f} s")
    print(
        f"  local runner, {figures['cores']} cores        {figures['local_seconds']:8.2f} s   "
        f"(fastest of {figures['local_seconds_all']}; load averages at their start "
        f"{figures['local_load_averages']})"
    )
    print(
        f"  speed-up                     {figures['speedup']:8.3f}   "
        f"(target >= {SPEEDUP_TARGET}: {'met' if figures['speedup_target_met'] else 'NOT met'})"
    )
    if figures["evaluation_speedup"] is not None:
        print(
            f"  evaluation phase alone       {figures['evaluation_speedup']:8.3f}x  "
            f"({figures['evaluation_seconds_one_core']} s on 1 core, "
            f"{figures['evaluation_seconds']} s on {figures['cores']})"
        )
    else:
        print(
            f"  evaluation phase on {figures['cores']} cores  "
            f"{figures['evaluation_seconds']:8.2f} s (no 1-core run)"
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
    print(f"  same logbook in every run (same seed): {figures['same_logbook']}")
    print(
        f"  load average before the runs: {figures['load_average_before']}, "
        f"after: {figures['load_average_after']}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:2])
