"""Analysis wall time: our analysis engine against the model's own recipe, on the same result.

The original recipe, in a fresh copy of the model, as the model's users ran it (with
MPLBACKEND=Agg)::

    nrnivmodl mechanisms
    python opt_neuron.py --analyse --checkpoint ./checkpoints

The copy gets only the known fixes without which the recipe does not run at all on the
installed BluePyOpt, applied as the package builder applies them (``apply_known_fixes``);
they are listed with the figures. For the reference model that is ``replace-axon-kwargs``:
without it every protocol fails with "TypeError: replace_axon() got an unexpected keyword
argument 'axon_stub_length'" (checked on neuron 9.0.2, bluepyopt 1.14.26, efel 5.3.10).

Ours: ``analyse(folder, ...)`` (what ``manage.py analyse`` and the Analyses page run), with a
cold mechanisms cache (a fresh empty folder each time: it compiles) and with a warm one
(the mechanisms from the first cold run's cache), the protocols in parallel over the CPUs.

Models (``main(model=...)``):

- ``demo``: the demo's best run (checkpoints/seed1.pkl), as shipped and with protocols 20
  times longer so that simulation, not start-up, dominates. Target: warm at most 0.6.
- ``reference``: the real HBP CA1 model's checkpoint (../shared/reference/models, or
  ``$MODELS``). Targets: cold at most 0.5, warm at most 0.3.

Each repeat runs the original, ours cold and ours warm one after the other, so that all
three see the same machine state; the figures are medians over the repeats. CPU seconds
(this process's and its children's) are given too: on a shared machine they move less
than wall times. Where the time goes: the original's compile, its protocols (from its
log) and the rest (start-up, scoring, figures); ours' stages from its analysis.json.

Run: ``python -m bench analysis_speed`` / ``python -m bench analysis_speed_reference``
(``BENCH_REPEATS=N`` for N repeats).
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis_app.engine import AnalysisResult, analyse
from analysis_app.engine.figures import all_figures, write_figure_files
from models_app.bpo.fixes import apply_known_fixes

from .models import DEMO, copy_model, model_folder, script_environment

REPEATS = 3
LONG_PROTOCOLS_FACTOR = 20
_RAN_PROTOCOL = re.compile(r"Ran protocol(?: \S+)? in ([0-9.]+) s")


@dataclass(frozen=True)
class _Case:
    """What one model's benchmark analyses, and the ratios it must reach."""

    variants: Callable[[Path], dict[str, Path]]  # scratch folder -> {variant: model copy}
    targets: dict[str, float]  # "cold" / "warm" -> the highest ratio allowed


def _demo_variants(scratch: Path) -> dict[str, Path]:
    return {
        "demo": copy_model(DEMO, scratch / "demo" / DEMO.name),
        f"long_protocols_x{LONG_PROTOCOLS_FACTOR}": _long_protocols(
            copy_model(DEMO, scratch / "long" / DEMO.name), LONG_PROTOCOLS_FACTOR
        ),
    }


def _reference_variants(scratch: Path) -> dict[str, Path]:
    source = model_folder("reference")
    return {"reference": copy_model(source, scratch / "reference" / source.name)}


CASES = {
    "demo": _Case(_demo_variants, {"warm": 0.6}),
    "reference": _Case(_reference_variants, {"cold": 0.5, "warm": 0.3}),
}


def main(
    model: str = "demo", repeats: int = REPEATS, options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Measure, print and return the figures for ``model`` (demo or reference).

    ``options``: keyword arguments for our ``analyse`` call (every run of ours gets them).
    """
    case = CASES[model]
    results: dict[str, Any] = {
        "model": model,
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "targets": case.targets,
        "options": dict(options or {}),
        "load_average_before": round(os.getloadavg()[0], 2),
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="analysis-bench-") as scratch:
        scratch = Path(scratch)
        for name, folder in case.variants(scratch).items():
            results["variants"][name] = _measure(
                folder, scratch / f"runs-{name}", repeats, dict(options or {})
            )
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    results["meets_targets"] = all(
        variant[f"ratio_{kind}"] <= target
        for variant in results["variants"].values()
        for kind, target in case.targets.items()
    )
    _print(results)
    return results


def analyse_ours(
    model: Path, out_dir: Path, mechanisms_cache: Path, options: Mapping[str, Any]
) -> AnalysisResult:
    """Our analysis of ``model``: the one place the benchmark calls it."""
    return analyse(model, out_dir, mechanisms_cache=mechanisms_cache, **options)


def _measure(model: Path, runs: Path, repeats: int, options: dict[str, Any]) -> dict[str, Any]:
    original: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    with_figures: list[float] = []
    last = None
    for repeat in range(repeats):  # interleaved, so that all see the same machine state
        original.append(_original_recipe(model, runs / f"original-{repeat}"))
        # A fresh, empty cache each time: this run compiles.
        cold.append(_timed_ours(model, runs / f"cold-{repeat}", runs / f"cache-{repeat}", options))
        # The first cold run left the mechanisms in its cache.
        warm.append(_timed_ours(model, runs / f"warm-{repeat}", runs / "cache-0", options))
        last = warm[-1]["result"]
        started = time.perf_counter()
        write_figure_files(
            all_figures(last.analysis, last.morphology_path), last.out_dir / "figures", png=False
        )
        with_figures.append(warm[-1]["seconds"] + time.perf_counter() - started)

    assert last is not None
    original_seconds = statistics.median(run["seconds"] for run in original)
    cold_seconds = statistics.median(run["seconds"] for run in cold)
    warm_seconds = statistics.median(run["seconds"] for run in warm)
    return {
        "fixes_applied_to_original": original[0]["fixes"],
        "original_seconds": [run["seconds"] for run in original],
        "original_cpu_seconds": [run["cpu_seconds"] for run in original],
        "original_stages_seconds": {
            stage: statistics.median(run["stages"][stage] for run in original)
            for stage in original[0]["stages"]
        },
        "cold_seconds": [run["seconds"] for run in cold],
        "cold_cpu_seconds": [run["cpu_seconds"] for run in cold],
        "warm_seconds": [run["seconds"] for run in warm],
        "warm_cpu_seconds": [run["cpu_seconds"] for run in warm],
        "warm_with_html_figures_seconds": with_figures,
        "ratio_cold": cold_seconds / original_seconds,
        "ratio_warm": warm_seconds / original_seconds,
        "ratio_warm_with_html_figures": statistics.median(with_figures) / original_seconds,
        "cold_stages_seconds": _stages(cold),
        "warm_stages_seconds": _stages(warm),
        "protocol_seconds": {
            row["protocol"]: row["seconds"] for row in last.analysis["timings"]["protocols"]
        },
        "mechanisms_from_cache": {
            "cold": [run["result"].mechanisms_from_cache for run in cold],
            "warm": [run["result"].mechanisms_from_cache for run in warm],
        },
        "fitness": last.best["fitness"],
    }


def _timed_ours(
    model: Path, out_dir: Path, cache: Path, options: Mapping[str, Any]
) -> dict[str, Any]:
    cpu = _cpu_seconds()
    started = time.perf_counter()
    result = analyse_ours(model, out_dir, cache, options)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": _cpu_seconds() - cpu,
        "result": result,
    }


def _stages(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds of ours' stages (analysis.json's timings, per-protocol rows left out)."""
    timings = [run["result"].analysis["timings"] for run in runs]
    return {
        stage: statistics.median(timing[stage] for timing in timings)
        for stage, value in timings[0].items()
        if isinstance(value, int | float)
    }


def _original_recipe(model: Path, folder: Path) -> dict[str, Any]:
    """nrnivmodl + opt_neuron.py --analyse in a fresh, fixed copy of ``model``, timed."""
    copy_model(model, folder)
    fixes = [f"{fix.id} ({fix.file})" for fix in apply_known_fixes(folder)]
    # The recipe must draw its figures itself: the copy's old ones go.
    for old in (folder / "figures").glob("*.pdf"):
        old.unlink()
    env = script_environment()
    stages = {}
    cpu = _cpu_seconds()
    started = time.perf_counter()
    log = ""
    for stage, command in (
        ("compile", ["nrnivmodl", "mechanisms"]),
        (
            "analyse",
            [sys.executable, "opt_neuron.py", "--analyse", "--checkpoint", "./checkpoints"],
        ),
    ):
        mark = time.perf_counter()
        result = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=1800
        )
        stages[stage] = time.perf_counter() - mark
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        log = result.stdout + result.stderr
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu
    if not list((folder / "figures").glob("neuron_responses_*.pdf")):
        raise RuntimeError("the original recipe drew no figure")
    protocols = sum(float(match) for match in _RAN_PROTOCOL.findall(log))
    stages["analyse_protocols"] = protocols
    stages["analyse_rest"] = stages["analyse"] - protocols
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "stages": stages, "fixes": fixes}


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _long_protocols(model: Path, factor: float) -> Path:
    """Stretch every protocol ``factor`` times (delays, steps, totals; short pulses kept)."""
    path = model / "config" / "protocols.json"
    document = json.loads(path.read_text())
    for protocol in next(iter(document.values())).values():
        for stimulus in protocol["stimuli"]:
            stimulus["delay"] *= factor
            stimulus["totduration"] *= factor
            if stimulus["duration"] > 10:  # the bAP's 3 ms pulse stays a pulse
                stimulus["duration"] *= factor
    path.write_text(json.dumps(document, indent=4))
    return model


def _print(results: dict[str, Any]) -> None:
    targets = results["targets"]
    print(
        f"Analysis speed, {results['model']} model, on {results['cpu_count']} CPUs "
        f"(median of {results['repeats']} runs; load average {results['load_average_before']} "
        f"before, {results['load_average_after']} after)"
    )
    if results["options"]:
        print(f"  our analyse() options: {results['options']}")
    for name, variant in results["variants"].items():
        original = statistics.median(variant["original_seconds"])
        stages = variant["original_stages_seconds"]
        fixes = ", ".join(variant["fixes_applied_to_original"]) or "none"
        print(f"\n{name} (known fixes applied to the original's copy: {fixes})")
        print(
            f"  original recipe (nrnivmodl + --analyse)  {original:7.2f} s  "
            f"cpu {statistics.median(variant['original_cpu_seconds']):7.2f} s"
        )
        print(
            f"    nrnivmodl {stages['compile']:.2f} s; --analyse {stages['analyse']:.2f} s: "
            f"protocols one after the other {stages['analyse_protocols']:.2f} s, the rest "
            f"(start-up, scoring, figures) {stages['analyse_rest']:.2f} s"
        )
        for kind, label in (("cold", "ours, cold cache (compiles)"), ("warm", "ours, warm cache")):
            seconds = statistics.median(variant[f"{kind}_seconds"])
            ratio = variant[f"ratio_{kind}"]
            verdict = ""
            if kind in targets:
                met = "met" if ratio <= targets[kind] else "NOT met"
                verdict = f" (target <= {targets[kind]}: {met})"
            print(
                f"  {label:<40} {seconds:7.2f} s  "
                f"cpu {statistics.median(variant[f'{kind}_cpu_seconds']):7.2f} s  "
                f"ratio {ratio:.2f}{verdict}"
            )
            stages_text = ", ".join(
                f"{stage} {seconds:.2f}"
                for stage, seconds in variant[f"{kind}_stages_seconds"].items()
                if stage != "total"
            )
            print(f"    stages (s): {stages_text}")
        print(
            f"  {'ours, warm + HTML figures':<40} "
            f"{statistics.median(variant['warm_with_html_figures_seconds']):7.2f} s  "
            f"{'':16}ratio {variant['ratio_warm_with_html_figures']:.2f}"
        )
        protocols = ", ".join(
            f"{protocol} {seconds:.2f}" for protocol, seconds in variant["protocol_seconds"].items()
        )
        print(f"  ours' protocols (s, last warm run, in the order they finished): {protocols}")
        mechanisms = variant["mechanisms_from_cache"]
        print(
            f"  mechanisms from the cache: cold runs {mechanisms['cold']}, "
            f"warm runs {mechanisms['warm']}"
        )
        fitness = variant["fitness"]
        print(f"  fitness recomputed {fitness['recomputed']:.4f}, stored {fitness['stored']:.4f}")
    verdict = "met" if results["meets_targets"] else "NOT met"
    print(f"\nTargets {targets} (ours / original): {verdict}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
