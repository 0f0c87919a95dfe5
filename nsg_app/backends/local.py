"""This machine: the package runs in `python -m nsg_app.local`, a child of the Celery task.

The task copies the package out of storage, starts the runner in a process group of its
own (a prefork worker's processes must not run simulations themselves), then follows it:
progress into the job row every second, a cancel file when the user cancels, and the
result when it ends. The web process only reads the job row.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from models_app.bpo.package import SEED_VARIABLE
from models_app.bpo.untrusted import open_untrusted, read_untrusted_tail
from nsg_app.collection import ResultSource
from nsg_app.job_package import write_job_package
from nsg_app.local import RunStatus, estimate_time_left, read_progress, read_result
from nsg_app.local.processes import process_running, process_start_ticks
from nsg_app.models import Job
from nsg_app.stages import job_finish, stage_record

RESULT_FILES = ("STDOUT", "STDERR", "output.tar.gz")
FOLLOW_EVERY_SECONDS = 1.0


def work_dir(job: Job) -> Path:
    return settings.LOCAL_RUNS_DIR / f"job-{job.pk}"


def run_environment(job: Job) -> dict[str, str]:
    """The runner's environment; the seed also reaches packages whose init.py is not ours."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if job.seed is not None:
        env[SEED_VARIABLE] = str(job.seed)
    return env


def local_cores(requested: int | None = None) -> int:
    available = os.cpu_count() or 1
    wanted = requested or settings.LOCAL_CORES or available
    return max(1, min(wanted, available))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_for_page(path: Path) -> dict | None:
    """The runner's progress, with what the pages show (fraction, elapsed, time left)."""
    progress = read_progress(path)
    if progress is None:
        return None
    now = timezone.now()
    left = estimate_time_left(progress, now)
    fraction = progress.fraction_done or 0.0
    return {
        "phase": progress.phase,
        "message": progress.message,
        "generation": progress.generation,
        "max_ngen": progress.max_ngen,
        "offspring_size": progress.offspring_size,
        "evaluations": progress.evaluations_done,
        "evaluations_expected": progress.evaluations_expected,
        "best": progress.best,
        "average": progress.average,
        "std": progress.std,
        "cores": progress.cores,
        # Wall time inside the optimisation's maps: with the cores, its time per evaluation.
        "evaluation_seconds": progress.evaluation_seconds,
        "fraction": fraction,
        "elapsed_text": _clock((now - progress.started_at).total_seconds()),
        "left_text": _clock(left.total_seconds()) if left is not None else "",
        "updated_at": progress.updated_at.isoformat(),
        # On an ipyparallel cluster: what each engine did so far.
        "engines": [
            {"id": engine_id, "evaluations": count, "lost": engine_id in progress.engines_lost}
            for engine_id, count in progress.engines.items()
        ]
        + [
            {"id": engine_id, "evaluations": 0, "lost": True}
            for engine_id in progress.engines_lost
            if engine_id not in progress.engines
        ],
    }


def engines_for_page(cluster: dict) -> list[dict]:
    """A finished cluster run's engines from its result.json: id, host, evaluations, lost."""
    return [
        {
            "id": engine.get("id"),
            "host": engine.get("host"),
            "evaluations": engine.get("evaluations", 0),
            "lost": bool(engine.get("lost")),
        }
        for engine in cluster.get("engines", [])
        if isinstance(engine, dict)
    ]


class LocalBackend:
    name = Job.Backend.LOCAL

    def submit(self, job: Job, *, retry: bool = False) -> None:
        """Run the job to its end (this is the Celery task's whole work for a local job).

        The runner starts in a session of its own and is recorded by (pid, start time), so
        that a restarted worker can tell whether it still runs (see ``adopt``).
        """
        if process_running(job.runner_pid, job.runner_start_ticks):
            self.adopt(job)  # an earlier attempt's runner still runs: follow it, never twice
            return
        folder = work_dir(job)
        if folder.exists():
            shutil.rmtree(folder)  # an earlier attempt that never started its runner
        folder.mkdir(parents=True)
        package = folder / f"{job.package.run_name}.zip"
        with open(package, "wb") as target:
            write_job_package(job, target)
        run = folder / "run"
        command = [
            sys.executable,
            "-m",
            "nsg_app.local",
            str(package),
            "-o",
            str(run),
            "--cores",
            str(job.cores_per_node or local_cores()),
            "--runtime-hours",
            str(job.runtime_hours),
            "--mechanisms-cache",
            str(settings.MECHANISMS_CACHE_DIR),
            "--progress-file",
            str(folder / "progress.json"),
            "--cancel-file",
            str(folder / "cancel"),
            "--sandbox",
            settings.SANDBOX,
        ]
        if settings.LOCAL_CLUSTER is not None:
            command += ["--cluster", str(settings.LOCAL_CLUSTER)]
        with open(folder / "runner.log", "wb") as log:
            runner = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=run_environment(job),
            )
        now = timezone.now()
        started = Job.objects.filter(pk=job.pk, state=Job.State.SUBMITTING).update(
            handle=f"LOCAL-{job.pk}",
            state=Job.State.ACTIVE,
            stage="RUNNING",
            date_submitted=now,
            heartbeat_at=now,
            runner_pid=runner.pid,
            runner_start_ticks=process_start_ticks(runner.pid),
        )
        if not started:  # cancelled while it was being prepared
            _kill_group(runner)
            return
        job.refresh_from_db()
        stage_record(
            job,
            "RUNNING",
            message=(
                f"Started on the ipyparallel cluster {settings.LOCAL_CLUSTER}, seed {job.seed}."
                if settings.LOCAL_CLUSTER is not None
                else f"Started on this machine with {job.cores_per_node} cores, seed {job.seed}."
            ),
        )
        try:
            self._follow(job, lambda: runner.poll() is None)
        except Exception:
            # A bug in the following stops the run: no simulation runs without a watcher.
            # A worker shutting down leaves it running; the sweep adopts it after a restart.
            _kill_group(runner)
            raise
        runner.wait()
        self._finish(job, run)

    def adopt(self, job: Job) -> None:
        """Follow a run whose task is gone (a killed or restarted worker) to its end.

        A live runner is followed (and cancelled through its cancel file); a finished one's
        result is read as if its task had seen it end.
        """
        pid, ticks = job.runner_pid, job.runner_start_ticks
        if process_running(pid, ticks):
            stage_record(job, "RUNNING", message="Followed again after a restart of the worker.")
            self._follow(job, lambda: process_running(pid, ticks))
        self._finish(job, work_dir(job) / "run")

    def _follow(self, job: Job, running: Callable[[], bool]) -> None:
        folder = work_dir(job)
        progress_file, cancel_file = folder / "progress.json", folder / "cancel"
        while running():
            time.sleep(FOLLOW_EVERY_SECONDS)
            now = timezone.now()
            fields = {"heartbeat_at": now, "updated_at": now}
            progress = progress_for_page(progress_file)
            if progress is not None:
                fields["progress"] = progress
            Job.objects.filter(pk=job.pk).update(**fields)
            if Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).exists():
                cancel_file.touch()
        final = progress_for_page(progress_file)
        if final is not None:
            Job.objects.filter(pk=job.pk).update(progress=final)

    def _finish(self, job: Job, run: Path) -> None:
        job.refresh_from_db()
        if job.state != Job.State.ACTIVE:
            return  # finished already (by another follower, or cancelled before it ran)
        result = read_result(run / "result.json")
        if result is None:
            log = read_untrusted_tail(
                work_dir(job) / "runner.log", root=work_dir(job), max_chars=2000
            )
            stage_record(job, "FAILED", message="The local runner stopped without a result.")
            job_finish(
                job,
                state=Job.State.FAILED,
                error=f"The local runner stopped without a result: {log}",
            )
            return
        job.stage = result.status.value.upper()
        if result.status == RunStatus.COMPLETED and job.progress:
            # The last progress file may predate the end: a finished run is all done.
            job.progress = {**job.progress, "fraction": 1.0, "left_text": ""}
        if result.cluster is not None:
            job.progress = {**(job.progress or {}), "engines": engines_for_page(result.cluster)}
        job.save(update_fields=["stage", "progress", "updated_at"])
        stage_record(job, job.stage, message=result.reason)
        if result.status == RunStatus.CANCELLED and not result.checkpoint_found:
            job_finish(job, state=Job.State.CANCELLED, error="")
        elif result.status == RunStatus.CANCELLED:
            # Its last finished generation's checkpoint is worth keeping: it can be analysed
            # or continued. So it is collected, as a run stopped by its time limit is.
            job_finish(
                job,
                state=Job.State.COMPLETED,
                error=f"{result.reason} The checkpoint of its last finished generation is "
                "kept: it can be analysed or continued.",
            )
        elif (run / "output.tar.gz").exists():
            # As on NSG, a run that failed or hit its time limit still has results worth
            # keeping (STDERR says why); the copy into storage flags them.
            error = "" if result.status == RunStatus.COMPLETED else result.reason
            job_finish(job, state=Job.State.COMPLETED, error=error)
        else:
            job_finish(
                job,
                state=Job.State.FAILED,
                error=result.reason + (f"\n{result.stderr_tail}" if result.stderr_tail else ""),
            )

    def result_sources(self, job: Job) -> Iterable[ResultSource]:
        run = work_dir(job) / "run"
        for name in RESULT_FILES:
            path = run / name
            # The run's folder held the model's code at work: only regular files are copied
            # (never what a link points to), and no more than they measured when listed.
            try:
                status = path.lstat()
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(status.st_mode):
                continue

            def write(destination, path=path, size=status.st_size) -> int:
                with open_untrusted(path, root=run, max_bytes=size) as source:
                    shutil.copyfileobj(source, destination, 1024 * 1024)
                    return source.tell()

            yield ResultSource(name, status.st_size, write)

    def cancel(self, job: Job) -> None:
        Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
        # Not started yet: it never will be (the start is a conditional update).
        if Job.objects.filter(pk=job.pk, state=Job.State.SUBMITTING).update(
            state=Job.State.CANCELLED, stage="CANCELLED"
        ):
            job.refresh_from_db()
            stage_record(job, "CANCELLED", message="Cancelled before it started.")
            return
        # Running: the runner stops at its cancel file, whoever follows it (its task, or the
        # sweep's after a restart) then records the end; the file is written here at once too.
        folder = work_dir(job)
        if job.state == Job.State.ACTIVE and folder.is_dir():
            (folder / "cancel").touch()
