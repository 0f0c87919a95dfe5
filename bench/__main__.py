"""`make bench`: every benchmark of the project, with the machine they ran on.

python -m bench                 all of them
python -m bench package_build   some of them, by name (see BENCHMARKS)
BENCH_REPEATS=1 python -m bench analysis_speed_reference
                                fewer repeats, for the benchmarks that take a number
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import platform
import sys
import time

from models_app.bpo.sandbox import Sandbox

# Name -> (module in bench/, keyword arguments of its main()): a benchmark that takes a model
# is listed once per model it runs on.
BENCHMARKS: dict[str, tuple[str, dict]] = {
    "package_build": ("package_build", {}),
    "nsg_polling": ("nsg_polling", {}),
    "nsg_collect": ("nsg_collect", {}),
    "local_speedup": ("local_speedup", {}),
    "local_speedup_reference": ("local_speedup", {"model": "reference"}),
    # The reference model: serial, the fork pool on 2 cores, a 2-engine cluster on loopback.
    "cluster_speedup": ("cluster_speedup", {}),
    "analysis_speed": ("analysis_speed", {}),
    "analysis_speed_reference": ("analysis_speed", {"model": "reference"}),
    "sandbox_overhead": ("sandbox_overhead", {}),
    # The same runs of ours with model code unconfined: the sandbox's cost, beside the above.
    "local_speedup_sandbox_off": ("local_speedup", {"options": {"sandbox": Sandbox("off")}}),
    "local_speedup_reference_sandbox_off": (
        "local_speedup",
        {"model": "reference", "options": {"sandbox": Sandbox("off")}},
    ),
    "analysis_speed_sandbox_off": ("analysis_speed", {"options": {"sandbox": Sandbox("off")}}),
    "analysis_speed_reference_sandbox_off": (
        "analysis_speed",
        {"model": "reference", "options": {"sandbox": Sandbox("off")}},
    ),
}
REPEATS_VARIABLE = "BENCH_REPEATS"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"Unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    repeats = os.environ.get(REPEATS_VARIABLE)
    print("Machine:", json.dumps(machine()))
    results = {}
    failed = False
    for name in names:
        module_name, arguments = BENCHMARKS[name]
        try:
            module = importlib.import_module(f"bench.{module_name}")
        except ModuleNotFoundError as error:
            print(f"\n== {name}: not available ({error})")
            continue
        arguments = dict(arguments)
        if repeats and "repeats" in inspect.signature(module.main).parameters:
            arguments["repeats"] = int(repeats)
        print(f"\n== {name}")
        started = time.monotonic()
        try:
            results[name] = module.main(**arguments)
        except Exception as error:  # report and go on with the other benchmarks
            failed = True
            print(f"{name} failed: {type(error).__name__}: {error}")
        print(f"({time.monotonic() - started:.1f} s)")
    print("\nSummary:", json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
