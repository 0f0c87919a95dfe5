"""A local run's results in the form NSG returns them (docs/nsg-protocol.md §7, "Output").

NSG gives back STDOUT, STDERR and output.tar.gz. The tarball's members are named ``./...``:
control files (``_JOBINFO.TXT``, ``start.txt``, ``done.txt``, ``stdout.txt``, ``stderr.txt``,
``inputfile`` ...) beside the whole run folder after the run. A local run writes the same,
with control files that describe a local run, so the collector and the analysis treat results
from both backends alike.
"""

from __future__ import annotations

import os
import platform
import sys
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from models_app.bpo.untrusted import regular_files_only

STDOUT_NAME = "STDOUT"
STDERR_NAME = "STDERR"
OUTPUT_NAME = "output.tar.gz"
INPUT_NAME = "inputfile"  # NSG keeps the uploaded zip under this name
START_NAME = "start.txt"
DONE_NAME = "done.txt"
JOB_INFO_NAME = "_JOBINFO.TXT"
COMMAND_LINE_NAME = "_COMMANDLINE"
SCHEDULER_CONF_NAME = "scheduler.conf"

TOOL = "LOCAL_BLUEPYOPT"
# The files NSG sends separately, and their names inside output.tar.gz.
_STREAMS_IN_TARBALL = {STDOUT_NAME: "stdout.txt", STDERR_NAME: "stderr.txt"}
_CONTROL_FILES = (
    COMMAND_LINE_NAME,
    JOB_INFO_NAME,
    SCHEDULER_CONF_NAME,
    START_NAME,
    DONE_NAME,
    INPUT_NAME,
)


@dataclass(frozen=True)
class JobDescription:
    """What the control files say about a local run."""

    handle: str
    top_folder: str
    command: str
    cores: int
    runtime_seconds: float
    submitted: datetime


def slurm_date(moment: datetime | None = None) -> str:
    """A date as Slurm's batch scripts print it in start.txt and done.txt."""
    return (moment or datetime.now(UTC)).strftime("%a %b %d %H:%M:%S %Z %Y")


def cancel_line(handle: str, reason: str | None = None) -> str:
    """Slurm's line in STDERR for a job stopped by scancel (no reason) or by its time limit."""
    moment = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    due_to = f" DUE TO {reason}" if reason else ""
    return (
        f"slurmstepd: error: *** JOB {handle} ON {platform.node() or 'localhost'} "
        f"CANCELLED AT {moment}{due_to} ***\n"
    )


def write_control_files(work_dir: Path, job: JobDescription) -> None:
    """The control files known before the run starts (done.txt comes at the end)."""
    hours = job.runtime_seconds / 3600
    files = {
        COMMAND_LINE_NAME: f"{job.command}\n",
        # NSG's file holds the account's name and e-mail; a local run has none to give.
        JOB_INFO_NAME: (
            f"Tool={TOOL}\n"
            f"JobHandle={job.handle}\n"
            f"resource=local ({platform.node() or 'localhost'})\n"
            f"user_input_dir={job.top_folder}\n"
            "Output=(outputfile,*.tar.gz,STDOUT,STDERR)\n"
            f"cores={job.cores}\n"
            f"runhours={hours:.4g}\n"
            f"python={sys.version.split()[0]}\n"
            f"submitted={job.submitted.isoformat(timespec='seconds')}\n"
        ),
        SCHEDULER_CONF_NAME: (
            f"fname={job.command.split()[-1]}\n"
            "nrnivmodloption=1\n"
            "nodes=1\n"
            "jobtype=local\n"
            f"runhours={hours:.4g}\n"
            f"cores_per_node={job.cores}\n"
            f"tasks_per_node={job.cores}\n"
            "threads_per_task=1\n"
        ),
        START_NAME: f"Job starting at {slurm_date(job.submitted)}\n",
    }
    for name, text in files.items():
        (work_dir / name).write_text(text, encoding="utf-8")


def write_done_file(work_dir: Path) -> None:
    # A new file in place of whatever the run left at that name (a link is replaced, never
    # written through).
    temporary = work_dir / f".{DONE_NAME}.{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    with open(temporary, "x", encoding="utf-8") as done:
        done.write(f"Job finished at {slurm_date()}\n")
    os.replace(temporary, work_dir / DONE_NAME)


def write_output_tarball(work_dir: Path, top_folder: str | None) -> Path:
    """Pack the control files, STDOUT/STDERR and the run folder as ``work_dir/output.tar.gz``.

    Only the run's own files go in: anything else a caller keeps in ``work_dir`` (a progress
    file, result.json) stays out. Written under a temporary name and renamed when complete.
    """
    target = work_dir / OUTPUT_NAME
    temporary = work_dir / f".{OUTPUT_NAME}.{os.getpid()}.tmp"
    try:
        with tarfile.open(temporary, "w:gz") as tar:
            tar.add(work_dir, arcname=".", recursive=False)
            for name in _CONTROL_FILES:
                if (work_dir / name).is_file():
                    tar.add(work_dir / name, arcname=f"./{name}", filter=regular_files_only)
            for name, member in _STREAMS_IN_TARBALL.items():
                if (work_dir / name).is_file():
                    tar.add(work_dir / name, arcname=f"./{member}", filter=regular_files_only)
            if top_folder and (work_dir / top_folder).is_dir():
                # The run folder is what the model's code left: its links and pipes stay out.
                tar.add(
                    work_dir / top_folder,
                    arcname=f"./{top_folder}",
                    recursive=True,
                    filter=regular_files_only,
                )
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
