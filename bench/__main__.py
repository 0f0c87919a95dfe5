"""`make bench`: every benchmark of the project, with the machine they ran on.

python -m bench                 all of them
python -m bench package_build   some of them, by module name
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time

BENCHMARKS = [
    "package_build",
    "nsg_polling",
    "nsg_collect",
    "local_speedup",
    "analysis_speed",
    "sandbox_overhead",
]


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
    names = argv or BENCHMARKS
    print("Machine:", json.dumps(machine()))
    results = {}
    failed = False
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as error:
            print(f"\n== {name}: not available ({error})")
            continue
        print(f"\n== {name}")
        started = time.monotonic()
        try:
            results[name] = module.main()
        except Exception as error:  # report and go on with the other benchmarks
            failed = True
            print(f"{name} failed: {type(error).__name__}: {error}")
        print(f"({time.monotonic() - started:.1f} s)")
    print("\nSummary:", json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
