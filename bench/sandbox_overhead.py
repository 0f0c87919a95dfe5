"""What the sandbox costs: start-up of a sandboxed process against a plain one, same run.

Every process that runs a model's code starts through ``models_app.bpo.sandbox``. Measured,
interleaved so that both see the same machine state, the median of ``repeats`` starts of

1. ``true``: bubblewrap's own cost (namespaces, mounts, the uid change);
2. ``python -c pass``: an interpreter, as every model process starts;
3. ``python -c "import neuron, numpy, efel, bluepyopt"``: a model process's imports;

then a CPU-bound loop of a fixed amount of work (NumPy and pure Python) in each, which must
take the same time: the sandbox adds nothing per evaluation. And the memory a NEURON
process reserves (VmPeak, VmHWM) inside, which sizes the address-space limit
(``DEFAULT_MEMORY_BYTES``). Target: under 100 ms more per sandboxed process, and a compute
ratio of 1.00 within noise.

The local runner's and the analysis's own benchmarks compare whole runs with the sandbox on
and off (their ``sandboxes`` parameter).

Run: ``python -m bench sandbox_overhead`` or ``python -m bench.sandbox_overhead``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from models_app.bpo.sandbox import DEFAULT_MEMORY_BYTES, Limits, Sandbox

TARGET_MS = 100.0
REPEATS = 15

STARTS = {
    "true": ["true"],
    "python -c pass": [sys.executable, "-c", "pass"],
    "python, model imports": [sys.executable, "-c", "import neuron, numpy, efel, bluepyopt"],
}

COMPUTE = """
import time, numpy
started = time.perf_counter()
rng = numpy.random.default_rng(1)
a = rng.random((300, 300))
for _ in range(40):
    a = numpy.tanh(a @ a / 300.0)
total = 0
for i in range(3_000_000):
    total += i % 7
print(time.perf_counter() - started)
"""

MEMORY = """
import matplotlib.pyplot, numpy, efel, bluepyopt
from neuron import h
h.load_file("stdrun.hoc")
soma = h.Section(name="soma")
soma.L = soma.diam = 20
soma.insert("hh")
stimulus = h.IClamp(soma(0.5))
stimulus.delay, stimulus.dur, stimulus.amp = 100, 500, 0.3
voltage = h.Vector().record(soma(0.5)._ref_v)
h.cvode_active(1)
h.tstop = 1000
h.run()
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmPeak"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024)
"""


def main(repeats: int = REPEATS) -> dict:
    sandboxed, plain = Sandbox("bwrap"), Sandbox("off")
    results: dict = {"repeats": repeats, "target_ms": TARGET_MS, "starts": {}}
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as work:
        work = Path(work)
        for name, command in STARTS.items():
            times: dict[str, list[float]] = {"plain": [], "sandbox": []}
            for _ in range(repeats):  # interleaved
                times["plain"].append(_start(plain, command, work))
                times["sandbox"].append(_start(sandboxed, command, work))
            plain_median = statistics.median(times["plain"])
            sandbox_median = statistics.median(times["sandbox"])
            results["starts"][name] = {
                "plain_ms": round(plain_median * 1000, 1),
                "sandbox_ms": round(sandbox_median * 1000, 1),
                "extra_ms": round((sandbox_median - plain_median) * 1000, 1),
                "ratio": round(sandbox_median / plain_median, 3),
            }
        compute: dict[str, list[float]] = {"plain": [], "sandbox": []}
        for _ in range(3):
            compute["plain"].append(_inner_seconds(plain, COMPUTE, work))
            compute["sandbox"].append(_inner_seconds(sandboxed, COMPUTE, work))
        results["compute"] = {
            "plain_seconds": round(min(compute["plain"]), 3),
            "sandbox_seconds": round(min(compute["sandbox"]), 3),
            "ratio": round(min(compute["sandbox"]) / min(compute["plain"]), 3),
        }
        peak, resident = _run_inside(sandboxed, MEMORY, work).split()
        results["neuron_process_memory"] = {
            "vm_peak_bytes": int(peak),
            "vm_hwm_bytes": int(resident),
            "address_space_limit_bytes": DEFAULT_MEMORY_BYTES,
        }
    results["load_average"] = round(os.getloadavg()[0], 2)
    results["meets_target"] = all(
        start["extra_ms"] < TARGET_MS for start in results["starts"].values()
    )
    _print(results)
    return results


def _start(sandbox: Sandbox, command: list[str], work: Path) -> float:
    started = time.perf_counter()
    result = sandbox.run(
        command, cwd=work, writable=[work], limits=Limits(), capture_output=True, timeout=300
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed: {result.stderr.decode()[-2000:]}")
    return seconds


def _run_inside(sandbox: Sandbox, code: str, work: Path) -> str:
    result = sandbox.run(
        [sys.executable, "-c", code],
        cwd=work,
        writable=[work],
        env={**os.environ, "MPLBACKEND": "Agg"},
        capture_output=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the probe failed: {result.stderr.decode()[-2000:]}")
    return result.stdout.decode().strip().splitlines()[-1]


def _inner_seconds(sandbox: Sandbox, code: str, work: Path) -> float:
    return float(_run_inside(sandbox, code, work))


def _print(results: dict) -> None:
    print(
        f"Sandbox start-up, median of {results['repeats']} interleaved starts "
        f"(load average {results['load_average']})"
    )
    for name, start in results["starts"].items():
        print(
            f"  {name:24s} plain {start['plain_ms']:8.1f} ms   sandbox {start['sandbox_ms']:8.1f} ms"
            f"   {start['extra_ms']:+7.1f} ms  ratio {start['ratio']:.3f}"
        )
    compute = results["compute"]
    print(
        f"  compute (fixed work)     plain {compute['plain_seconds']:8.3f} s    sandbox "
        f"{compute['sandbox_seconds']:8.3f} s    ratio {compute['ratio']:.3f}"
    )
    memory = results["neuron_process_memory"]
    print(
        f"  a NEURON process inside: VmPeak {memory['vm_peak_bytes'] / 2**20:.0f} MiB, "
        f"VmHWM {memory['vm_hwm_bytes'] / 2**20:.0f} MiB "
        f"(address-space limit {memory['address_space_limit_bytes'] / 2**30:.0f} GiB)"
    )
    verdict = "met" if results["meets_target"] else "NOT met"
    print(f"Target: under {results['target_ms']:.0f} ms more per process: {verdict}")


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
