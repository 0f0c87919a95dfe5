"""Run a BluePyOpt run package on this machine, the way NSG runs it on Expanse.

``run_package`` unpacks the package zip into a working folder, applies the known legacy fixes,
compiles the mechanisms through the cache, and runs ``python init.py`` in the package's top
folder as a child process in a session (process group) of its own, so that a cancel or the
time limit stops the whole process tree at once. The mechanisms compile, and init.py runs,
in the sandbox (``models_app.bpo.sandbox``): init.py and every process it starts see only
the run's top folder (writable), cannot reach the network and run as an unprivileged uid.
The progress file is written inside the sandbox and copied out by the runner. The evaluations are spread over the cores
by the code in ``inject/``, which reaches ``opt_neuron.py`` through the child's environment;
the model itself is never edited for that. Results come out as NSG's do: STDOUT, STDERR and
output.tar.gz in the working folder (see ``outputs``).

It blocks until the run ends; the web side starts it as its own process
(``python -m nsg_app.local``) and follows the progress file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

from models_app.bpo.archive import extract_zip
from models_app.bpo.errors import BpoError
from models_app.bpo.fixes import apply_known_fixes
from models_app.bpo.layout import INIT_SCRIPT, MECHANISMS_DIR
from models_app.bpo.mechanisms import (
    MechanismCompileError,
    compile_mechanisms,
    install_mechanisms,
    mod_files,
)
from models_app.bpo.optimisation import find_root
from models_app.bpo.package import CHECKPOINT_ARGUMENT
from models_app.bpo.sandbox import Limits, Sandbox, SandboxError, kill_group, read_changed
from models_app.bpo.untrusted import (
    UntrustedFileError,
    append_text,
    read_untrusted_json,
    read_untrusted_tail,
)

from . import outputs
from .cluster import (
    ClusterCheck,
    ClusterError,
    check_cluster,
    cluster_environment,
    write_run_profile,
)
from .inject.rebuild_local_optimisation import (
    CLUSTER_MECHANISMS_VARIABLE,
    CORES_VARIABLE,
    FAILURE_FILE_VARIABLE,
    PROGRESS_FILE_VARIABLE,
    STARTED_AT_VARIABLE,
)
from .progress import (
    PREPARING,
    RUNNING,
    read_progress,
    relay_progress,
    remove_stale_temporaries,
    write_runner_phase,
)

INJECT_DIR = Path(__file__).resolve().parent / "inject"
POLL_SECONDS = 0.5
# Slurm sends SIGTERM, then SIGKILL after its KillWait; ours is short.
KILL_GRACE_SECONDS = 2.0
STDERR_TAIL_LINES = 40
STDERR_TAIL_CHARS = 4000
_UNPACK_DIR = ".package"
# Where the run's processes say which protocol failed and why (see inject/protocol_failures).
PROTOCOL_FAILURE_NAME = ".protocol_failure.json"
# The sandboxed run writes its progress here; the runner copies it to the progress file.
_PROGRESS_DIR = ".progress"
# A cluster run's IPYTHONDIR: a profile with a copy of the controller's client file.
_IPYTHON_DIR = ".ipython"
_TRACEBACK_START = "Traceback (most recent call last):"
# Names a run writes in its working folder; a package's top folder may not take one of them.
_RESERVED_NAMES = frozenset(
    {
        outputs.STDOUT_NAME,
        outputs.STDERR_NAME,
        outputs.OUTPUT_NAME,
        outputs.INPUT_NAME,
        outputs.START_NAME,
        outputs.DONE_NAME,
        outputs.JOB_INFO_NAME,
        outputs.COMMAND_LINE_NAME,
        outputs.SCHEDULER_CONF_NAME,
        _UNPACK_DIR,
        _PROGRESS_DIR,
        _IPYTHON_DIR,
    }
)


class RunStatus(StrEnum):
    COMPLETED = "completed"  # init.py exited with code 0
    FAILED = "failed"  # the package could not be prepared, or init.py exited otherwise
    CANCELLED = "cancelled"  # cancel_check, SIGTERM or SIGINT
    TIME_LIMIT = "time_limit"  # runtime_seconds ran out


@dataclass(frozen=True)
class LocalRunResult:
    status: RunStatus
    exit_code: int | None  # init.py's; negative when a signal ended it; None if never started
    reason: str
    stdout_path: Path
    stderr_path: Path
    output_path: Path  # output.tar.gz
    checkpoint_found: bool
    elapsed_seconds: float
    stderr_tail: str
    run_folder: Path | None = None
    cores: int = 1
    mechanisms_from_cache: bool | None = None  # None when nothing was compiled
    fixes: tuple[str, ...] = ()  # descriptions of the known fixes applied here
    preparation_seconds: float = 0.0  # unpacking, fixes, mechanisms
    process_seconds: float = 0.0  # init.py, from start to exit
    # A run on an ipyparallel cluster: its connection file, the engines (id, host, pid,
    # evaluations done) and the ids of engines lost during the run.
    cluster: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is RunStatus.COMPLETED

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what result.json holds."""
        return {
            "status": self.status.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "stdout_path": str(self.stdout_path),
            "stderr_path": str(self.stderr_path),
            "output_path": str(self.output_path),
            "checkpoint_found": self.checkpoint_found,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "stderr_tail": self.stderr_tail,
            "run_folder": str(self.run_folder) if self.run_folder else None,
            "cores": self.cores,
            "mechanisms_from_cache": self.mechanisms_from_cache,
            "fixes": list(self.fixes),
            "preparation_seconds": round(self.preparation_seconds, 3),
            "process_seconds": round(self.process_seconds, 3),
            "cluster": self.cluster,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocalRunResult:
        return cls(
            status=RunStatus(data["status"]),
            exit_code=data["exit_code"],
            reason=data["reason"],
            stdout_path=Path(data["stdout_path"]),
            stderr_path=Path(data["stderr_path"]),
            output_path=Path(data["output_path"]),
            checkpoint_found=bool(data["checkpoint_found"]),
            elapsed_seconds=float(data["elapsed_seconds"]),
            stderr_tail=data["stderr_tail"],
            run_folder=Path(data["run_folder"]) if data.get("run_folder") else None,
            cores=int(data.get("cores", 1)),
            mechanisms_from_cache=data.get("mechanisms_from_cache"),
            fixes=tuple(data.get("fixes", ())),
            preparation_seconds=float(data.get("preparation_seconds", 0.0)),
            process_seconds=float(data.get("process_seconds", 0.0)),
            cluster=data.get("cluster") if isinstance(data.get("cluster"), dict) else None,
        )


def resolve_cores(cores: int | None) -> int:
    """The number of evaluation processes: ``cores``, or every CPU for 0 or None."""
    if cores is None or cores == 0:
        return os.cpu_count() or 1
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 0:
        raise ValueError(f"cores must be a whole number, 0 for all CPUs; got {cores!r}")
    return cores


def run_package(
    package_zip: Path,
    work_dir: Path,
    *,
    cores: int | None,
    runtime_seconds: float,
    mechanisms_cache: Path,
    progress_file: Path | None = None,
    cancel_check: Callable[[], bool] | None = None,
    extra_env: Mapping[str, str] | None = None,
    sandbox: Sandbox | None = None,
    cluster: str | os.PathLike[str] | None = None,
) -> LocalRunResult:
    """Run the package ``package_zip`` in ``work_dir`` (created if missing) and wait for it.

    The model's code runs in ``sandbox`` (default: bubblewrap).

    ``cluster`` (an ipyparallel client connection file or profile folder) runs the
    evaluations on that cluster's engines instead of ``cores`` local processes: the package
    gets USEIPYP=1, IPYTHONDIR and IPYTHON_PROFILE, as on the HPC systems, after the engines
    were checked and readied (``cluster.check_cluster``). The engines must see ``work_dir``
    at the same path. The sandbox then keeps this machine's network (see the README).

    ``cancel_check`` is called about twice a second; True stops the run, as does SIGTERM or
    SIGINT to this process (when called from the main thread). ``extra_env`` adds variables
    to the run's environment (e.g. BLUEPYOPT_SEED). Problems with the package itself (unsafe
    zip, no top folder, mechanisms that do not compile) end as a failed result, not an
    exception. Raises FileNotFoundError for a missing package, FileExistsError when
    ``work_dir`` already holds a run, ValueError for bad settings.
    """
    package_zip, work_dir = Path(package_zip), Path(work_dir)
    if not package_zip.is_file():
        raise FileNotFoundError(f"No package at {package_zip}")
    if not runtime_seconds > 0:
        raise ValueError(f"runtime_seconds must be positive; got {runtime_seconds!r}")
    work_dir.mkdir(parents=True, exist_ok=True)
    if progress_file is not None:
        Path(progress_file).parent.mkdir(parents=True, exist_ok=True)
    earlier = sorted(name for name in _RESERVED_NAMES if (work_dir / name).exists())
    if earlier:
        raise FileExistsError(f"{work_dir} already holds a run ({', '.join(earlier)})")
    run = _LocalRun(
        package_zip=package_zip,
        work_dir=work_dir,
        cores=resolve_cores(cores),
        runtime_seconds=float(runtime_seconds),
        mechanisms_cache=Path(mechanisms_cache),
        progress_file=Path(progress_file) if progress_file is not None else None,
        cancel_check=cancel_check,
        extra_env=dict(extra_env or {}),
        sandbox=sandbox or Sandbox(),
        cluster=cluster,
    )
    with _stop_signals() as received:
        run.signals_received = received
        return run.execute()


def child_environment(
    *,
    cores: int,
    progress_file: Path | None,
    started_at: str,
    extra_env: Mapping[str, str] | None = None,
    failure_file: Path | None = None,
) -> dict[str, str]:
    """The environment of ``python init.py``: this Python first, the injection switched on."""
    env = dict(os.environ)
    # NSG starts ipyparallel engines and sets USEIPYP; here there are none, and the pool of
    # the injection takes their place.
    env.pop("USEIPYP", None)
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(INJECT_DIR), env.get("PYTHONPATH", "")) if part
    )
    env[CORES_VARIABLE] = str(cores)
    env[STARTED_AT_VARIABLE] = started_at
    if progress_file is not None:
        env[PROGRESS_FILE_VARIABLE] = str(progress_file.resolve())
    else:
        env.pop(PROGRESS_FILE_VARIABLE, None)
    if failure_file is not None:
        env[FAILURE_FILE_VARIABLE] = str(failure_file.resolve())
    else:
        env.pop(FAILURE_FILE_VARIABLE, None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    if cores > 1:
        # One evaluation per core: numerical libraries must not start threads of their own.
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")
    return env


# --- the run -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    status: RunStatus
    reason: str
    exit_code: int | None = None


class _RunEnded(Exception):
    def __init__(self, outcome: _Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass
class _LocalRun:
    package_zip: Path
    work_dir: Path
    cores: int
    runtime_seconds: float
    mechanisms_cache: Path
    progress_file: Path | None
    cancel_check: Callable[[], bool] | None
    extra_env: dict[str, str]
    sandbox: Sandbox
    cluster: str | os.PathLike[str] | None = None
    signals_received: list[str] = field(default_factory=list)
    handle: str = field(default_factory=lambda: f"LOCAL-{uuid.uuid4().hex.upper()}")

    def __post_init__(self) -> None:
        self.stdout_path = self.work_dir / outputs.STDOUT_NAME
        self.stderr_path = self.work_dir / outputs.STDERR_NAME
        self.submitted = datetime.now(UTC)
        self.started_at = self.submitted.isoformat(timespec="milliseconds")
        self.top_folder: str | None = None
        self.mechanisms_from_cache: bool | None = None
        self.mechanisms_digest: str | None = None
        self.cluster_check: ClusterCheck | None = None
        self.fixes: tuple[str, ...] = ()
        self.preparation_seconds = 0.0
        self.process_seconds = 0.0

    def execute(self) -> LocalRunResult:
        self._started = time.monotonic()
        self._deadline = self._started + self.runtime_seconds
        self.stdout_path.touch()
        self.stderr_path.touch()
        self._phase(PREPARING, "Unpacking the package")
        shutil.copyfile(self.package_zip, self.work_dir / outputs.INPUT_NAME)
        self._write_control_files()
        try:
            top = self._prepare()
        except _RunEnded as ended:
            self.preparation_seconds = time.monotonic() - self._started
            return self._finish(ended.outcome)
        self.preparation_seconds = time.monotonic() - self._started
        return self._finish(self._run(top))

    # -- preparing --

    def _prepare(self) -> Path:
        extracted = self.work_dir / _UNPACK_DIR
        try:
            extract_zip(self.package_zip, extracted)
            root = find_root(extracted)
        except BpoError as error:
            self._fail(f"The package cannot be unpacked. {error}")
        if root == extracted or root.name in _RESERVED_NAMES:
            self._fail(
                "The package must hold exactly one top folder with init.py inside, as NSG requires."
            )
        top = self.work_dir / root.name
        root.rename(top)
        shutil.rmtree(extracted)  # only archiver litter is left in it
        self.top_folder = top.name
        self._write_control_files()
        if not (top / INIT_SCRIPT).is_file():
            self._fail(f"The package has no {INIT_SCRIPT} in its top folder {top.name}/.")

        applied = apply_known_fixes(top)
        self.fixes = tuple(f"{fix.file}: {fix.description}" for fix in applied)
        for fix in applied:
            self._note(f"Applied the known fix {fix.id} to {fix.file}.")
        self._check_stop()

        self._phase(PREPARING, "Compiling the mechanisms")
        self._install_mechanisms(top)
        self._check_stop()
        if self.cluster is not None:
            self._check_cluster(top)
            self._check_stop()
        return top

    def _check_cluster(self, top: Path) -> None:
        self._phase(PREPARING, "Checking the cluster's engines")
        try:
            self.cluster_check = check_cluster(
                self.cluster, top=top.resolve(), digest=self.mechanisms_digest
            )
        except ClusterError as error:
            self._fail(" ".join(error.problems))
        engines = self.cluster_check.engines
        self.cores = len(engines)
        self._write_control_files()
        self._note(
            f"Cluster {self.cluster_check.connection_file}: {len(engines)} engines ready "
            f"({', '.join(f'{engine.id} on {engine.host}' for engine in engines)})."
        )

    def _write_control_files(self) -> None:
        outputs.write_control_files(
            self.work_dir,
            outputs.JobDescription(
                handle=self.handle,
                top_folder=self.top_folder or "",
                command=f"python3 {INIT_SCRIPT}",
                cores=self.cores,
                runtime_seconds=self.runtime_seconds,
                submitted=self.submitted,
            ),
        )

    def _install_mechanisms(self, top: Path) -> None:
        # NSG compiles mechanisms/ or, failing that, the .mod files beside init.py.
        folder = top / MECHANISMS_DIR
        if not mod_files(folder):
            folder = top
        if not mod_files(folder):
            self._note("No .mod files: nothing to compile.")
            return
        try:
            compiled = compile_mechanisms(
                folder, cache_dir=self.mechanisms_cache, sandbox=self.sandbox
            )
        except MechanismCompileError as error:
            self._check_stop()  # an interrupted compiler is a cancel, not a failure
            _append(self.stderr_path, error.log + ("\n" if error.log else "") + str(error) + "\n")
            self._fail(str(error))
        install_mechanisms(compiled, top)
        self.mechanisms_from_cache = compiled.from_cache
        self.mechanisms_digest = compiled.digest
        if compiled.from_cache:
            self._note(f"Mechanisms: compiled copy {compiled.digest[:12]} reused from the cache.")
        else:
            _append(self.stdout_path, compiled.log + ("\n" if compiled.log else ""))

    # -- running --

    def _run(self, top: Path) -> _Outcome:
        progress_dir = self.work_dir / _PROGRESS_DIR
        progress_dir.mkdir(exist_ok=True)
        self.inner_progress = inner_progress = progress_dir / "progress.json"
        writable = [top, progress_dir]
        on_cluster = self.cluster_check is not None
        if on_cluster:
            where = f"on {self.cores} engines of the cluster"
        else:
            where = f"on {self.cores} cores"
        self._phase(RUNNING, f"Running {INIT_SCRIPT} {where}")
        env = child_environment(
            cores=self.cores,
            # A cluster run always counts its engines' evaluations, for result.json.
            progress_file=inner_progress if self.progress_file is not None or on_cluster else None,
            started_at=self.started_at,
            extra_env=self.extra_env,
            # In the folder the sandboxed run may write to besides its own.
            failure_file=progress_dir / PROTOCOL_FAILURE_NAME,
        )
        if on_cluster:
            ipython_dir = self.work_dir / _IPYTHON_DIR
            profile = write_run_profile(self.cluster_check.connection_file, ipython_dir)
            env.update(cluster_environment(ipython_dir, profile))
            env[CLUSTER_MECHANISMS_VARIABLE] = self.mechanisms_digest or ""
            writable.append(ipython_dir)
        started = time.monotonic()
        with (
            open(self.stdout_path, "ab") as stdout,
            open(self.stderr_path, "ab") as stderr,
        ):
            try:
                process = self.sandbox.popen(
                    [sys.executable, INIT_SCRIPT],
                    cwd=top,
                    writable=writable,
                    readable=[INJECT_DIR],
                    # The run's client must reach the cluster's controller.
                    share_network=on_cluster,
                    env=env,
                    # CPU time is counted per process; the wall-clock limit is ours below.
                    limits=Limits.for_runtime(self.runtime_seconds, threads=os.cpu_count() or 1),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                )
            except SandboxError as error:
                return _Outcome(RunStatus.FAILED, " ".join(error.problems))
        seen = None
        try:
            while True:
                remaining = self._deadline - time.monotonic()
                try:
                    process.wait(timeout=max(0.0, min(POLL_SECONDS, remaining)))
                    break
                except subprocess.TimeoutExpired:
                    pass
                finally:
                    seen = self._relay_progress(inner_progress, seen)
                stop = self._stop_requested()
                if stop is not None:
                    _stop_process_group(process, self.sandbox)
                    stop.exit_code = self.sandbox.exit_code(process.returncode)
                    return stop
        finally:
            # Like Slurm at the end of a job step: no process of the run survives it.
            kill_group(process)
            self.process_seconds = time.monotonic() - started
        code = self.sandbox.exit_code(process.returncode)
        if code == 0:
            return _Outcome(RunStatus.COMPLETED, self._completed_reason(top), code)
        if code < 0:
            how = f"was killed by {_signal_name(-code)}"
        else:
            how = f"exited with code {code}"
        # A failed protocol says only "Failed to run Neuron Sweep Protocol" on STDERR; the
        # injection left its name and NEURON's own error.
        failure = _protocol_failure(self.work_dir / _PROGRESS_DIR)
        last_line = failure or _last_line(_stderr_tail(self.stderr_path))
        detail = f": {last_line}" if last_line else ""
        return _Outcome(RunStatus.FAILED, f"{INIT_SCRIPT} {how}{detail}", code)

    def _relay_progress(self, inner: Path, seen: tuple[int, int] | None):
        if self.progress_file is None:
            return seen
        seen, content = read_changed(inner, seen)
        if content is not None:
            relay_progress(content, self.progress_file, started_at=self.started_at)
        return seen

    def _completed_reason(self, top: Path) -> str:
        if _checkpoint(top).is_file():
            return f"The optimisation finished and wrote {_checkpoint_relative()}."
        return (
            f"{INIT_SCRIPT} exited normally but wrote no {_checkpoint_relative()} "
            "(with fewer than 2 generations BluePyOpt writes none)."
        )

    # -- stopping --

    def _stop_requested(self) -> _Outcome | None:
        elapsed = time.monotonic() - self._started
        if self.signals_received:
            return _Outcome(
                RunStatus.CANCELLED,
                f"Stopped by {self.signals_received[0]} after {elapsed:.0f} s.",
            )
        if self.cancel_check is not None and self.cancel_check():
            return _Outcome(RunStatus.CANCELLED, f"Cancelled after {elapsed:.0f} s.")
        if time.monotonic() >= self._deadline:
            return _Outcome(
                RunStatus.TIME_LIMIT,
                f"Stopped by the time limit of {_duration(self.runtime_seconds)}.",
            )
        return None

    def _check_stop(self) -> None:
        stop = self._stop_requested()
        if stop is not None:
            raise _RunEnded(stop)

    def _fail(self, reason: str) -> NoReturn:
        raise _RunEnded(_Outcome(RunStatus.FAILED, reason))

    # -- finishing --

    def _finish(self, outcome: _Outcome) -> LocalRunResult:
        if outcome.status is RunStatus.FAILED and outcome.exit_code is None:
            self._error(outcome.reason)
        elif outcome.status is RunStatus.TIME_LIMIT:
            self._error(outputs.cancel_line(self.handle, "TIME LIMIT"), raw=True)
        elif outcome.status is RunStatus.CANCELLED:
            self._error(outputs.cancel_line(self.handle), raw=True)
        outputs.write_done_file(self.work_dir)
        output_path = outputs.write_output_tarball(self.work_dir, self.top_folder)
        run_folder = self.work_dir / self.top_folder if self.top_folder else None
        self._phase(outcome.status.value, outcome.reason)
        return LocalRunResult(
            status=outcome.status,
            exit_code=outcome.exit_code,
            reason=outcome.reason,
            stdout_path=self.stdout_path,
            stderr_path=self.stderr_path,
            output_path=output_path,
            checkpoint_found=run_folder is not None and _checkpoint(run_folder).is_file(),
            elapsed_seconds=time.monotonic() - self._started,
            stderr_tail=_stderr_tail(self.stderr_path),
            run_folder=run_folder,
            cores=self.cores,
            mechanisms_from_cache=self.mechanisms_from_cache,
            fixes=self.fixes,
            preparation_seconds=self.preparation_seconds,
            process_seconds=self.process_seconds,
            cluster=self._cluster_summary(),
        )

    def _cluster_summary(self) -> dict[str, Any] | None:
        """The engines and what each one did, as the run's progress file counted them."""
        if self.cluster_check is None:
            return None
        inner = getattr(self, "inner_progress", None)
        progress = read_progress(inner) if inner is not None else None
        counts = progress.engines if progress is not None else {}
        lost = list(progress.engines_lost) if progress is not None else []
        engines = [
            {**engine.as_dict(), "evaluations": counts.get(engine.id, 0), "lost": engine.id in lost}
            for engine in self.cluster_check.engines
        ]
        known = {engine.id for engine in self.cluster_check.engines}
        # Engines that joined during the run.
        engines += [
            {
                "id": engine_id,
                "host": None,
                "pid": None,
                "neuron": None,
                "evaluations": count,
                "lost": engine_id in lost,
            }
            for engine_id, count in counts.items()
            if engine_id not in known
        ]
        return {
            "connection_file": str(self.cluster_check.connection_file),
            "engines": engines,
            "engines_lost": lost,
        }

    def _phase(self, phase: str, message: str) -> None:
        if self.progress_file is None:
            return
        remove_stale_temporaries(self.progress_file)
        write_runner_phase(
            self.progress_file,
            phase=phase,
            message=message,
            started_at=self.started_at,
            cores=self.cores,
        )

    def _note(self, text: str) -> None:
        _append(self.stdout_path, f"Local run: {text}\n")

    def _error(self, text: str, *, raw: bool = False) -> None:
        _append(self.stderr_path, text if raw else f"Local run: {text}\n")


def _append(path: Path, text: str) -> None:
    """Add to STDOUT or STDERR, which the run's code may have swapped for a link or a pipe:
    then the line is lost, and nothing is written wherever the link points."""
    with contextlib.suppress(UntrustedFileError):
        append_text(path, text)


def _checkpoint_relative() -> str:
    return CHECKPOINT_ARGUMENT.removeprefix("./")


def _checkpoint(run_folder: Path) -> Path:
    return run_folder / _checkpoint_relative()


# --- processes and signals -----------------------------------------------------------------


def _stop_process_group(
    process: subprocess.Popen, sandbox: Sandbox, grace: float = KILL_GRACE_SECONDS
) -> None:
    """SIGTERM the run's processes, then SIGKILL whatever is left after ``grace`` seconds."""
    sandbox.signal_command(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, or it keeps the group alive as a zombie
        if not _group_exists(process.pid):
            break
        time.sleep(0.05)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal_number)


def _group_exists(group: int) -> bool:
    """True while a process of ``group`` still runs; zombies do not count."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill() also reaches zombies: orphans of the run wait for their reaper as zombies, and
    # in a container that reaper may be slow. Where /proc can tell, look for a live member.
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return True
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, parent pid, process group.
        if len(fields) > 2 and fields[2] == str(group) and fields[0] != "Z":
            return True
    return False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[str]]:
    """Turn SIGTERM and SIGINT into a stop request while the run lasts (main thread only)."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def request_stop(number: int, _frame: object) -> None:
        received.append(_signal_name(number))

    previous = {number: signal.signal(number, request_stop) for number in _STOP_SIGNALS}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# --- STDERR --------------------------------------------------------------------------------


def _stderr_tail(path: Path) -> str:
    """The end of STDERR, from its last traceback when there is one, for people to read."""
    # The run could have swapped STDERR for a link or a pipe: read it as an untrusted file.
    text = read_untrusted_tail(path, root=path.parent, max_chars=16 * STDERR_TAIL_CHARS)
    lines = text.splitlines()[-STDERR_TAIL_LINES:]
    starts = [number for number, line in enumerate(lines) if line.startswith(_TRACEBACK_START)]
    if starts:
        lines = lines[starts[-1] :]
    return "\n".join(lines)[-STDERR_TAIL_CHARS:]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d} (h:mm:ss)"


def _protocol_failure(progress_dir: Path) -> str | None:
    """The message the run's processes left about a failed protocol (model-written: read
    as untrusted, and only its message)."""
    try:
        document = read_untrusted_json(
            progress_dir / PROTOCOL_FAILURE_NAME, root=progress_dir, max_bytes=_FAILURE_MAX_BYTES
        )
    except (UntrustedFileError, OSError):
        return None
    message = document.get("message") if isinstance(document, dict) else None
    return message[:STDERR_TAIL_CHARS] if isinstance(message, str) else None


_FAILURE_MAX_BYTES = 1024 * 1024
