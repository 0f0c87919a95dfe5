"""Analysis wall time: the analysis engine against the original recipe, on the same result.

The original recipe, in a fresh copy of the model (with the known fixes, without which it
fails on current BluePyOpt)::

    nrnivmodl mechanisms
    python opt_neuron.py --analyse --checkpoint ./checkpoints

The engine: ``analyse(folder, ...)`` with the compiled mechanisms cached by an earlier
analysis and the protocols run in parallel. Both analyse the demo model's best run
(checkpoints/seed1.pkl), first as shipped, then with protocols 20 times longer so that
simulation, not start-up, dominates. The first engine analysis of each variant starts with
an empty cache and compiles; the later ones must reuse it. Target: at most 0.6 of the
original recipe's time on 2 cores.

``sandboxes``: the engine's warm analyses are made once per sandbox mode, interleaved; the
first mode gives the figures above, and with ("bwrap", "off") (the default) each mode's
median and their ratio are reported, with the same recomputed fitness required.

Run with ``python -c "from bench.analysis_speed import main; main()"``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from analysis_app.engine import analyse
from analysis_app.engine.figures import all_figures, write_figure_files
from models_app.bpo.fixes import apply_known_fixes
from models_app.bpo.layout import is_never_copied
from models_app.bpo.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
DEMO_NAME = "CA1_pyr_cACpyr_ballstick3_20261101120000"
DEMO = ROOT / "models_app" / "demo" / DEMO_NAME
TARGET_RATIO = 0.6
LONG_PROTOCOLS_FACTOR = 20
REPEATS = 3


def main(repeats: int = REPEATS, sandboxes: tuple[str, ...] = ("bwrap", "off")) -> dict[str, Any]:
    results: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "target_ratio": TARGET_RATIO,
        "variants": {},
        "sandboxes": list(sandboxes),
    }
    with tempfile.TemporaryDirectory(prefix="analysis-bench-") as scratch:
        scratch = Path(scratch)
        variants = {
            "demo": _copy(DEMO, scratch / "demo" / DEMO_NAME),
            f"long_protocols_x{LONG_PROTOCOLS_FACTOR}": _long_protocols(
                _copy(DEMO, scratch / "long" / DEMO_NAME), LONG_PROTOCOLS_FACTOR
            ),
        }
        for name, model in variants.items():
            results["variants"][name] = _measure(
                model, scratch / f"runs-{name}", repeats, sandboxes
            )
    results["meets_target"] = all(
        variant["ratio"] <= TARGET_RATIO for variant in results["variants"].values()
    )
    _print(results)
    return results


def _measure(model: Path, runs: Path, repeats: int, sandboxes: tuple[str, ...]) -> dict[str, Any]:
    cache = runs / "mechanisms-cache"
    primary = Sandbox(sandboxes[0])
    started = time.perf_counter()
    cold = analyse(model, runs / "engine-cold", mechanisms_cache=cache, sandbox=primary)
    cold_seconds = time.perf_counter() - started
    others: dict[str, list[float]] = {mode: [] for mode in sandboxes[1:]}
    fitness_by_sandbox: dict[str, float] = {}

    original: list[float] = []
    engine: list[float] = []
    with_figures: list[float] = []
    warm = None
    for repeat in range(repeats):  # interleaved, so that both see the same machine state
        original.append(_original_recipe(model, runs / f"original-{repeat}"))
        started = time.perf_counter()
        warm = analyse(model, runs / f"engine-{repeat}", mechanisms_cache=cache, sandbox=primary)
        engine.append(time.perf_counter() - started)
        fitness_by_sandbox[primary.mode] = warm.best["fitness"]["recomputed"]
        for mode in others:
            started = time.perf_counter()
            other = analyse(
                model,
                runs / f"engine-{mode}-{repeat}",
                mechanisms_cache=cache,
                sandbox=Sandbox(mode),
            )
            others[mode].append(time.perf_counter() - started)
            fitness_by_sandbox[mode] = other.best["fitness"]["recomputed"]
        started = time.perf_counter()
        write_figure_files(
            all_figures(warm.analysis, warm.morphology_path), warm.out_dir / "figures", png=False
        )
        with_figures.append(engine[-1] + time.perf_counter() - started)

    assert warm is not None
    best_original = statistics.median(original)
    return {
        "protocol_seconds": {
            row["protocol"]: row["seconds"] for row in warm.analysis["timings"]["protocols"]
        },
        "original_seconds": original,
        "engine_seconds": engine,
        "engine_with_html_figures_seconds": with_figures,
        "engine_cold_cache_seconds": cold_seconds,
        "ratio": statistics.median(engine) / best_original,
        "ratio_with_html_figures": statistics.median(with_figures) / best_original,
        "ratio_cold_cache": cold_seconds / best_original,
        "mechanisms": {
            "cold_from_cache": cold.mechanisms_from_cache,
            "cold_compile_seconds": cold.analysis["timings"]["compiling"],
            "warm_from_cache": warm.mechanisms_from_cache,
            "warm_compile_seconds": warm.analysis["timings"]["compiling"],
        },
        "engine_stages_seconds": {
            stage: seconds
            for stage, seconds in warm.analysis["timings"].items()
            if stage != "protocols"
        },
        "fitness": warm.best["fitness"],
        "engine_seconds_by_sandbox": {primary.mode: engine, **others},
        "sandbox_ratios": {
            f"{primary.mode}/{mode}": statistics.median(engine) / statistics.median(seconds)
            for mode, seconds in others.items()
        },
        "fitness_by_sandbox": fitness_by_sandbox,
        "same_fitness_in_every_sandbox": len(set(fitness_by_sandbox.values())) == 1,
    }


def _original_recipe(model: Path, folder: Path) -> float:
    """Seconds for nrnivmodl + opt_neuron.py --analyse in a fresh, fixed copy of ``model``."""
    _copy(model, folder)
    apply_known_fixes(folder)
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("DISPLAY", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started = time.perf_counter()
    for command in (
        ["nrnivmodl", "mechanisms"],
        [sys.executable, "opt_neuron.py", "--analyse", "--checkpoint", "./checkpoints"],
    ):
        result = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    seconds = time.perf_counter() - started
    if not list((folder / "figures").glob("neuron_responses_*.pdf")):
        raise RuntimeError("the original recipe drew no figure")
    return seconds


def _copy(source: Path, destination: Path) -> Path:
    shutil.copytree(
        source,
        destination,
        ignore=lambda directory, names: [
            name for name in names if is_never_copied(Path(directory) / name)
        ],
    )
    return destination


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
    print(f"Analysis speed on {results['cpu_count']} CPUs (median of {results['repeats']} runs)")
    for name, variant in results["variants"].items():
        original = statistics.median(variant["original_seconds"])
        engine = statistics.median(variant["engine_seconds"])
        figures = statistics.median(variant["engine_with_html_figures_seconds"])
        protocols = ", ".join(
            f"{protocol} {seconds:.2f} s"
            for protocol, seconds in variant["protocol_seconds"].items()
        )
        mechanisms = variant["mechanisms"]
        print(f"\n{name} (protocols: {protocols})")
        print(f"  original recipe (nrnivmodl + --analyse)   {original:6.2f} s")
        print(
            f"  engine, cached mechanisms                  {engine:6.2f} s"
            f"  ratio {variant['ratio']:.2f}"
        )
        print(
            f"  engine + HTML figures                      {figures:6.2f} s"
            f"  ratio {variant['ratio_with_html_figures']:.2f}"
        )
        print(
            f"  engine, first analysis (compiles)          "
            f"{variant['engine_cold_cache_seconds']:6.2f} s"
            f"  ratio {variant['ratio_cold_cache']:.2f}"
        )
        print(
            f"  mechanisms: first analysis from cache {mechanisms['cold_from_cache']} "
            f"({mechanisms['cold_compile_seconds']:.2f} s), later ones from cache "
            f"{mechanisms['warm_from_cache']} ({mechanisms['warm_compile_seconds']:.3f} s)"
        )
        for mode, seconds in variant["engine_seconds_by_sandbox"].items():
            print(
                f"  engine, sandbox {mode:5s}                    {statistics.median(seconds):6.2f} s"
            )
        for pair, ratio in variant["sandbox_ratios"].items():
            print(f"  sandbox cost {pair}: {ratio:.3f}")
        print(f"  same fitness in every sandbox mode: {variant['same_fitness_in_every_sandbox']}")
        fitness = variant["fitness"]
        print(f"  fitness recomputed {fitness['recomputed']:.4f}, stored {fitness['stored']:.4f}")
    verdict = "met" if results["meets_target"] else "NOT met"
    print(f"\nTarget: engine at most {results['target_ratio']} of the original recipe: {verdict}")


if __name__ == "__main__":
    main()
