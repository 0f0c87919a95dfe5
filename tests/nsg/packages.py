"""Job zips for the emulator tests, built in memory."""

from __future__ import annotations

import io
import textwrap
import zipfile

# A passive leak current: the smallest useful NMODL mechanism.
LEAK_MOD = textwrap.dedent(
    """
    NEURON {
        SUFFIX testleak
        NONSPECIFIC_CURRENT i
        RANGE g, e
    }
    UNITS {
        (mA) = (milliamp)
        (mV) = (millivolt)
    }
    PARAMETER {
        g = 0.0005 (S/cm2)
        e = -70 (mV)
    }
    ASSIGNED {
        v (mV)
        i (mA/cm2)
    }
    BREAKPOINT {
        i = g * (v - e)
    }
    """
)

NEURON_SCRIPT = textwrap.dedent(
    """
    from neuron import h

    soma = h.Section(name="soma")
    soma.insert("testleak")
    g = soma(0.5).testleak.g
    with open("simulated.txt", "w") as out:
        out.write(f"testleak g={g}\\n")
    print(f"mechanism loaded, g={g}")
    """
)

CRASHING_SCRIPT = textwrap.dedent(
    """
    print("about to fail")
    raise RuntimeError("the model exploded")
    """
)

# Writes its PID namespace, its own pid and a child's pid (as seen in that namespace: the job
# runs in the sandbox), then waits: for cancel and time-limit tests (fixtures.processes.host_pids).
SLEEPING_SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys, time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open("../pids.txt", "w") as out:
        out.write(f"{os.readlink('/proc/self/ns/pid')} {os.getpid()} {child.pid}\\n")
    print("started", flush=True)
    time.sleep(120)
    """
)

HELLO_SCRIPT = 'print("hello from NSG")\nopen("output.txt", "w").write("42\\n")\n'


def zip_bytes(files: dict[str, str | bytes]) -> bytes:
    """A zip holding `files` (archive name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def package(script: str, *, top: str = "job_dir", filename: str = "init.py", **extra) -> bytes:
    """One top folder holding `filename` (and `extra` files, relative to the top folder)."""
    files = {f"{top}/{filename}": script}
    files.update({f"{top}/{name}": content for name, content in extra.items()})
    return zip_bytes(files)
