"""One poll cycle for 1,000 active NSG jobs across 50 accounts (issue: 50 requests, not 1,050).

The site polls NSG once per account (`GET /job/{user}?expand=true`, nsg_app.polling
.account_poll, run by the poll task through nsg_app.services); the HHNB portal lists the jobs and then asks for each one (N+1 requests).
Both are measured against the NSG emulator, started as a subprocess on loopback with 50
users and 20 jobs each. The jobs are real emulator jobs, submitted as zips whose init.py
would sleep for an hour, but a long --stage-seconds keeps them in QUEUE: they are listed
with their full status like any active job, without 1,000 Python processes (about 10 GB)
nor 1,000 runner threads waking ten times a second to watch them.

Measured, each REPEATS times (median and all runs printed):
1. the poll cycle as beat dispatches it: account_poll for every account accounts_due()
   returns, in this process, sequentially and with a pool of POOL_THREADS threads (as
   that many Celery workers would); the requests the emulator logged, the wall time, and
   for the sequential cycle the database statements;
2. the same 50 `?expand=true` requests alone (HTTP and parsing, no database);
3. the N+1 client: `GET /job/{user}` without expand, then the client's job_status on each
   job (1,050 requests), alone, then followed by the same statuses_apply as a poll
   (sequentially and with the pool), so that the two cycles do the same database work.

Run: `python -m bench nsg_polling`.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.emulator import RunningEmulator  # noqa: E402

APP_KEY = "BenchApp-0123456789ABCDEF0123456789ABCDEF"
ACCOUNTS = 50
JOBS_PER_ACCOUNT = 20
POOL_THREADS = 8
REPEATS = 3
TOOL = "BLUEPYOPT_EXPANSE"
# Long enough that no job leaves QUEUE while the benchmark runs.
QUEUED_STAGE_SECONDS = 1_000_000
SLEEPER_SCRIPT = "import time\n\ntime.sleep(3600)\n"
_RESULT_MARK = "BENCH-RESULT "


# ------------------------------------------------------------ shared with nsg_collect


def start_emulator(
    data_dir: Path, log_path: Path, users: dict[str, str], *, stage_seconds: float
) -> RunningEmulator:
    """The emulator as a subprocess on a free loopback port, with the test endpoints."""
    command = [sys.executable, "-m", "nsg_app.emulator", "--host", "127.0.0.1", "--port", "0"]
    for user, password in users.items():
        command += ["--user", f"{user}:{password}"]
    command += [
        "--appkey",
        APP_KEY,
        "--stage-seconds",
        str(stage_seconds),
        "--min-poll-seconds",
        "0",
        "--enable-test-endpoints",
        "--data-dir",
        str(data_dir),
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+/cipresrest/v1)$", line.strip())
    if match is None:
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(f"emulator did not start: {line!r}\n{log_path.read_text()}")
    return RunningEmulator(process, match.group(1), data_dir, log_path)


def django_environment(var_dir: Path, emulator: RunningEmulator) -> dict[str, str]:
    """The settings' environment: development settings, SQLite and files under var_dir."""
    env = dict(os.environ)
    for name in ("DATABASE_URL", "MEDIA_ROOT", "S3_BUCKET", "S3_ENDPOINT_URL", "CREDENTIALS_KEY"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="rebuild_site.settings",
        DEBUG="1",
        VAR_DIR=str(var_dir),
        NSG_BASE_URL=emulator.base_url,
        NSG_APP_KEY=APP_KEY,
        NSG_MIN_POLL_SECONDS="0",
    )
    return env


def django_setup(var_dir: Path, emulator: RunningEmulator) -> None:
    """Configure Django for the emulator and migrate a fresh SQLite database."""
    env = django_environment(var_dir, emulator)
    for name in set(os.environ) - set(env):
        del os.environ[name]
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def django_already_configured() -> bool:
    # The settings are read once per process: another benchmark run before this one in
    # the same `python -m bench` may have configured Django for its own (deleted) folder.
    from django.conf import settings

    return settings.configured


def main_in_fresh_process(module: str) -> dict:
    """Run `module.main()` in a new interpreter, its output passed through; its result."""
    code = (
        f"import json, {module} as bench\n"
        f"print({_RESULT_MARK!r} + json.dumps(bench.main(), default=str), flush=True)\n"
    )
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    result = None
    for line in process.stdout:
        if line.startswith(_RESULT_MARK):
            result = json.loads(line[len(_RESULT_MARK) :])
        else:
            print(line, end="", flush=True)
    process.stdout.close()
    if process.wait() != 0 or result is None:
        raise RuntimeError(f"{module} failed in its own process (exit {process.returncode})")
    return result


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# ------------------------------------------------------------------------ the benchmark


def main() -> dict:
    if django_already_configured():
        return main_in_fresh_process(__name__)
    scratch = Path(tempfile.mkdtemp(prefix="bench-nsg-polling-"))
    users = {f"bench{number:02d}": f"pw-{number:02d}" for number in range(ACCOUNTS)}
    emulator = start_emulator(
        scratch / "emulator",
        scratch / "emulator.log",
        users,
        stage_seconds=QUEUED_STAGE_SECONDS,
    )
    try:
        django_setup(scratch / "var", emulator)
        started = time.perf_counter()
        _accounts_with_queued_jobs(users)
        print(
            f"set-up: {ACCOUNTS} accounts, {ACCOUNTS * JOBS_PER_ACCOUNT} queued jobs submitted "
            f"to the emulator in {time.perf_counter() - started:.1f} s; load average {load_average()}"
        )
        try:
            return _measure(emulator, users)
        finally:
            _delete_emulator_jobs(users)
    finally:
        from django.db import connections

        connections.close_all()
        emulator.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _sleeper_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sleeper/", "")
        archive.writestr("sleeper/init.py", SLEEPER_SCRIPT)
    return buffer.getvalue()


def _accounts_with_queued_jobs(users: dict[str, str]) -> None:
    """Site users with checked NSG accounts, each with JOBS_PER_ACCOUNT jobs queued at NSG."""
    from django.contrib.auth import get_user_model

    from nsg_app.backends.nsg import nsg_client, submission_fields
    from nsg_app.models import Job
    from nsg_app.polling import job_apply_status
    from nsg_app.services import nsg_account_save

    package = _sleeper_zip()
    for username, password in users.items():
        owner = get_user_model().objects.create_user(f"site-{username}")
        nsg_account_save(owner=owner, username=username, password=password)
        with nsg_client(username, password) as client:
            for number in range(JOBS_PER_ACCOUNT):
                job = Job.objects.create(
                    owner=owner,
                    backend=Job.Backend.NSG,
                    folder=f"sleeper_{username}_{number:02d}",
                    tool=TOOL,
                    nodes=1,
                    cores_per_node=1,
                    runtime_hours=48,
                )
                # What NsgBackend.submit does, with the zip from memory instead of storage.
                status = client.submit(
                    TOOL, package, input_filename=f"{job.folder}.zip", **submission_fields(job)
                )
                job.handle, job.state = status.handle, Job.State.ACTIVE
                job.save(update_fields=["handle", "state", "updated_at"])
                job_apply_status(job, status)


def _requests_logged(emulator: RunningEmulator, users: dict[str, str]) -> Counter:
    """Requests the emulator received per user since the last forget_requests()."""
    return Counter({user: len(emulator.requests_of(user)) for user in users})


class _StatementCounter:
    """A database execute wrapper counting statements by their first word."""

    def __init__(self, counts: Counter) -> None:
        self.counts = counts

    def __call__(self, execute, sql, params, many, context):
        self.counts[sql.split(None, 1)[0].upper()] += 1
        return execute(sql, params, many, context)


def _timed_cycle(emulator: RunningEmulator, users: dict[str, str], run_cycle):
    """(seconds, requests logged per user, what run_cycle returned)."""
    emulator.forget_requests()
    started = time.perf_counter()
    outcome = run_cycle()
    elapsed = time.perf_counter() - started
    return elapsed, _requests_logged(emulator, users), outcome


def _in_threads(function, items: list, threads: int) -> list:
    """`function` over `items`, here or in a pool, each pool thread closing its connection."""
    from django.db import connection

    if threads == 1:
        return [function(item) for item in items]

    def call(item):
        try:
            return function(item)
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(call, items))


def _poll_cycle(threads: int) -> Counter:
    """What beat's poll_active_jobs dispatches, run here: one account_poll per due account."""
    from nsg_app.polling import account_poll, accounts_due

    due = list(accounts_due().values_list("pk", flat=True))
    return Counter(_in_threads(account_poll, due, threads))


def _expand_requests_only(users: dict[str, str]) -> int:
    """The same 50 `?expand=true` requests without the database: the HTTP share of a cycle."""
    from nsg_app.backends.nsg import nsg_client

    jobs = 0
    for username, password in users.items():
        with nsg_client(username, password) as client:
            jobs += len(client.list_jobs())
    return jobs


def _n_plus_one(threads: int, *, apply: bool) -> int:
    """The HHNB way: the job list without expand, then one job_status per job listed;
    with `apply`, the statuses are then stored as account_poll stores its own."""
    from nsg_app.backends.nsg import client_for
    from nsg_app.models import NsgAccount
    from nsg_app.nsg.documents import parse_root
    from nsg_app.polling import statuses_apply

    def one_account(account: NsgAccount) -> int:
        with client_for(account) as client:
            listing = parse_root(client.transport.get(client.jobs_url).content, "joblist")
            handles = [title.text for title in listing.iterfind("jobs/jobstatus/selfUri/title")]
            statuses = [client.job_status(handle) for handle in handles]
        if apply:
            statuses_apply(account, statuses)
        return len(statuses)

    return sum(_in_threads(one_account, list(NsgAccount.objects.order_by("pk")), threads))


def _measure(emulator: RunningEmulator, users: dict[str, str]) -> dict:
    from django.db import connection

    from nsg_app.models import Job

    total_jobs = ACCOUNTS * JOBS_PER_ACCOUNT
    runs: dict[str, list[float]] = {}
    requests: dict[str, list[int]] = {}
    statements = Counter()

    def record(name: str, elapsed: float, logged: Counter) -> None:
        runs.setdefault(name, []).append(elapsed)
        requests.setdefault(name, []).append(sum(logged.values()))

    for _ in range(REPEATS):
        statements.clear()
        with connection.execute_wrapper(_StatementCounter(statements)):
            elapsed, logged, outcome = _timed_cycle(emulator, users, lambda: _poll_cycle(1))
        assert outcome == Counter(polled=ACCOUNTS), outcome
        assert set(logged.values()) == {1}, logged  # exactly one request per account
        record("poll_sequential", elapsed, logged)

        elapsed, logged, outcome = _timed_cycle(emulator, users, lambda: _poll_cycle(POOL_THREADS))
        assert outcome == Counter(polled=ACCOUNTS), outcome
        assert set(logged.values()) == {1}, logged
        record("poll_pool", elapsed, logged)

        elapsed, logged, listed = _timed_cycle(
            emulator, users, lambda: _expand_requests_only(users)
        )
        assert listed == total_jobs, listed
        record("expand_http_only", elapsed, logged)

        for name, threads, apply in (
            ("n_plus_one_http_only", 1, False),
            ("n_plus_one_sequential", 1, True),
            ("n_plus_one_pool", POOL_THREADS, True),
        ):
            elapsed, logged, checked = _timed_cycle(
                emulator,
                users,
                lambda threads=threads, apply=apply: _n_plus_one(threads, apply=apply),
            )
            assert checked == total_jobs, checked
            assert set(logged.values()) == {JOBS_PER_ACCOUNT + 1}, logged
            record(name, elapsed, logged)

    queued = Job.objects.filter(state=Job.State.ACTIVE, stage="QUEUE").count()
    assert queued == total_jobs, f"only {queued} of {total_jobs} jobs still active and queued"
    median = {name: statistics.median(samples) for name, samples in runs.items()}
    result = {
        "accounts": ACCOUNTS,
        "jobs": total_jobs,
        "repeats": REPEATS,
        "pool_threads": POOL_THREADS,
        "requests_per_cycle": requests["poll_sequential"][0],
        "requests_target": ACCOUNTS,
        "n_plus_one_requests": requests["n_plus_one_sequential"][0],
        **{f"{name}_median_s": round(value, 3) for name, value in median.items()},
        "db_statements_per_cycle": dict(statements),
        "n_plus_one_over_poll_ratio": round(
            median["n_plus_one_sequential"] / median["poll_sequential"], 2
        ),
        "n_plus_one_pool_over_poll_pool_ratio": round(
            median["n_plus_one_pool"] / median["poll_pool"], 2
        ),
        "n_plus_one_over_expand_requests_ratio": round(
            median["n_plus_one_http_only"] / median["expand_http_only"], 2
        ),
    }
    labels = {
        "poll_sequential": "poll cycle, sequential (account_poll x 50)",
        "poll_pool": f"poll cycle, {POOL_THREADS} threads",
        "expand_http_only": "the 50 ?expand=true requests alone (no database)",
        "n_plus_one_http_only": "N+1 requests alone (list, then job_status each)",
        "n_plus_one_sequential": "N+1 cycle (N+1 requests, statuses_apply), sequential",
        "n_plus_one_pool": f"N+1 cycle, {POOL_THREADS} threads",
    }
    print(f"{total_jobs} active jobs on {ACCOUNTS} accounts; median of {REPEATS} runs each:")
    for name, label in labels.items():
        samples = ", ".join(f"{value:.2f}" for value in runs[name])
        print(f"  {label}: {median[name]:.2f} s ({samples}); {requests[name][0]} requests")
    print(
        f"requests per poll cycle: {result['requests_per_cycle']} (target {ACCOUNTS}); "
        f"N+1: {result['n_plus_one_requests']}"
    )
    print(
        f"database statements of one sequential poll cycle: {sum(statements.values())} "
        f"({', '.join(f'{kind} {count}' for kind, count in statements.most_common())})"
    )
    print(
        f"N+1 / poll, whole cycles: {result['n_plus_one_over_poll_ratio']}x sequential, "
        f"{result['n_plus_one_pool_over_poll_pool_ratio']}x with {POOL_THREADS} threads; "
        f"requests alone: {result['n_plus_one_over_expand_requests_ratio']}x"
    )
    print(f"load average after: {load_average()}")
    return result


def _delete_emulator_jobs(users: dict[str, str]) -> None:
    from nsg_app.backends.nsg import nsg_client

    for username, password in users.items():
        with nsg_client(username, password) as client:
            for status in client.list_jobs():
                client.delete_job(status)
