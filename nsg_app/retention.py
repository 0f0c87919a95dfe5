"""Retention and deletion: what a finished run leaves on this machine, and a user's delete.

Work folders (a local run's unpacked package and outputs, an analysis' scratch folder)
are removed once the results are stored, after KEEP_WORK_FOLDERS_DAYS (0: at the next
sweep) so that they can be looked at when debugging. Deleting a job removes its stored
files, its work folder and its row, after stopping it (and deleting it at NSG).
"""

from __future__ import annotations

import re
import shutil
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from nsg_app.backends.local import work_dir
from nsg_app.collection import MANIFEST
from nsg_app.local.processes import end_process_group
from nsg_app.models import Job
from rebuild_site.deletion import DeleteRefused
from rebuild_site.stored import stored_files

_JOB_FOLDER = re.compile(r"job-(\d+)")
_ANALYSIS_FOLDER = re.compile(r"analysis-(\d+)-.+")
# Work folders of runs in these states hold nothing more to collect.
_DONE = (Job.State.COLLECTED, Job.State.FAILED, Job.State.CANCELLED, Job.State.SUBMIT_FAILED)


def work_folders_prune() -> int:
    """Remove the work folders of local runs whose results are stored (or that ended
    without any) once KEEP_WORK_FOLDERS_DAYS have passed."""
    root = settings.LOCAL_RUNS_DIR
    if not root.is_dir():
        return 0
    cutoff = timezone.now() - timedelta(days=settings.KEEP_WORK_FOLDERS_DAYS)
    found = {
        int(match[1]): entry
        for entry in root.iterdir()
        if entry.is_dir() and (match := _JOB_FOLDER.fullmatch(entry.name))
    }
    jobs = Job.objects.filter(pk__in=found).values("pk", "state", "collected_at", "updated_at")
    ended = {
        job["pk"]
        for job in jobs
        if job["state"] in _DONE and (job["collected_at"] or job["updated_at"]) <= cutoff
    }
    for pk in ended:
        shutil.rmtree(found[pk], ignore_errors=True)
    return len(ended)


def analysis_folders_prune() -> int:
    """Remove analyses' scratch folders left by a worker that was killed, once their
    analysis has ended (a live one removes its own) and KEEP_WORK_FOLDERS_DAYS passed."""
    from analysis_app.models import Analysis

    root = settings.ANALYSIS_WORK_DIR
    if not root.is_dir():
        return 0
    cutoff = (timezone.now() - timedelta(days=settings.KEEP_WORK_FOLDERS_DAYS)).timestamp()
    found = [
        (int(match[1]), entry)
        for entry in root.iterdir()
        if entry.is_dir() and (match := _ANALYSIS_FOLDER.fullmatch(entry.name))
    ]
    active = set(
        Analysis.objects.filter(
            pk__in=[pk for pk, _ in found],
            status__in=(Analysis.Status.QUEUED, Analysis.Status.RUNNING),
        ).values_list("pk", flat=True)
    )
    removed = 0
    for pk, folder in found:
        if pk not in active and folder.stat().st_mtime <= cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def job_delete(job: Job) -> int:
    """Delete the job: stopped (and deleted at NSG) first, then its stored files, its work
    folder and its row. Returns how many stored files were removed. Raises DeleteRefused
    (nothing deleted) when NSG cannot be told."""
    from nsg_app.backends import backend_for
    from nsg_app.nsg import NsgError

    if job.backend == Job.Backend.NSG and job.handle:
        try:
            backend_for(job).cancel(job)  # cancels and deletes it at NSG
        except NsgError as error:
            raise DeleteRefused(
                f"NSG did not delete the job, so it is kept here: {error.display_message or error}"
            ) from None
    elif job.is_active:
        backend_for(job).cancel(job)
    if job.backend == Job.Backend.LOCAL:
        end_process_group(job.runner_pid, job.runner_start_ticks)
    names = [result.storage_name for result in job.result_files.all()]
    if job.results_prefix:
        names = sorted(set(names) | set(stored_files(job.results_prefix)))
        names.sort(key=lambda name: name.endswith(f"/{MANIFEST}"))  # the manifest last
    for name in names:
        default_storage.delete(name)
    if job.backend == Job.Backend.LOCAL:
        shutil.rmtree(work_dir(job), ignore_errors=True)
    job.delete()
    return len(names)
