"""Run emulated jobs for real, through NSG's stages (docs/nsg-protocol.md §6, §7).

Each job gets a thread that walks QUEUE -> COMMANDRENDERING -> INPUTSTAGING ->
SUBMITTED -> LOAD_RESULTS -> COMPLETED, pausing `stage_seconds` before each step. In
SUBMITTED it does what NSG's batch script does on Expanse: compile the mechanisms with
nrnivmodl, then run `python3 <filename_>` inside the zip's top folder, in a process group
of its own so that a time limit or a cancel can stop the whole process tree. Both run the
job's code, so both run in the sandbox (``ClusterSettings.sandbox``, from --sandbox), which
sees only the job's working directory.

A zip is accepted at submission whatever it holds, and unpacked at INPUTSTAGING as on
NSG: one that is not a zip, is unsafe, or lacks exactly one top folder ends the job
there, terminal and failed. A script that crashes or overruns its time limit still
ends COMPLETED (failed=false): the evidence is in STDERR, as on NSG (§6).

After a restart (with a data dir), a job that was running has lost its processes: it
ends as a Slurm node failure would, COMPLETED with whatever the run left and
`... CANCELLED AT <date> DUE TO NODE FAILURE ...` in STDERR. Jobs that had not started
running are staged again; jobs collecting results collect them again.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from models_app.bpo.sandbox import Limits, Sandbox, SandboxError
from models_app.bpo.untrusted import GB, UntrustedFileError, copy_untrusted

from .archives import ArchiveError, extract_single_folder_zip, write_output_tarball
from .jobs import (
    COMMANDRENDERING,
    COMPLETED,
    INPUTSTAGING,
    LOAD_RESULTS,
    QUEUE,
    SUBMITTED,
    Job,
    JobStore,
    ResultFile,
    now,
    timestamp,
)
from .tools import TOOLS, RunSettings, validate_vparams

logger = logging.getLogger(__name__)

RESOURCE = "expanse"
# Slurm sends SIGTERM, then SIGKILL after its KillWait; ours is short.
KILL_GRACE_SECONDS = 2.0
# A job's STDOUT or STDERR beyond this is not served (NSG caps its outputs too).
MAX_STREAM_BYTES = 1 * GB
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ClusterSettings:
    stage_seconds: float = 0.0
    # Multiplies every job's time limit (runtime_ hours), so tests can use short limits.
    time_scale: float = 1.0
    # Where the jobs' code runs: bubblewrap unless --sandbox off.
    sandbox: Sandbox = field(default_factory=Sandbox)


class Cancelled(Exception):
    """The job was deleted, or the emulator is stopping: leave the job as it is."""


def settings_for(job: Job) -> RunSettings:
    settings, errors = validate_vparams(TOOLS[job.tool], job.vparams)
    if settings is None:  # checked at submission; only a hand-edited job.json gets here
        raise ValueError(f"stored vparams are invalid: {errors}")
    return settings


class JobRunner(threading.Thread):
    def __init__(self, store: JobStore, handle: str, cluster: ClusterSettings) -> None:
        super().__init__(name=f"job-{handle[-8:]}", daemon=True)
        self.store = store
        self.handle = handle
        self.cluster = cluster
        self.folder = store.folder(handle)
        self.workdir = self.folder / "workdir"
        self._cancel = threading.Event()
        self._process_lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def cancel(self) -> None:
        """Stop at once: kill the running process tree and abandon the pipeline."""
        self._cancel.set()
        with self._process_lock:
            process = self._process
        if process is not None:
            _terminate(process, self.cluster.sandbox)

    def run(self) -> None:
        job = self.store.live(self.handle)
        if job is None:
            return
        try:
            self._pipeline(job)
        except Cancelled:
            logger.info("Job %s stopped", self.handle)
        except Exception as exc:
            logger.exception("Job %s broke the emulator", self.handle)
            text = f"Internal emulator error: {exc}"
            try:
                self._update(job, lambda j: _fail(j, j.stage, text))
            except Cancelled:
                pass

    def _pipeline(self, job: Job) -> None:
        start = job.stage
        if start == QUEUE:
            self._pause()
            self._update(job, lambda j: j.add_message(COMMANDRENDERING, _rendered(j)))
        if start in {QUEUE, COMMANDRENDERING, INPUTSTAGING}:
            if not self._stage_input(job):
                return
            self._submit_and_run(job)
        elif start == SUBMITTED and job.batch_state != "finished":
            self._record_lost_run(job)
        if start != LOAD_RESULTS:
            self._pause()
            self._update(job, lambda j: j.add_message(LOAD_RESULTS, "Trying to transfer results."))
        self._load_results(job)
        self._pause()

        def complete(j: Job) -> None:
            j.add_message(COMPLETED, "Output files retrieved.  Task is finished.")
            j.terminal = True

        self._update(job, complete)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _stage_input(self, job: Job) -> bool:
        self._pause()
        self._update(
            job, lambda j: j.add_message(INPUTSTAGING, f"Staging input files to {RESOURCE}")
        )
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        try:
            if job.fail_at_staging:
                raise ArchiveError("Injected fault: staging_failure.")
            shutil.copyfile(self.folder / "inputfile", self.workdir / "inputfile")
            top = extract_single_folder_zip(self.workdir / "inputfile", self.workdir)
            settings = settings_for(job)
            run_dir = self.workdir / top / settings.subdirname
            if not run_dir.is_dir():
                raise ArchiveError(f"The folder {settings.subdirname!r} is not in {top!r}.")
        except ArchiveError as exc:
            shutil.rmtree(self.workdir, ignore_errors=True)
            text = f"Error staging input files: {exc}"
            self._update(job, lambda j: _fail(j, INPUTSTAGING, text))
            return False
        self._write_control_files(job, top, settings)

        def staged(j: Job) -> None:
            j.top_folder = top
            j.add_message(INPUTSTAGING, f"Input files staged successfully to {self.workdir}/")

        self._update(job, staged)
        return True

    def _submit_and_run(self, job: Job) -> None:
        self._pause()
        slurm_job_id = random.randint(20_000_000, 39_999_999)

        def submitted(j: Job) -> None:
            j.slurm_job_id = slurm_job_id
            j.batch_state = "running"
            j.add_message(SUBMITTED, f"Submitted to {RESOURCE} as job '{slurm_job_id}'.")

        self._update(job, submitted)
        (self.workdir / "batch_command.status").write_text(
            f"Submitted batch job {slurm_job_id}\nJOBID={slurm_job_id}\n"
        )
        self._run_batch(job, settings_for(job))

        def finished(j: Job) -> None:
            j.batch_state = "finished"
            j.batch_pid = None

        self._update(job, finished)

    def _run_batch(self, job: Job, settings: RunSettings) -> None:
        run_dir = self.workdir / job.top_folder / settings.subdirname
        if job.walltime_seconds_override is not None:
            walltime = job.walltime_seconds_override
        else:
            walltime = settings.runtime_hours * 3600 * self.cluster.time_scale
        deadline = time.monotonic() + walltime
        (self.workdir / "start.txt").write_text(f"Job starting at {_slurm_date()}\n")
        env = run_environment()
        with (
            open(self.workdir / "stdout.txt", "ab") as out,
            open(self.workdir / "stderr.txt", "ab") as err,
        ):
            timed_out = False
            compile_command = _compile_command(run_dir) if settings.compile_mechanisms else None
            if compile_command is not None:
                timed_out = self._execute(job, compile_command, run_dir, out, err, env, deadline)
            if not timed_out:
                command = settings.command(python=sys.executable, nrniv=_program("nrniv"))
                timed_out = self._execute(job, command, run_dir, out, err, env, deadline)
            if timed_out:
                line = _slurm_cancel_line(job, "TIME LIMIT")
                err.write(line.encode())
                with open(self.workdir / "scheduler_stderr.txt", "a") as scheduler_err:
                    scheduler_err.write(line)
        (self.workdir / "done.txt").write_text(f"Job finished at {_slurm_date()}\n")

    def _execute(self, job, command, cwd, out, err, env, deadline) -> bool:
        """Run one command of the batch; True if the time limit stopped it."""
        try:
            with self._process_lock:
                if self._cancel.is_set():
                    raise Cancelled
                process = self.cluster.sandbox.popen(
                    command,
                    cwd=cwd,
                    writable=[self.workdir],
                    env=env,
                    limits=Limits.for_runtime(
                        max(1.0, deadline - time.monotonic()), threads=os.cpu_count() or 1
                    ),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                )
                self._process = process
        except SandboxError as exc:
            err.write(f"{' '.join(exc.problems)}\n".encode())
            return False
        except OSError as exc:
            err.write(f"{command[0]}: {exc}\n".encode())
            return False
        self._update(job, lambda j: setattr(j, "batch_pid", process.pid))
        try:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    process.wait(timeout=max(0.0, min(POLL_SECONDS, remaining)))
                    return False
                except subprocess.TimeoutExpired:
                    pass
                if self._cancel.is_set():
                    raise Cancelled
                if remaining <= 0:
                    _terminate(process, self.cluster.sandbox)
                    process.wait()
                    return True
        finally:
            # Like Slurm at the end of a job step: no process of the job survives it.
            _signal_group(process.pid, signal.SIGKILL)
            with self._process_lock:
                self._process = None

    def _record_lost_run(self, job: Job) -> None:
        """The emulator stopped while this job ran: end it like a Slurm node failure."""
        if job.batch_pid:
            _kill_orphan(job.batch_pid, self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        line = _slurm_cancel_line(job, "NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS")
        for name in ("stderr.txt", "scheduler_stderr.txt"):
            with open(self.workdir / name, "a") as file:
                file.write(line)
        (self.workdir / "done.txt").write_text(f"Job finished at {_slurm_date()}\n")

        def finished(j: Job) -> None:
            j.batch_state = "finished"
            j.batch_pid = None

        self._update(job, finished)

    def _load_results(self, job: Job) -> None:
        results = self.folder / "results"
        shutil.rmtree(results, ignore_errors=True)
        results.mkdir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The job's code could have put links in place of these files: never follow one.
        for name in ("stdout.txt", "stderr.txt", "scheduler_stdout.txt", "scheduler_stderr.txt"):
            try:
                # Non-blocking: a pipe left there must not hold the emulator up.
                flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                os.close(os.open(self.workdir / name, flags))
            except OSError:
                logger.warning("Job %s: %s is not a plain file", self.handle, name)
        for name, result in (("stdout.txt", "STDOUT"), ("stderr.txt", "STDERR")):
            try:
                copy_untrusted(
                    self.workdir / name,
                    results / result,
                    root=self.workdir,
                    max_bytes=MAX_STREAM_BYTES,
                )
            except (OSError, UntrustedFileError) as error:
                (results / result).write_text(f"The emulator could not read {name}: {error}\n")
        write_output_tarball(self.workdir, results / "output.tar.gz")
        tarball_id, stdout_id, stderr_id = self.store.allocate_document_ids(3)
        files = [
            ResultFile(stdout_id, "STDOUT", "STDOUT"),
            ResultFile(stderr_id, "STDERR", "STDERR"),
            ResultFile(tarball_id, "output.tar.gz", "outputfile"),
        ]
        self._update(job, lambda j: setattr(j, "results", files))

    def _write_control_files(self, job: Job, top: str, settings: RunSettings) -> None:
        command = shlex.join(settings.command())
        compile_line = "nrnivmodl mechanisms\n" if settings.compile_mechanisms else ""
        run_dir = shlex.quote(str(Path(top) / settings.subdirname))
        files = {
            "_COMMANDLINE": f"{job.commandline}\n",
            "_JOBINFO.TXT": _job_info(job, top),
            "scheduler.conf": (
                f"fname={settings.filename}\n"
                f"nrnivmodloption={int(settings.compile_mechanisms)}\n"
                f"nodes={settings.nodes}\n"
                "jobtype=mpi\n"
                f"runhours={settings.runtime_hours}\n"
                f"cores_per_node={settings.cores_per_node}\n"
                f"gbmemory_per_node={settings.gb_memory_per_node}\n"
                f"tasks_per_node={settings.tasks_per_node}\n"
                "threads_per_task=1\n"
            ),
            "batch_command.cmdline": f"cd {run_dir}\n{compile_line}runit {command}\n",
            "batch_command.run": (
                "#!/bin/sh\n"
                f"#SBATCH --job-name={job.handle}\n"
                f"#SBATCH --nodes={settings.nodes}\n"
                f"#SBATCH --ntasks-per-node={settings.tasks_per_node}\n"
                f"#SBATCH --time={_walltime(settings.runtime_hours)}\n"
                "sh batch_command.cmdline\n"
            ),
            "epilog": "#!/bin/sh\n# NSG emulator: results are collected by the emulator itself\n",
            "nsgdebug": f"emulated NSG run of {job.handle}\n",
        }
        for name, text in files.items():
            (self.workdir / name).write_text(text, "utf-8")

    def _pause(self) -> None:
        if self._cancel.wait(self.cluster.stage_seconds):
            raise Cancelled

    def _update(self, job: Job, change) -> None:
        if self._cancel.is_set():
            raise Cancelled
        with self.store.lock:
            change(job)
            self.store.save(job)


class JobRunners:
    """The runner threads of one emulator."""

    def __init__(self, store: JobStore, cluster: ClusterSettings) -> None:
        self.store = store
        self.cluster = cluster
        self._lock = threading.Lock()
        self._runners: dict[str, JobRunner] = {}

    def start(self, handle: str) -> None:
        runner = JobRunner(self.store, handle, self.cluster)
        with self._lock:
            self._runners = {h: r for h, r in self._runners.items() if r.is_alive()}
            self._runners[handle] = runner
        runner.start()

    def resume(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.terminal:
                self.start(job.handle)

    def stop(self, handle: str, timeout: float = 30.0) -> None:
        with self._lock:
            runner = self._runners.pop(handle, None)
        if runner is not None:
            runner.cancel()
            runner.join(timeout)

    def stop_all(self, timeout: float = 10.0) -> None:
        with self._lock:
            runners = list(self._runners.values())
            self._runners.clear()
        for runner in runners:
            runner.cancel()
        for runner in runners:
            runner.join(timeout)


def run_environment() -> dict[str, str]:
    """The job's environment: this Python first on PATH, like NSG's container."""
    env = dict(os.environ)
    # NSG starts ipyparallel engines for BluePyOpt; we do not, so the model must not
    # wait for them (opt_neuron.py uses ipyparallel when USEIPYP is set).
    env.pop("USEIPYP", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _program(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    return shutil.which(name) or name


def _compile_command(run_dir: Path) -> list[str] | None:
    mechanisms = run_dir / "mechanisms"
    if mechanisms.is_dir() and any(mechanisms.glob("*.mod")):
        return [_program("nrnivmodl"), "mechanisms"]
    if any(run_dir.glob("*.mod")):
        return [_program("nrnivmodl")]
    return None


def _terminate(
    process: subprocess.Popen, sandbox: Sandbox, grace: float = KILL_GRACE_SECONDS
) -> None:
    """SIGTERM the job's processes, then SIGKILL the group after `grace` seconds."""
    if grace > 0:
        sandbox.signal_command(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signal_number: int) -> None:
    try:
        os.killpg(pgid, signal_number)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_orphan(pid: int, workdir: Path) -> None:
    """Kill a run left over from before a restart, if the pid is still that run."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return
    if cwd == workdir or workdir in cwd.parents:
        _signal_group(pid, signal.SIGKILL)


def _fail(job: Job, stage: str, text: str) -> None:
    job.add_message(stage, text)
    job.failed = True
    job.terminal = True


def _rendered(job: Job) -> str:
    return f"Command rendered successfully: {job.commandline}"


def _slurm_date() -> str:
    return now().strftime("%a %b %d %H:%M:%S %Z %Y")


def _slurm_cancel_line(job: Job, reason: str) -> str:
    moment = now().strftime("%Y-%m-%dT%H:%M:%S")
    node = f"exp-{job.slurm_job_id % 17 + 1}-{job.slurm_job_id % 53 + 1:02d}"
    return f"slurmstepd: error: *** JOB {job.slurm_job_id} ON {node} CANCELLED AT {moment} DUE TO {reason} ***\n"


def _walltime(hours: float) -> str:
    seconds = round(hours * 3600)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _job_info(job: Job, top: str) -> str:
    # NSG's file holds the account's personal data; these values are made up.
    return (
        f"Tool={job.tool}\n"
        f"JobHandle={job.handle}\n"
        f"resource={RESOURCE}\n"
        f"user_input_dir={top}\n"
        "Output=(outputfile,*.tar.gz,STDOUT,STDERR)\n"
        f"User\\ Name={job.user}\n"
        f"email={job.user}@nsg-emulator.invalid\n"
        "institution=Emulated Institute of Neuroscience\n"
        "country=US\n"
        f"submitted={job.date_submitted}\n"
        f"staged={timestamp()}\n"
    )
