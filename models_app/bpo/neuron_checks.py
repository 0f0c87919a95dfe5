"""Import-time questions only NEURON can answer, asked in child processes.

- ``built_in_mechanisms()``: the mechanisms compiled into NEURON itself (pas, hh,
  extracellular, ...), which a model may name in parameters.json without a .mod file.
  Asked once per process and remembered: the answer depends only on the installed NEURON.
- ``morphology_problem(path)``: does NEURON's Import3d read the model's morphology, as
  BluePyOpt will when the model runs? NEURON's own error lines when it does not.

NEURON is never imported here: its state is global to its process and a morphology is
model-supplied data, so each question is a child process (``models_app.bpo.neuron_probe``)
started by ``run_child``, the one place these checks start a process, in the sandbox that
confines every process given model data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BpoError
from .sandbox import Sandbox

PROBE_MODULE = "models_app.bpo.neuron_probe"
MECHANISMS_TIMEOUT_SECONDS = 120
# Interneuron .asc files reach 5-6 MB; NEURON reads the largest in a few seconds.
MORPHOLOGY_TIMEOUT_SECONDS = 120
MORPHOLOGY_EXTENSIONS = (".asc", ".swc")  # the two BluePyOpt's NrnFileMorphology reads
_NEURON_LINES_SHOWN = 6
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Model data is read confined, like model code (see models_app.bpo.sandbox).
_DEFAULT_SANDBOX = Sandbox()


class NeuronUnavailable(BpoError):
    summary = "NEURON could not be asked about the model"


@dataclass(frozen=True)
class ChildRun:
    """How a child process ended: its exit code (None when it ran out of time) and output."""

    returncode: int | None
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_child(
    command: Sequence[str], *, cwd: Path, timeout_seconds: float, sandbox: Sandbox
) -> ChildRun:
    """Run ``command`` in ``cwd`` with a time limit, in ``sandbox``.

    ``cwd`` is a scratch folder holding everything the child reads (the morphology copy)
    and nothing else: the sandbox lets the child see only that folder, writable. It is
    never a model folder: NEURON loads any compiled mechanisms (x86_64/) it finds in its
    working directory, and the checks must see NEURON as installed.
    """
    # The probe is this project's module: found from here, whatever the caller's sys.path.
    environment = dict(os.environ, NEURON_MODULE_OPTIONS="-nogui", PYTHONPATH=str(_PROJECT_ROOT))
    try:
        completed = sandbox.run(
            list(command),
            cwd=cwd,
            writable=[cwd],
            packages=["models_app.bpo"],
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_seconds,
        )
    except subprocess.TimeoutExpired as expired:
        return ChildRun(None, _text(expired.stdout), _text(expired.stderr))
    return ChildRun(
        sandbox.exit_code(completed.returncode), _text(completed.stdout), _text(completed.stderr)
    )


def probe_command(*arguments: str) -> list[str]:
    """The command line of the NEURON probe with ``arguments``."""
    return [sys.executable, "-m", PROBE_MODULE, *arguments]


@functools.cache
def built_in_mechanisms(sandbox: Sandbox = _DEFAULT_SANDBOX) -> frozenset[str]:
    """Names of the mechanisms built into the installed NEURON; raises NeuronUnavailable."""
    with tempfile.TemporaryDirectory(prefix="neuron-probe-") as scratch:
        run = run_child(
            probe_command("mechanisms"),
            cwd=Path(scratch),
            timeout_seconds=MECHANISMS_TIMEOUT_SECONDS,
            sandbox=sandbox,
        )
    answer = _answer(run)
    if answer is None or not isinstance(answer.get("mechanisms"), list):
        raise NeuronUnavailable(
            [
                "NEURON did not list its built-in mechanisms"
                + (f": {_neuron_words(run.stderr)}" if run.stderr.strip() else ".")
            ]
        )
    return frozenset(answer["mechanisms"])


def morphology_problem(
    path: Path, *, shown_name: str | None = None, sandbox: Sandbox = _DEFAULT_SANDBOX
) -> str | None:
    """Why NEURON cannot read the morphology at ``path``, in NEURON's words; None if it can."""
    path = Path(path)
    name = shown_name or path.name
    if path.suffix.lower() not in MORPHOLOGY_EXTENSIONS:
        return (
            f"The morphology '{name}' is neither a Neurolucida (.asc) nor an SWC (.swc) "
            "file, the two kinds BluePyOpt loads."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    problem = _morphology_problem(digest, path.suffix.lower(), str(path), sandbox)
    return problem.replace("{name}", name) if problem else None


@functools.lru_cache(maxsize=256)
def _morphology_problem(digest: str, suffix: str, path: str, sandbox: Sandbox) -> str | None:
    # Cached by content: the same file (the demo's, a re-import) is read by NEURON once.
    with tempfile.TemporaryDirectory(prefix="neuron-probe-") as scratch:
        # The child reads a copy inside its own working folder: it needs nothing else,
        # and its messages never depend on where the model was unpacked.
        copy = Path(scratch) / f"morphology{suffix}"
        copy.write_bytes(Path(path).read_bytes())
        run = run_child(
            probe_command("morphology", copy.name),
            cwd=Path(scratch),
            timeout_seconds=MORPHOLOGY_TIMEOUT_SECONDS,
            sandbox=sandbox,
        )
        stderr = run.stderr.replace(str(copy), "{name}").replace(copy.name, "{name}")
    if run.timed_out:
        return (
            f"NEURON did not finish reading the morphology '{{name}}' within "
            f"{MORPHOLOGY_TIMEOUT_SECONDS} s."
        )
    answer = _answer(run)
    words = _neuron_words(stderr)
    if answer is None:
        return f"NEURON failed while reading the morphology '{{name}}': {words or 'no message'}."
    if answer.get("error") or _reports_error(stderr):
        return f"NEURON could not read the morphology '{{name}}': {words or answer['error']}."
    if not answer.get("sections"):
        return "NEURON read no section from the morphology '{name}'" + (
            f": {words}." if words else "; the file describes no cell."
        )
    return None


def _answer(run: ChildRun) -> dict | None:
    if run.returncode != 0:
        return None
    try:
        answer = json.loads(run.stdout)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _reports_error(stderr: str) -> bool:
    # Import3d prints parse errors and carries on with what it could read; BluePyOpt hides
    # those prints and the run fails later, far from the cause. Any such line refuses.
    return any("error" in line.lower() for line in stderr.splitlines())


def _neuron_words(stderr: str) -> str:
    """NEURON's message: its first meaningful lines, joined on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    shown = lines[:_NEURON_LINES_SHOWN]
    text = " / ".join(shown)
    return text + (" / ..." if len(lines) > len(shown) else "")


def _text(output: bytes | str | None) -> str:
    if output is None:
        return ""
    return output if isinstance(output, str) else output.decode("utf-8", errors="replace")
