"""`make run`: migrate, then run Redis, the Celery workers, Celery beat and the site together.

Two workers: one for the site's short tasks (the default queue), one for local runs
(the "runs" queue), so that hours-long runs never hold up polling, collection or analyses.

`make run CLUSTER=N` also starts an ipyparallel cluster on loopback, an ipcontroller and N
ipengines (the engines under the model sandbox, like every process that runs model code), and
points local runs at it (LOCAL_CLUSTER). An engine that dies is replaced by a fresh one.

Each part runs in a process group of its own; Ctrl-C (or SIGTERM) stops every group, and
if any part dies the others are stopped too, so nothing is ever left running. A part dies
with the launcher even when the launcher is SIGKILLed (sandbox.die_with_parent): else the
next `make run` would meet the old site on its port and a second Redis on the same file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from models_app.bpo.sandbox import BWRAP, OFF, Sandbox, die_with_parent
from nsg_app.local.cluster import ClusterError, LocalCluster, start_local_cluster
from rebuild_site.environment import load_env_file
from rebuild_site.services import PrivateRedis, start_private_redis, wait_for_port

BASE_DIR = Path(__file__).resolve().parent.parent


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "rebuild_site", *args]


class Supervisor:
    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.redis: PrivateRedis | None = None
        self.cluster: LocalCluster | None = None

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(
            command, env=env, cwd=BASE_DIR, start_new_session=True, preexec_fn=die_with_parent
        )
        self.processes[name] = process
        return process

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop_all(self) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Children of a part (the worker's pool, runserver's reloader) die with the group.
            _signal_group(process, signal.SIGKILL)
            process.wait()
        if self.cluster is not None:
            self.cluster.stop()
        if self.redis is not None:
            self.redis.stop()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _wait_for_worker(env: dict[str, str], worker: subprocess.Popen, timeout: float = 90) -> None:
    """Until the worker answers a ping, so that "worker running" is true when printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with code {worker.returncode}")
        ping = subprocess.run(
            _celery("inspect", "ping", "--timeout", "2"),
            env=env,
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
        )
        if ping.returncode == 0:
            return
    raise TimeoutError(f"the Celery worker did not answer a ping in {timeout:.0f} s")


def _ensure_bubblewrap(env: dict[str, str]) -> None:
    """Install bubblewrap when the sandbox is on and it is missing; say plainly when off."""
    mode = env.get("SANDBOX", "bwrap").strip().lower() or "bwrap"
    if mode != "bwrap":
        print(
            f"WARNING: SANDBOX={mode}: the sandbox is OFF. Every model's code (opt_neuron.py, "
            "model/*.py, checkpoints, .mod files) runs unconfined as this user, with its "
            "files and the site's secrets. Only for a single-user machine whose user trusts "
            "every model.",
            flush=True,
        )
        return
    if shutil.which("bwrap"):
        print("Model code runs in the bubblewrap sandbox.", flush=True)
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("Installing bubblewrap (the sandbox that confines model code)…", flush=True)
        quiet = {
            "stdout": subprocess.DEVNULL,
            "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        }
        subprocess.run(["apt-get", "update", "-q"], check=False, **quiet)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "bubblewrap"],
            check=False,
            **quiet,
        )
    if not shutil.which("bwrap"):
        raise RuntimeError(
            "bubblewrap (bwrap) is missing: model code runs in it. Install it "
            "(Debian: sudo apt-get install bubblewrap), or, on a single-user machine whose "
            "user trusts every model, run `SANDBOX=off make run`."
        )


def _start_cluster(env: dict[str, str], var_dir: Path, engines: int) -> LocalCluster:
    """The loopback cluster of `make run CLUSTER=N`; local runs are pointed at it."""
    mode = env.get("SANDBOX", BWRAP).strip().lower() or BWRAP
    runs = Path(env.get("LOCAL_RUNS_DIR") or var_dir / "local-runs").resolve()
    runs.mkdir(parents=True, exist_ok=True)
    folder = var_dir / "cluster"
    cluster = start_local_cluster(
        folder / "ipython",
        engines,
        sandbox=Sandbox(BWRAP if mode == BWRAP else OFF),
        # The engines evaluate the runs in their work folders, at the same paths.
        readable=[runs],
        log_folder=folder / "logs",
    )
    env["LOCAL_CLUSTER"] = str(cluster.connection_file)
    print(
        f"ipyparallel cluster: a controller on 127.0.0.1 and {engines} engines; local runs "
        f"evaluate on it (LOCAL_CLUSTER={cluster.connection_file}). Engines on other machines: "
        f"ipengine --file {cluster.engine_file} (see the README).",
        flush=True,
    )
    return cluster


def _replace_dead_engines(cluster: LocalCluster) -> None:
    for process in list(cluster.engines):
        if process.poll() is not None:
            cluster.engines.remove(process)
            replacement = cluster.start_engine()
            print(
                f"An ipengine exited (code {process.returncode}); started a fresh one "
                f"(pid {replacement.pid}).",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole site for development.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2"))
    )
    parser.add_argument(
        "--runner-concurrency",
        type=int,
        default=int(os.environ.get("RUNNER_CONCURRENCY", "1")),
        help="local runs at once",
    )
    parser.add_argument(
        "--cluster",
        type=int,
        default=int(os.environ.get("CLUSTER") or 0),
        metavar="N",
        help="start an ipyparallel cluster of N engines on loopback for local runs (0: none)",
    )
    args = parser.parse_args(argv)

    # The .env's variables reach every part, and this process's own REDIS_URL test.
    load_env_file(BASE_DIR)
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "rebuild_site.settings")
    var_dir = Path(env.get("VAR_DIR", BASE_DIR / "var"))
    env["VAR_DIR"] = str(var_dir)

    supervisor = Supervisor()
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        _ensure_bubblewrap(env)
        subprocess.run(_manage("migrate", "--no-input", "-v", "0"), env=env, check=True)
        if not env.get("REDIS_URL"):
            supervisor.redis = start_private_redis(var_dir / "redis")
            env["REDIS_URL"] = supervisor.redis.url
            print(f"Redis ({supervisor.redis.binary}) at {supervisor.redis.url}", flush=True)
        if args.cluster > 0:
            supervisor.cluster = _start_cluster(env, var_dir, args.cluster)
        subprocess.run(_manage("prepare_site"), env=env, check=True)
        supervisor.start(
            "worker",
            _celery(
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(args.concurrency),
                "--hostname",
                "worker@%h",
                "--queues",
                "celery",
            ),
            env,
        )
        supervisor.start(
            "runner",
            _celery(
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(args.runner_concurrency),
                "--hostname",
                "runner@%h",
                "--queues",
                "runs",
            ),
            env,
        )
        supervisor.start(
            "beat",
            _celery(
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(var_dir / "celerybeat-schedule"),
                "--pidfile",
                "",
            ),
            env,
        )
        site = supervisor.start(
            "site", _manage("runserver", f"{args.host}:{args.port}", "--noreload"), env
        )
        wait_for_port(args.host, args.port, timeout=60, process=site)
        _wait_for_worker(env, supervisor.processes["worker"])
        print(
            f"\nThe site is at http://{args.host}:{args.port}/ (worker, runner and beat running). "
            "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        while not stopping:
            exited = supervisor.first_exited()
            if exited:
                name, code = exited
                print(f"The {name} stopped (exit code {code}); stopping the rest.", flush=True)
                return 1
            cluster = supervisor.cluster
            if cluster is not None:
                if cluster.controller.poll() is not None:
                    print("The ipcontroller stopped; stopping the rest.", flush=True)
                    return 1
                _replace_dead_engines(cluster)
            time.sleep(0.5)
        return 0
    except (RuntimeError, TimeoutError, ClusterError) as error:
        print(f"Start-up failed: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(
            f"Start-up failed: {' '.join(map(str, error.cmd))} exited {error.returncode}",
            file=sys.stderr,
        )
        return 1
    finally:
        print("Stopping…", flush=True)
        supervisor.stop_all()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
