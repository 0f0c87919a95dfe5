"""One analysis of a finished optimisation, from its source to the files of the analysis.

Steps (docs/optimisation-folder.md section 3): unpack the source and find its run folder
and checkpoint (``sources``); apply the known fixes to the copy; compile the mechanisms
through the cache and install them; simulate the best individuals and score them with the
model's own evaluator in a process of its own (``simulation``); write the results. The
compilation and the simulation process (which unpickles the checkpoint and runs the
model's code) run in the sandbox (``models_app.bpo.sandbox``), which sees only the
analysis's work folder.

The output folder holds::

    analysis.json                everything below, traces downsampled (see ANALYSIS_FILE)
    cell_best.hoc                the best cell; cell_top2.hoc ... with --top
    traces/best/<recording>.csv  full-resolution traces (time_ms, voltage_mV); traces/top2/...
    morphology/<file>            the model's morphology, for the morphology figure

analysis.json is written last, so a folder with one holds a complete analysis.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_app.bpo.archive import GB, TAR_LIMITS, ArchiveLimits
from models_app.bpo.fixes import apply_known_fixes
from models_app.bpo.mechanisms import (
    MechanismCompileError,
    compile_mechanisms,
    install_mechanisms,
)
from models_app.bpo.sandbox import Limits, Sandbox, SandboxError, kill_group, read_changed
from models_app.bpo.untrusted import (
    MB,
    UntrustedFileError,
    copy_untrusted,
    open_untrusted,
    read_untrusted_json,
    read_untrusted_tail,
)

from . import traces
from .errors import INTERNAL, MECHANISMS, MODEL_ERROR, OUTPUT_EXISTS, TIMEOUT, AnalysisError
from .progress import (
    COMPILING,
    DONE,
    FAILED,
    UNPACKING,
    WRITING,
    read_progress,
    relay_progress,
    write_json_atomically,
    write_progress,
)
from .sources import PreparedRun, prepare_run

FORMAT_VERSION = 1
# The most a source may unpack to (the site's ANALYSIS_UNPACKED_MAX_BYTES); NSG's
# output.tar.gz of a real run is tens of megabytes, and a small upload can hold a bomb.
DEFAULT_MAX_UNPACKED_BYTES = 2 * GB
ANALYSIS_FILE = "analysis.json"
ERROR_FILE = "error.json"
# A recomputed fitness this far from the stored one is flagged: scores drift across NEURON
# and, above all, eFEL versions (docs/optimisation-folder.md section 4).
LARGE_RELATIVE_DIFFERENCE = 0.05
LARGE_ABSOLUTE_DIFFERENCE = 1.0
# The project packages the simulation process imports (read-only in the sandbox).
# nsg_app.local.inject: the wording of a failed protocol, shared with local runs (its file
# only is loaded, see simulation._protocol_failures).
SIMULATION_PACKAGES = ("analysis_app.engine", "models_app.bpo", "nsg_app.local.inject")
# How often the progress the simulation writes in the sandbox is copied out.
RELAY_SECONDS = 0.25
_LOG_TAIL = 20_000
# What the simulation process (the model's code) writes is read back within these sizes:
# result.json carries the hoc cells and per-protocol figures, traces go in .npz files.
MAX_RESULT_BYTES = 64 * MB
MAX_ERROR_BYTES = 4 * MB
MAX_TRACES_FILE_BYTES = 256 * MB
MAX_TRACES_UNPACKED_BYTES = 1024 * MB
MAX_MORPHOLOGY_BYTES = 64 * MB
_TRACES_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.npz$")


def unpack_limits(max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES) -> ArchiveLimits:
    """What a source may unpack to in all: NSG's tarball limits, within ``max_unpacked_bytes``."""
    return ArchiveLimits(
        max_members=TAR_LIMITS.max_members,
        max_total_bytes=max_unpacked_bytes,
        max_member_bytes=min(TAR_LIMITS.max_member_bytes, max_unpacked_bytes),
    )


@dataclass(frozen=True)
class AnalysisResult:
    """A finished analysis: its folder and the content of its analysis.json."""

    out_dir: Path
    analysis: dict[str, Any]

    @property
    def analysis_file(self) -> Path:
        return self.out_dir / ANALYSIS_FILE

    @property
    def morphology_path(self) -> Path | None:
        relative = self.analysis["model"].get("morphology_file")
        return self.out_dir / relative if relative else None

    @property
    def best(self) -> dict[str, Any]:
        return self.analysis["individuals"][0]

    @property
    def mechanisms_from_cache(self) -> bool:
        return self.analysis["mechanisms"]["from_cache"]


def analyse(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    mechanisms_cache: str | os.PathLike[str],
    top: int = 1,
    progress_file: str | os.PathLike[str] | None = None,
    processes: int | None = None,
    checkpoint: str | None = None,
    timeout: float | None = None,
    limits: ArchiveLimits | None = None,
    work_root: str | os.PathLike[str] | None = None,
    sandbox: Sandbox | None = None,
) -> AnalysisResult:
    """Analyse the optimisation result ``source`` into the folder ``out_dir``.

    ``top``: how many hall-of-fame individuals to simulate (best first). ``processes``: how
    many protocols run at once (default: the number of CPUs). ``checkpoint``: the name of
    the checkpoint in checkpoints/ (default: checkpoint.pkl, a catalogue model's best run,
    or the newest). ``timeout``: seconds for the whole analysis; the simulation process is
    killed when it passes (and, called from the main thread, the compilation too).
    ``limits``: what the source may unpack to (default ``unpack_limits()``). ``work_root``:
    where the source is unpacked, in a folder of its own removed at the end (default: beside
    ``out_dir``; never the system's temporary folder, which a bomb would fill for everyone).
    ``sandbox``: where the model's code runs (default: bubblewrap).

    Raises ``AnalysisError``; the progress file then says ``failed``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if top < 1:
        raise ValueError("top must be at least 1")
    if processes is not None and processes < 1:
        raise ValueError("processes must be at least 1")
    deadline = None if timeout is None else time.monotonic() + timeout
    limits = limits or unpack_limits()
    work_root = Path(work_root) if work_root is not None else out_dir.resolve().parent
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".analysis-", dir=work_root))
    try:
        if (out_dir / ANALYSIS_FILE).exists():
            raise AnalysisError(
                OUTPUT_EXISTS, f"{out_dir} already holds an analysis; choose a new folder."
            )
        with _time_limit(timeout):
            analysis = _analyse(
                Path(source),
                out_dir,
                work,
                mechanisms_cache=Path(mechanisms_cache),
                top=top,
                progress_file=progress_file,
                processes=processes,
                checkpoint=checkpoint,
                deadline=deadline,
                limits=limits,
                started=started,
                sandbox=sandbox or Sandbox(),
            )
    except _TimeLimitExceeded:
        error = _timeout_error(timeout)
        _record_failure(progress_file, error)
        raise error from None
    except AnalysisError as error:
        _record_failure(progress_file, error)
        raise
    except BaseException as error:
        _record_failure(progress_file, AnalysisError(INTERNAL, f"The analysis stopped: {error!r}"))
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return AnalysisResult(out_dir=out_dir, analysis=analysis)


def _analyse(
    source: Path,
    out_dir: Path,
    work: Path,
    *,
    mechanisms_cache: Path,
    top: int,
    progress_file,
    processes: int | None,
    checkpoint: str | None,
    deadline: float | None,
    limits: ArchiveLimits,
    started: float,
    sandbox: Sandbox,
) -> dict[str, Any]:
    timings: dict[str, float] = {}

    mark = time.perf_counter()
    write_progress(progress_file, UNPACKING, f"Unpacking {source.name}")
    prepared = prepare_run(source, work, checkpoint_name=checkpoint, limits=limits)
    fixes = apply_known_fixes(prepared.run_folder)
    timings["unpacking"] = time.perf_counter() - mark

    mark = time.perf_counter()
    write_progress(progress_file, COMPILING, "Compiling the mechanisms (or reusing them)")
    try:
        compiled = compile_mechanisms(
            prepared.optimisation.root / "mechanisms", cache_dir=mechanisms_cache, sandbox=sandbox
        )
    except MechanismCompileError as error:
        raise AnalysisError(
            MECHANISMS,
            "The mechanisms did not compile; nrnivmodl's log says why.",
            {"problems": error.problems, "log": error.log},
        ) from None
    install_mechanisms(compiled, prepared.run_folder)
    timings["compiling"] = time.perf_counter() - mark

    mark = time.perf_counter()
    simulated = _simulate(
        prepared,
        work,
        top=top,
        processes=processes,
        progress_file=progress_file,
        deadline=deadline,
        sandbox=sandbox,
    )
    timings["simulation_process"] = time.perf_counter() - mark
    for stage, seconds in simulated["timings"].items():
        timings[f"simulation_{stage}"] = seconds

    mark = time.perf_counter()
    write_progress(progress_file, WRITING, "Writing the analysis")
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = _write_outputs(
        prepared, simulated, work, out_dir, fixes=fixes, compiled=compiled, timings=timings
    )
    timings["writing"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    write_json_atomically(out_dir / ANALYSIS_FILE, analysis)
    best = analysis["individuals"][0]["fitness"]
    write_progress(
        progress_file,
        DONE,
        f"Done: fitness {_shown(best['recomputed'])} (stored {_shown(best['stored'])})",
        protocols_done=len(simulated["protocol_seconds"]),
        protocols_total=len(simulated["protocol_seconds"]),
    )
    return analysis


# --- the simulation process -----------------------------------------------------------


def _simulate(
    prepared: PreparedRun,
    work: Path,
    *,
    top: int,
    processes: int | None,
    progress_file,
    deadline: float | None,
    sandbox: Sandbox,
) -> dict[str, Any]:
    exchange = work / "simulation"
    exchange.mkdir()
    # The process writes its progress inside its work folder; it is copied out as it goes.
    inner_progress = exchange / "progress.json"
    request = {
        "key": prepared.optimisation.key,
        # None: the simulation process takes the best stored fitness among "checkpoints".
        "checkpoint": None if prepared.checkpoint is None else str(prepared.checkpoint),
        "checkpoints": [str(path) for path in prepared.checkpoints],
        "chosen_by": prepared.chosen_by,
        "top": top,
        "processes": processes,
        "progress_file": None if progress_file is None else str(inner_progress),
        "result_file": str(exchange / "result.json"),
        "error_file": str(exchange / "error.json"),
        "traces_dir": str(exchange / "traces"),
    }
    request_file = exchange / "request.json"
    request_file.write_text(json.dumps(request), encoding="utf-8")
    log_file = exchange / "simulation.log"
    with open(log_file, "wb") as log:
        # The time limit's alarm is held back until the process is in hand to be killed.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            # A process of its own, in its own process group: NEURON's state is global to
            # a process, and the whole group (with its forked protocol runs) can be ended
            # at once. It runs the model's code: in the sandbox, seeing only ``work``.
            process = sandbox.popen(
                [sys.executable, "-m", "analysis_app.engine.simulation", str(request_file)],
                cwd=prepared.run_folder,
                writable=[work],
                packages=SIMULATION_PACKAGES,
                env=_simulation_environment(),
                limits=_simulation_limits(deadline),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except SandboxError as error:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise AnalysisError(INTERNAL, " ".join(error.problems)) from None
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            code = sandbox.exit_code(
                _wait_relaying(process, deadline, inner_progress, progress_file)
            )
        finally:
            _end_process_group(process)
    # Everything in the exchange folder was written by the model's code: read back only
    # the expected files, checked and within their sizes (models_app.bpo.untrusted).
    log_text = read_untrusted_tail(log_file, root=exchange, max_chars=_LOG_TAIL)
    failure = _untrusted_document(exchange, "error.json", MAX_ERROR_BYTES, log_text)
    if failure is not None:
        raise _reported_failure(failure, log_text)
    simulated = _untrusted_document(exchange, "result.json", MAX_RESULT_BYTES, log_text)
    if code != 0 or simulated is None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise AnalysisError(
            INTERNAL,
            f"The simulation process {how} without a result; its log may say why.",
            {"exit_code": code, "log": log_text},
        )
    simulated = _checked_result(simulated, top=top, log_text=log_text)
    simulated["traces_dir"] = str(exchange / "traces")
    simulated["log"] = log_text
    return simulated


def _untrusted_document(
    exchange: Path, name: str, max_bytes: int, log_text: str
) -> dict[str, Any] | None:
    """The JSON object ``exchange/name``, None when missing; refused ones end the analysis."""
    try:
        document = read_untrusted_json(exchange / name, root=exchange, max_bytes=max_bytes)
    except FileNotFoundError:
        return None
    except UntrustedFileError as error:
        raise _unusable_output(error.problems, log_text) from None
    if not isinstance(document, dict):
        raise _unusable_output([f"{name} is not a JSON object."], log_text)
    return document


def _reported_failure(failure: dict[str, Any], log_text: str) -> AnalysisError:
    kind, message = failure.get("kind"), failure.get("message")
    if not isinstance(kind, str) or not isinstance(message, str):
        return _unusable_output(["error.json has no kind and message."], log_text)
    details = failure.get("details")
    details = dict(details) if isinstance(details, dict) else {}
    details["log"] = log_text
    return AnalysisError(kind[:100], message[:10_000], details)


def _checked_result(document: dict[str, Any], *, top: int, log_text: str) -> dict[str, Any]:
    """result.json, refused unless the parts that name files and ranks are what they must be.

    Ranks name output files (cell_top<rank>.hoc) and traces_file names the .npz to open:
    the model's code must not choose paths. Everything else is data shown on the page.
    """
    problems = []
    individuals = document.get("individuals")
    if not isinstance(individuals, list) or not 1 <= len(individuals) <= top:
        problems.append(f"result.json must list between 1 and {top} individuals.")
        individuals = []
    for position, individual in enumerate(individuals, start=1):
        if not isinstance(individual, dict):
            problems.append(f"Individual {position} of result.json is not an object.")
            continue
        if individual.get("rank") != position or isinstance(individual.get("rank"), bool):
            problems.append(
                f"Individual {position} of result.json has rank {individual.get('rank')!r}."
            )
        traces_file = individual.get("traces_file")
        if not isinstance(traces_file, str) or not _TRACES_FILE.match(traces_file):
            problems.append(f"Individual {position} names the traces file {traces_file!r}.")
        if not (individual.get("hoc") is None or isinstance(individual.get("hoc"), str)):
            problems.append(f"Individual {position} has a hoc cell that is not text.")
        recordings = individual.get("recordings")
        if not isinstance(recordings, list) or not all(
            isinstance(row, dict)
            and isinstance(row.get("name"), str)
            and (row.get("key") is None or isinstance(row.get("key"), str))
            for row in recordings
        ):
            problems.append(f"Individual {position} has unreadable recordings.")
    for name in ("protocols", "warnings", "protocol_seconds"):
        if not isinstance(document.get(name), list):
            problems.append(f"result.json has no list of {name}.")
    for name in ("software", "checkpoint", "evaluator", "timings"):
        if not isinstance(document.get(name), dict):
            problems.append(f"result.json has no {name}.")
    if problems:
        raise _unusable_output(problems, log_text)
    return document


def _unusable_output(problems: list[str], log_text: str) -> AnalysisError:
    return AnalysisError(
        MODEL_ERROR,
        "The simulation of the model left results the site cannot use; the model's own "
        "code may have written them.",
        {"problems": problems, "log": log_text},
    )


def _wait_relaying(
    process: subprocess.Popen, deadline: float | None, inner_progress: Path, progress_file
) -> int:
    """Wait for the simulation, copying its progress out; _TimeLimitExceeded at the deadline."""
    seen = None
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = RELAY_SECONDS if remaining is None else min(RELAY_SECONDS, remaining)
        try:
            code = process.wait(timeout=step)
        except subprocess.TimeoutExpired:
            code = None
        if progress_file is not None:
            seen, content = read_changed(inner_progress, seen)
            if content is not None:
                relay_progress(content, Path(progress_file))
        if code is not None:
            return code
        if deadline is not None and time.monotonic() >= deadline:
            raise _TimeLimitExceeded


def _simulation_limits(deadline: float | None) -> Limits:
    # CPU time is per process; the wall-clock deadline is enforced here.
    if deadline is None:
        return Limits()
    seconds = max(1.0, deadline - time.monotonic())
    return Limits.for_runtime(seconds, threads=os.cpu_count() or 1)


def _simulation_environment() -> dict[str, str]:
    # The project's packages are found through its installation (PYTHONPATH would point
    # at the checkout, which the sandbox does not show).
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"  # models' analysis modules may import matplotlib
    for name in ("DISPLAY", "USEIPYP", "IPYTHON_PROFILE"):
        env.pop(name, None)
    return env


def _end_process_group(process: subprocess.Popen) -> None:
    """Kill what is left of the simulation's sandbox (the process and its forks).

    The time limit's alarm may go off during this very cleanup (it is due at the moment
    the wait for the process gives up): then the cleanup is finished first, and the time
    limit reported after, so that no process is left running or unreaped.
    """
    exceeded = None
    for _ in range(2):  # the alarm goes off once at most
        try:
            kill_group(process)
            break
        except _TimeLimitExceeded as error:
            exceeded = error
    if exceeded is not None:
        raise exceeded


# --- the outputs ----------------------------------------------------------------------


def _write_outputs(
    prepared: PreparedRun,
    simulated: dict[str, Any],
    work: Path,
    out_dir: Path,
    *,
    fixes,
    compiled,
    timings: dict[str, float],
) -> dict[str, Any]:
    optimisation = prepared.optimisation
    protocols = simulated["protocols"]
    morphology_file = f"morphology/{optimisation.morphology}"
    (out_dir / "morphology").mkdir(exist_ok=True)
    # The run folder was the model's to write in while it simulated.
    try:
        copy_untrusted(
            optimisation.morphology_path,
            out_dir / morphology_file,
            root=prepared.run_folder,
            max_bytes=MAX_MORPHOLOGY_BYTES,
        )
    except (OSError, UntrustedFileError) as error:
        problems = error.problems if isinstance(error, UntrustedFileError) else [str(error)]
        raise _unusable_output(problems, simulated["log"]) from None

    software = simulated["software"]
    individuals = []
    for individual in simulated["individuals"]:
        label = "best" if individual["rank"] == 1 else f"top{individual['rank']}"
        hoc_file = None
        if individual["hoc"] is not None:
            hoc_file = f"cell_{label}.hoc"
            (out_dir / hoc_file).write_text(individual["hoc"], encoding="utf-8")
        individuals.append(
            {
                "rank": individual["rank"],
                "label": label,
                "hoc_file": hoc_file,
                "parameters": [_with_position(row) for row in individual["parameters"]],
                "objectives": individual["objectives"],
                "fitness": fitness_comparison(
                    individual["stored_fitness"], individual["recomputed_fitness"], software
                ),
                "traces": _write_traces(
                    individual,
                    Path(simulated["traces_dir"]),
                    out_dir,
                    label=label,
                    protocols=protocols,
                ),
            }
        )

    warnings = list(prepared.warnings) + list(simulated["warnings"])
    for individual in individuals:
        if individual["fitness"]["large_difference"]:
            warnings.append(individual["fitness"]["note"])
        failed = [trace["name"] for trace in individual["traces"] if trace["failed"]]
        if failed:
            warnings.append(
                f"The simulation of {individual['label']} gave no response for "
                f"{', '.join(failed)}; their objectives got the maximum score."
            )
    return {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": prepared.source,
        "model": {
            "name": optimisation.name,
            "key": optimisation.key,
            "morphology": optimisation.morphology,
            "morphology_file": morphology_file,
            "mechanisms": list(optimisation.mechanisms),
            "fixes": [fix.as_dict() for fix in fixes],
        },
        "checkpoint": {
            "available": [path.name for path in prepared.checkpoints],
            **simulated["checkpoint"],
        },
        "mechanisms": {"digest": compiled.digest, "from_cache": compiled.from_cache},
        "evaluator": simulated["evaluator"],
        "protocols": protocols,
        "individuals": individuals,
        "logbook": simulated["logbook"],
        "continued_from": prepared.continued_from,
        "software": software,
        "timings": {
            **{name: round(seconds, 4) for name, seconds in timings.items()},
            "protocols": [
                {**row, "seconds": round(row["seconds"], 4)}
                for row in simulated["protocol_seconds"]
            ],
        },
        "warnings": warnings,
    }


def _write_traces(
    individual: dict[str, Any],
    traces_dir: Path,
    out_dir: Path,
    *,
    label: str,
    protocols: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    rows = []
    with _opened_traces(traces_dir, individual["traces_file"]) as arrays:
        for recording in individual["recordings"]:
            name = recording["name"]
            row: dict[str, Any] = {
                "name": name,
                "protocol": protocol_of(name, protocols),
                "failed": recording["key"] is None,
            }
            if recording["key"] is not None:
                time_values = arrays[f"{recording['key']}_time"]
                voltage = arrays[f"{recording['key']}_voltage"]
                csv = f"traces/{label}/{traces.file_name(name)}"
                traces.write_trace_csv(out_dir / csv, time_values, voltage)
                shown_time, shown_voltage = traces.downsample(time_values, voltage)
                row.update(
                    {
                        "csv": csv,
                        "points": int(len(time_values)),
                        "time": np.round(shown_time, 4).tolist(),
                        "voltage": np.round(shown_voltage, 4).tolist(),
                    }
                )
            rows.append(row)
    return rows


@contextlib.contextmanager
def _opened_traces(traces_dir: Path, name: str) -> Iterator[Any]:
    """The arrays of a traces .npz the simulation wrote: a zip, so its unpacked size is
    checked before anything is loaded, and never unpickled. A missing array is refused."""
    with contextlib.ExitStack() as stack:
        try:
            stream = stack.enter_context(
                open_untrusted(traces_dir / name, root=traces_dir, max_bytes=MAX_TRACES_FILE_BYTES)
            )
            unpacked = sum(info.file_size for info in zipfile.ZipFile(stream).infolist())
            if unpacked > MAX_TRACES_UNPACKED_BYTES:
                raise UntrustedFileError(
                    [
                        f"{name} unpacks to {unpacked:,} bytes; at most "
                        f"{MAX_TRACES_UNPACKED_BYTES:,} are read."
                    ]
                )
            stream.seek(0)
            arrays = stack.enter_context(np.load(stream, allow_pickle=False))
        except UntrustedFileError as error:
            raise _unusable_output(error.problems, "") from None
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise _unusable_output(
                [f"{name} is not a readable traces file ({error})."], ""
            ) from None
        yield _TracesFile(arrays, name)


class _TracesFile:
    """The arrays of one traces file; a name the file lacks is the model's fault."""

    def __init__(self, arrays: Any, name: str) -> None:
        self._arrays = arrays
        self._name = name

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._arrays[key]
        except (KeyError, ValueError, OSError) as error:
            raise _unusable_output([f"{self._name} has no readable {key} ({error})."], "") from None


def protocol_of(recording: str, protocols: list[dict[str, Any]]) -> str | None:
    """The protocol a recording belongs to: the one listing it, else the longest prefix."""
    for protocol in protocols:
        if recording in protocol["recordings"]:
            return protocol["name"]
    prefixes = [p["name"] for p in protocols if recording.startswith(p["name"] + ".")]
    return max(prefixes, key=len) if prefixes else None


def _with_position(row: dict[str, Any]) -> dict[str, Any]:
    """The parameter row with its value's position between its bounds (0 lower, 1 upper)."""
    value, lower, upper = row["value"], row["lower"], row["upper"]
    position = None
    if None not in (value, lower, upper) and upper > lower:
        position = (value - lower) / (upper - lower)
    return {**row, "position": position}


def fitness_comparison(
    stored: float | None, recomputed: float | None, software: dict[str, Any]
) -> dict[str, Any]:
    """The stored and recomputed sums of scores, their difference and whether it is large."""
    comparison: dict[str, Any] = {
        "stored": stored,
        "recomputed": recomputed,
        "absolute_difference": None,
        "relative_difference": None,
        "large_difference": False,
        "note": None,
    }
    if stored is None or recomputed is None:
        return comparison
    absolute = abs(recomputed - stored)
    relative = absolute / abs(stored) if stored else None
    large = absolute > LARGE_ABSOLUTE_DIFFERENCE or (
        relative is not None and relative > LARGE_RELATIVE_DIFFERENCE
    )
    comparison.update(
        absolute_difference=absolute, relative_difference=relative, large_difference=large
    )
    if large:
        share = f" ({relative:.1%})" if relative is not None else ""
        comparison["note"] = (
            f"The recomputed fitness {recomputed:.4g} differs from the {stored:.4g} stored in "
            f"the checkpoint by {absolute:.4g}{share}. Scores drift across NEURON and, above "
            "all, eFEL versions: from eFEL 5.4 several ISI features give no value where "
            "they gave 0, and BluePyOpt scores each missing value 250. This analysis used "
            f"efel {software.get('efel')}, neuron {software.get('neuron')} and bluepyopt "
            f"{software.get('bluepyopt')}."
        )
    return comparison


# --- failures and time limits ---------------------------------------------------------


class _TimeLimitExceeded(BaseException):
    """Raised in the main thread by the alarm, or when the simulation outlives the deadline.

    A BaseException, so that no ``except Exception`` on the way swallows it.
    """


@contextlib.contextmanager
def _time_limit(timeout: float | None) -> Iterator[None]:
    """Interrupt the analysis after ``timeout`` seconds, when called in the main thread."""
    if timeout is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _TimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _timeout_error(timeout: float | None) -> AnalysisError:
    return AnalysisError(
        TIMEOUT,
        f"The analysis took longer than its time limit of {timeout:g} s and was stopped.",
        {"timeout_seconds": timeout},
    )


def _record_failure(progress_file, error: AnalysisError) -> None:
    previous = read_progress(progress_file) if progress_file is not None else None
    write_progress(
        progress_file,
        FAILED,
        error.message,
        protocols_done=(previous or {}).get("protocols_done", 0),
        protocols_total=(previous or {}).get("protocols_total", 0),
        error_kind=error.kind,
    )


def write_error_file(out_dir: Path, error: AnalysisError) -> Path:
    """Write ``error.json`` (the failure as a document) into ``out_dir``."""
    path = Path(out_dir) / ERROR_FILE
    write_json_atomically(path, error.as_dict(), indent=2)
    return path


def _shown(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g}"
