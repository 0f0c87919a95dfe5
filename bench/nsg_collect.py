"""Collecting a 1 GiB output.tar.gz from NSG (issue: memory flat, under 100 MB above idle).

A job on the NSG emulator (a subprocess on loopback, stage pauses 0) writes 1 GiB of
random, incompressible bytes into its folder, so that the emulator's output.tar.gz is
1 GiB. The run folder also holds a small checkpoint, archived after the large file: the
site's scan for a checkpoint reads the whole archive (its worst case) and the job ends
without a flag, like a finished optimisation.

nsg_app.services.job_collect then runs in a fresh Python process, as a Celery worker
would run it, with filesystem storage under a temporary VAR_DIR: its peak RSS
(getrusage ru_maxrss) less its RSS when idle after Django's set-up is the collection's
memory. Its time is compared, in the same run and on the same bytes, with
- shutil.copyfile of the emulator's output.tar.gz to a file on the same disk;
- a plain `requests` streamed download of it to a file (64 KiB chunks, as the client);
and split into the steps of store_results, each timed alone on the same 1 GiB: the
client's download, the same with the SHA-256 on the way (`_Hashing`), the SHA-256
alone, the scan of the archive for a checkpoint, and the storage's copy of the temporary
file.

Nothing here waits for the disk (no fsync, as in the collection), but writing a few GB
into the page cache makes the kernel throttle writers when its background flush falls
behind, and a 1 GB write then takes 0.3 s or 3 s depending on what was written just
before. Every timed step therefore starts after os.sync(), and the collection and the
plain copies run REPEATS times (medians).

Run: `python -m bench nsg_collect`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.nsg_polling import (  # noqa: E402
    APP_KEY,
    django_already_configured,
    django_environment,
    django_setup,
    load_average,
    main_in_fresh_process,
    start_emulator,
)

OUTPUT_BYTES = 1 << 30
MEMORY_TARGET_MB = 100
USER, PASSWORD = "collector", "pw-collector"
TOOL = "BLUEPYOPT_EXPANSE"
RUN_NAME = "bigoutput"
# Run by the emulator as the job's init.py, in the job's folder.
BIG_OUTPUT_SCRIPT = f"""\
import os
import pickle

os.makedirs("analysis")
with open("analysis/traces.bin", "wb") as out:
    for _ in range({OUTPUT_BYTES} // (1 << 20)):
        out.write(os.urandom(1 << 20))
os.makedirs("checkpoints")
with open("checkpoints/checkpoint.pkl", "wb") as out:
    pickle.dump({{"generation": 2, "population": list(range(100))}}, out)
"""
COMPLETION_TIMEOUT_SECONDS = 900
_CHILD_MARK = "COLLECT-RESULT "
REPEATS = 3
MB = 1e6


def main() -> dict:
    if django_already_configured():
        return main_in_fresh_process(__name__)
    scratch = Path(tempfile.mkdtemp(prefix="bench-nsg-collect-"))
    emulator = start_emulator(
        scratch / "emulator", scratch / "emulator.log", {USER: PASSWORD}, stage_seconds=0
    )
    try:
        django_setup(scratch / "var", emulator)
        job = _completed_job()
        tarball = emulator.data_dir / "jobs" / job.handle / "results" / "output.tar.gz"
        size = tarball.stat().st_size
        print(f"output.tar.gz of {size / MB:.0f} MB ready; load average {load_average()}")
        env = django_environment(scratch / "var", emulator)
        env["TMPDIR"] = str(_empty_folder(scratch / "tmp"))  # the collection's temporary file
        collections = [_collect_in_fresh_process(job.pk, env) for _ in range(REPEATS)]
        checks = _check_collected(job.pk, tarball)
        plain = _plain_copies(tarball, job, scratch / "plain")
        steps = _steps(tarball, job, scratch / "steps")
        return _report(size, collections, checks, plain, steps)
    finally:
        from django.db import connections

        connections.close_all()
        emulator.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _empty_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{RUN_NAME}/", "")
        archive.writestr(f"{RUN_NAME}/init.py", BIG_OUTPUT_SCRIPT)
    return buffer.getvalue()


def _completed_job():
    """A site job submitted as NsgBackend.submit does, once NSG (the emulator) completed it."""
    from django.contrib.auth import get_user_model

    from nsg_app.backends.nsg import nsg_client, submission_fields
    from nsg_app.models import Job
    from nsg_app.services import nsg_account_save

    owner = get_user_model().objects.create_user("site-collector")
    nsg_account_save(owner=owner, username=USER, password=PASSWORD)
    job = Job.objects.create(
        owner=owner,
        backend=Job.Backend.NSG,
        folder=RUN_NAME,
        tool=TOOL,
        nodes=1,
        cores_per_node=1,
        runtime_hours=1,
    )
    started = time.perf_counter()
    with nsg_client(USER, PASSWORD) as client:
        status = client.submit(
            TOOL, _package(), input_filename=f"{RUN_NAME}.zip", **submission_fields(job)
        )
        while not status.terminal:
            if time.perf_counter() - started > COMPLETION_TIMEOUT_SECONDS:
                raise RuntimeError(f"the emulator's job is still at {status.stage}")
            time.sleep(1)
            status = client.job_status(status)
    if status.failed:
        raise RuntimeError(f"the emulator's job failed at {status.stage}")
    print(
        f"the emulator ran the job and packed its output in {time.perf_counter() - started:.0f} s"
    )
    # The state a poll would set (job_finish would also queue the collection in Celery).
    Job.objects.filter(pk=job.pk).update(
        handle=status.handle, stage=status.stage, state=Job.State.COMPLETED
    )
    return Job.objects.get(pk=job.pk)


# ----------------------------------------------------------- the collection, measured


def _collect_in_fresh_process(job_id: int, env: dict[str, str]) -> dict:
    code = f"import bench.nsg_collect as bench; bench.collect_and_measure({job_id})"
    os.sync()
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(_CHILD_MARK)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"the collecting process failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len(_CHILD_MARK) :])


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def collect_and_measure(job_id: int) -> None:
    """In the fresh process: job_collect(job_id), with its time and memory, as JSON."""
    import django

    django.setup()
    from nsg_app.models import Job
    from nsg_app.services import job_collect

    Job.objects.filter(pk=job_id).exists()  # the database connection is part of idle
    idle_rss_kib = _rss_kib()
    idle_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    outcome = job_collect(job_id)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "outcome": outcome,
        "seconds": seconds,
        "idle_rss_kib": idle_rss_kib,
        "idle_peak_kib": idle_peak_kib,
        "peak_kib": peak_kib,
        "leftover_temporary_files": os.listdir(tempfile.gettempdir()),
    }
    print(_CHILD_MARK + json.dumps(result), flush=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_collected(job_id: int, tarball: Path) -> dict:
    """The job is collected, and storage holds the emulator's bytes (size and SHA-256)."""
    from django.core.files.storage import default_storage

    from nsg_app.models import Job

    job = Job.objects.get(pk=job_id)
    stored = job.result_files.get(name="output.tar.gz")
    started = time.perf_counter()
    expected = _sha256_of(tarball)
    sha256_seconds = time.perf_counter() - started
    problems = []
    if job.state != Job.State.COLLECTED:
        problems.append(f"state {job.state}: {job.error}")
    if job.flag:
        problems.append(f"flag {job.flag}: {job.flag_detail}")
    if stored.sha256 != expected or stored.size != tarball.stat().st_size:
        problems.append("the stored output.tar.gz differs from the emulator's")
    if default_storage.size(stored.storage_name) != stored.size:
        problems.append("the file in storage has the wrong size")
    if problems:
        raise RuntimeError("; ".join(problems))
    names = sorted(job.result_files.values_list("name", flat=True))
    # The copy in storage is no longer needed: free the disk for the comparisons.
    for result_file in job.result_files.all():
        default_storage.delete(result_file.storage_name)
    return {"files": names, "sha256_1mib_reads_seconds": sha256_seconds}


# -------------------------------------------------------------- the same bytes, plainly


def _download_url(job) -> str:
    from nsg_app.backends.nsg import nsg_client

    with nsg_client(USER, PASSWORD) as client:
        files = {job_file.filename: job_file for job_file in client.list_results(job.handle)}
    return files["output.tar.gz"].download_url


def _timed(action) -> float:
    """Seconds `action` took, from a page cache without dirty pages (see the docstring)."""
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _plain_copies(tarball: Path, job, folder: Path) -> dict:
    import requests

    folder.mkdir()
    target = folder / "copy.tar.gz"
    url = _download_url(job)

    def download() -> None:
        with (
            requests.get(
                url, auth=(USER, PASSWORD), headers={"cipres-appkey": APP_KEY}, stream=True
            ) as response,
            open(target, "wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=1 << 16):
                out.write(chunk)

    copies, downloads = [], []
    for _ in range(REPEATS):
        copies.append(_timed(lambda: shutil.copyfile(tarball, target)))
        target.unlink()
        downloads.append(_timed(download))
        if target.stat().st_size != tarball.stat().st_size:
            raise RuntimeError("the plain download is incomplete")
        target.unlink()
    return {"copyfile": copies, "requests_download": downloads}


def _steps(tarball: Path, job, folder: Path) -> dict:
    """store_results' steps, each alone, on the same 1 GiB (see nsg_app/collection.py)."""
    from django.core.files.storage import default_storage

    from nsg_app.backends.nsg import nsg_client
    from nsg_app.collection import _Findings, _Hashing, _inspect, _replace

    folder.mkdir()
    target = folder / "output.tar.gz"
    with nsg_client(USER, PASSWORD) as client:
        (job_file,) = [f for f in client.list_results(job.handle) if f.filename == "output.tar.gz"]
        with open(target, "wb") as out:
            download = _timed(lambda: client.download(job_file, out))
        target.unlink()
        with open(target, "wb") as out:
            hashing = _Hashing(out)
            download_and_hash = _timed(lambda: client.download(job_file, hashing))

    def hash_in_64k_chunks() -> None:
        digest = hashlib.sha256()
        with open(target, "rb") as file:
            while chunk := file.read(1 << 16):
                digest.update(chunk)

    sha256 = _timed(hash_in_64k_chunks)
    findings = _Findings()
    with open(target, "rb") as file:
        scan = _timed(lambda: _inspect("output.tar.gz", file, findings))
    if not findings.checkpoint_found:
        raise RuntimeError("the scan found no checkpoint in output.tar.gz")
    storage_name = f"bench/{job.folder}/output.tar.gz"
    with open(target, "rb") as file:
        store = _timed(lambda: _replace(storage_name, file))
    default_storage.delete(storage_name)
    target.unlink(missing_ok=True)  # the filesystem storage moves the file into place
    return {
        "client_download_seconds": download,
        "client_download_with_sha256_seconds": download_and_hash,
        "sha256_64kib_reads_seconds": sha256,
        "checkpoint_scan_seconds": scan,
        "storage_save_seconds": store,
    }


# ----------------------------------------------------------------------------- figures


def _report(size: int, collections: list[dict], checks: dict, plain: dict, steps: dict) -> dict:
    times = [run["seconds"] for run in collections]
    seconds = statistics.median(times)
    copy_seconds = statistics.median(plain["copyfile"])
    download_seconds = statistics.median(plain["requests_download"])
    worst = max(collections, key=lambda run: run["peak_kib"] - run["idle_rss_kib"])
    leftovers = sorted({name for run in collections for name in run["leftover_temporary_files"]})
    result = {
        "bytes": size,
        "repeats": REPEATS,
        "collect_median_s": round(seconds, 2),
        "collect_mb_per_s": round(size / MB / seconds, 1),
        "idle_rss_mb": round(worst["idle_rss_kib"] * 1024 / MB, 1),
        "peak_rss_mb": round(worst["peak_kib"] * 1024 / MB, 1),
        "peak_above_idle_mb": round((worst["peak_kib"] - worst["idle_rss_kib"]) * 1024 / MB, 1),
        "memory_target_mb": MEMORY_TARGET_MB,
        "copyfile_median_s": round(copy_seconds, 2),
        "requests_download_median_s": round(download_seconds, 2),
        "collect_over_copyfile_ratio": round(seconds / copy_seconds, 1),
        "collect_over_requests_download_ratio": round(seconds / download_seconds, 1),
        **{name: round(value, 2) for name, value in steps.items()},
        "files_collected": checks["files"],
        "temporary_files_left": leftovers,
    }

    def runs(samples: list[float]) -> str:
        return ", ".join(f"{value:.2f}" for value in samples)

    print(
        f"job_collect, fresh process: {size / MB:.0f} MB in {seconds:.2f} s, median of "
        f"{runs(times)} ({result['collect_mb_per_s']} MB/s); files {', '.join(checks['files'])}"
    )
    print(
        f"memory (the largest of {REPEATS} runs): idle {result['idle_rss_mb']} MB, peak "
        f"{result['peak_rss_mb']} MB, peak above idle {result['peak_above_idle_mb']} MB "
        f"(target < {MEMORY_TARGET_MB} MB)"
    )
    print(
        f"same bytes, plainly: shutil.copyfile {copy_seconds:.2f} s ({runs(plain['copyfile'])}), "
        f"requests streamed download {download_seconds:.2f} s "
        f"({runs(plain['requests_download'])})"
    )
    print(
        f"collect / copyfile: {result['collect_over_copyfile_ratio']}x; "
        f"collect / requests download: {result['collect_over_requests_download_ratio']}x"
    )
    print("store_results' steps, each alone on the same bytes:")
    labels = {
        "client_download_seconds": "client.download to a file",
        "client_download_with_sha256_seconds": "client.download through _Hashing (SHA-256)",
        "sha256_64kib_reads_seconds": "SHA-256 alone (64 KiB reads of the file)",
        "checkpoint_scan_seconds": "scan of output.tar.gz for a checkpoint (whole archive)",
        "storage_save_seconds": "storage save of the temporary file",
    }
    for name, label in labels.items():
        print(f"  {label}: {steps[name]:.2f} s ({size / MB / steps[name]:.0f} MB/s)")
    parts = (
        steps["client_download_with_sha256_seconds"]
        + steps["checkpoint_scan_seconds"]
        + steps["storage_save_seconds"]
    )
    print(f"  download with SHA-256 + scan + save: {parts:.2f} s; job_collect: {seconds:.2f} s")
    print(f"load average after: {load_average()}")
    if leftovers:
        print(f"temporary files left by the collection: {leftovers}")
    return result
