"""The emulator's jobs and where they are kept.

One folder per job under `<data dir>/jobs/<handle>/`:
  job.json    the job's state, rewritten (atomically) at every change
  inputfile   the uploaded zip, as sent
  workdir/    the "cluster" working directory while staged or running
  results/    STDOUT, STDERR and output.tar.gz once the job has finished
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import secrets
import shutil
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

logger = logging.getLogger(__name__)

QUEUE = "QUEUE"
COMMANDRENDERING = "COMMANDRENDERING"
INPUTSTAGING = "INPUTSTAGING"
SUBMITTED = "SUBMITTED"
LOAD_RESULTS = "LOAD_RESULTS"
COMPLETED = "COMPLETED"

try:
    # NSG runs in San Diego and reports Pacific times (docs/nsg-protocol.md §5.1).
    NSG_TIME_ZONE = ZoneInfo("America/Los_Angeles")
except ZoneInfoNotFoundError:  # pragma: no cover - no tz database on this machine
    NSG_TIME_ZONE = None


def now() -> datetime:
    return datetime.now(NSG_TIME_ZONE) if NSG_TIME_ZONE else datetime.now().astimezone()


def timestamp(moment: datetime | None = None) -> str:
    """ISO-8601 with a numeric offset, e.g. 2024-05-02T10:00:00-07:00."""
    return (moment or now()).isoformat(timespec="seconds")


@dataclass
class Message:
    timestamp: str
    stage: str
    text: str


@dataclass
class ResultFile:
    document_id: int
    filename: str
    parameter_name: str


@dataclass
class Job:
    handle: str
    user: str
    tool: str
    vparams: dict[str, list[str]]
    metadata: list[tuple[str, str]]
    date_submitted: str
    commandline: str
    stage: str = QUEUE
    terminal: bool = False
    failed: bool = False
    messages: list[Message] = field(default_factory=list)
    results: list[ResultFile] = field(default_factory=list)
    slurm_job_id: int = 0
    top_folder: str = ""
    # "pending", "running" or "finished": tells a restart whether a run was lost.
    batch_state: str = "pending"
    batch_pid: int | None = None
    # Job faults fixed at submission (faults.py).
    fail_at_staging: bool = False
    walltime_seconds_override: float | None = None

    def add_message(self, stage: str, text: str) -> None:
        self.stage = stage
        self.messages.append(Message(timestamp(), stage, text))

    @classmethod
    def from_json(cls, data: dict) -> Job:
        data = dict(data)
        data["messages"] = [Message(**m) for m in data.get("messages", [])]
        data["results"] = [ResultFile(**r) for r in data.get("results", [])]
        data["metadata"] = [tuple(pair) for pair in data.get("metadata", [])]
        return cls(**data)


def new_handle(tool: str) -> str:
    return f"NGBW-JOB-{tool}-{secrets.token_hex(16).upper()}"


class JobStore:
    """Jobs in memory, each mirrored to its job.json; one lock guards them all."""

    def __init__(self, data_dir: Path) -> None:
        # Absolute, so that job paths still match a process's cwd (runner._kill_orphan).
        self.root = (data_dir / "jobs").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._next_document_id = random.randint(20, 60)

    def load(self) -> list[Job]:
        """Read every job.json (after a restart); returns the jobs found."""
        with self.lock:
            for state_file in sorted(self.root.glob("*/job.json")):
                try:
                    job = Job.from_json(json.loads(state_file.read_text("utf-8")))
                except (OSError, ValueError, TypeError) as exc:
                    logger.warning("Skipping unreadable job state %s: %s", state_file, exc)
                    continue
                self._jobs[job.handle] = job
                for result in job.results:
                    self._next_document_id = max(self._next_document_id, result.document_id + 1)
            return list(self._jobs.values())

    def folder(self, handle: str) -> Path:
        return self.root / handle

    def add(self, job: Job, upload: bytes) -> None:
        folder = self.folder(job.handle)
        folder.mkdir(parents=True)
        (folder / "inputfile").write_bytes(upload)
        with self.lock:
            self._jobs[job.handle] = job
            self.save(job)

    def save(self, job: Job) -> None:
        with self.lock:
            if job.handle not in self._jobs:
                return  # deleted meanwhile
            folder = self.folder(job.handle)
            temporary = folder / "job.json.tmp"
            temporary.write_text(json.dumps(asdict(job), indent=2), "utf-8")
            os.replace(temporary, folder / "job.json")

    def get(self, handle: str) -> Job | None:
        """A copy of the job, safe to read while its runner changes the original."""
        with self.lock:
            job = self._jobs.get(handle)
            return copy.deepcopy(job) if job is not None else None

    def live(self, handle: str) -> Job | None:
        """The job itself, for its runner; change it only while holding `lock`."""
        with self.lock:
            return self._jobs.get(handle)

    def for_user(self, user: str) -> list[Job]:
        with self.lock:
            jobs = [copy.deepcopy(job) for job in self._jobs.values() if job.user == user]
        return sorted(jobs, key=lambda job: job.date_submitted)

    def delete(self, handle: str) -> None:
        with self.lock:
            self._jobs.pop(handle, None)
        shutil.rmtree(self.folder(handle), ignore_errors=True)

    def allocate_document_ids(self, count: int) -> list[int]:
        """Small ids, unique across jobs, with gaps as on NSG (e.g. 36, 37, 39)."""
        with self.lock:
            ids = []
            for _ in range(count):
                ids.append(self._next_document_id)
                self._next_document_id += random.randint(1, 3)
            return ids

    def expired(self, retention: timedelta) -> list[str]:
        """Handles of finished jobs submitted longer ago than `retention`."""
        limit = now() - retention
        with self.lock:
            return [
                job.handle
                for job in self._jobs.values()
                if job.terminal and datetime.fromisoformat(job.date_submitted) < limit
            ]
