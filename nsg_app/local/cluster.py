"""Runs on an ipyparallel cluster: find the controller, check its engines, ready them for a run.

The HBP models spread their evaluations over an ipyparallel cluster themselves when
``USEIPYP=1``: ``opt_neuron.py`` opens ``Client(profile=os.getenv('IPYTHON_PROFILE'))`` and
maps over a load-balanced view. The local runner only has to give the unmodified package a
profile folder holding the controller's client connection file, and, before the run starts,
make sure the cluster can serve it (``check_cluster``):

- the controller answers;
- it has engines (how many: the run's parallelism);
- each engine imports neuron, sees the run's top folder at the same path (a shared folder:
  the model's pickled evaluator names its morphology by absolute path, and its classes live
  in the model's own ``model`` package) and loads the package's compiled mechanisms from it.

What the engines run for that is ``inject/cluster_engine.py``, sent as source. Each failure
gets a message naming the engine and what it lacks (``ClusterError``).

A cluster is named by its client connection file (``ipcontroller-client.json``) or by a
profile folder holding ``security/ipcontroller-client.json``.

Django-free: the runner, ``manage.py run_local --cluster`` and the site share it;
``start_local_cluster`` also serves ``make run CLUSTER=N`` and the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models_app.bpo.errors import BpoError
from models_app.bpo.sandbox import Limits, Sandbox, kill_group

from .inject.rebuild_local_optimisation import ENGINE_SOURCE

CLIENT_FILE = "ipcontroller-client.json"
ENGINE_FILE = "ipcontroller-engine.json"
# The profile a cluster run's package is given: IPYTHONDIR/profile_<name>/security/.
RUN_PROFILE = "rebuild"
CONNECT_SECONDS = 10.0
# Preparing an engine imports NEURON and loads the mechanisms: seconds; more when it is busy.
PREPARE_SECONDS = 120.0
REGISTRATION_SECONDS = 300


class ClusterError(BpoError):
    summary = "The ipyparallel cluster cannot run this optimisation"


@dataclass(frozen=True)
class Engine:
    id: int
    host: str
    pid: int
    neuron: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid, "neuron": self.neuron}


@dataclass(frozen=True)
class ClusterCheck:
    connection_file: Path
    engines: tuple[Engine, ...] = field(default_factory=tuple)


def client_connection_file(cluster: str | os.PathLike[str]) -> Path:
    """The client connection file of ``cluster``: that file, or a profile folder's.

    Raises ClusterError when there is none, or it is not a connection file.
    """
    path = Path(cluster).expanduser()
    if path.is_dir():
        candidate = path / "security" / CLIENT_FILE
        if not candidate.is_file():
            raise ClusterError(
                [
                    f"The folder {path} is not an ipyparallel profile: it has no "
                    f"security/{CLIENT_FILE} (start ipcontroller with this profile first)."
                ]
            )
        path = candidate
    elif not path.is_file():
        raise ClusterError([f"No ipyparallel connection file or profile folder at {path}."])
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ClusterError([f"{path} is not a readable connection file: {error}"]) from None
    if not isinstance(document, dict) or "key" not in document or "interface" not in document:
        raise ClusterError(
            [f"{path} is not an ipyparallel client connection file (no key or interface)."]
        )
    if "notification" not in document or "hb_ping" in document:
        raise ClusterError(
            [
                f"{path} is not a client connection file ({ENGINE_FILE} is the engines' one; "
                f"the client's is {CLIENT_FILE})."
            ]
        )
    return path.resolve()


@contextlib.contextmanager
def connected(connection_file: Path, *, timeout: float = CONNECT_SECONDS) -> Iterator[Any]:
    """An ipyparallel Client of the controller, closed afterwards; ClusterError if it is silent."""
    import ipyparallel

    try:
        client = ipyparallel.Client(str(connection_file), timeout=timeout)
    except (TimeoutError, ipyparallel.error.TimeoutError, OSError) as error:
        raise ClusterError(
            [
                f"The controller named by {connection_file} does not answer within "
                f"{timeout:g} s ({error}). Is ipcontroller running?"
            ]
        ) from None
    try:
        yield client
    finally:
        client.close()


def engine_source() -> str:
    with open(ENGINE_SOURCE, encoding="utf-8") as source:
        return source.read()


def count_engines(cluster: str | os.PathLike[str], *, timeout: float) -> int:
    """How many engines the cluster's controller has now; ClusterError if it is silent."""
    with connected(client_connection_file(cluster), timeout=timeout) as client:
        return len(client.ids)


def check_cluster(
    cluster: str | os.PathLike[str],
    *,
    top: Path | None = None,
    digest: str | None = None,
    engine_wait: float = CONNECT_SECONDS,
    prepare_seconds: float = PREPARE_SECONDS,
) -> ClusterCheck:
    """Check the cluster; with ``top``, ready every engine for the run in that folder.

    ``digest`` names the compiled mechanisms installed in ``top`` (None: it has none).
    Raises ClusterError listing every problem found.
    """
    connection_file = client_connection_file(cluster)
    with connected(connection_file) as client:
        if not client.ids:
            try:
                client.wait_for_engines(1, timeout=engine_wait)
            except Exception:  # ipyparallel's TimeoutError, or the controller gone meanwhile
                raise ClusterError(
                    [
                        f"The controller named by {connection_file} answers but has no "
                        f"engines (none registered within {engine_wait:g} s). Start some with "
                        f"`ipengine --file {connection_file.with_name(ENGINE_FILE)}`."
                    ]
                ) from None
        ids = sorted(client.ids)
        folder = str((top or Path.cwd()).resolve())
        answers = _prepare(client, ids, folder, digest, prepare_seconds)
    problems, engines = [], []
    for engine_id in ids:
        answer = answers.get(engine_id)
        if isinstance(answer, str):
            problems.append(f"Engine {engine_id}: {answer}")
            continue
        where = f"Engine {engine_id} ({answer.get('host')}, pid {answer.get('pid')})"
        if not answer.get("ok"):
            problems.append(f"{where} {answer.get('message')}.")
            continue
        engines.append(
            Engine(
                id=engine_id,
                host=str(answer.get("host")),
                pid=int(answer.get("pid") or 0),
                neuron=answer.get("neuron"),
            )
        )
    if problems:
        raise ClusterError(problems)
    return ClusterCheck(connection_file=connection_file, engines=tuple(engines))


def _prepare(
    client: Any, ids: list[int], folder: str, digest: str | None, seconds: float
) -> dict[int, dict | str]:
    """Each engine's answer to ``rebuild_prepare_engine``, or what went wrong there."""
    import ipyparallel

    call = f"\n_rebuild_answer = rebuild_prepare_engine({folder!r}, {digest!r})\n"
    pending = {
        engine_id: client[engine_id].execute(engine_source() + call, block=False)
        for engine_id in ids
    }
    deadline = time.monotonic() + seconds
    answers: dict[int, dict | str] = {}
    for engine_id, result in pending.items():
        try:
            result.get(timeout=max(0.1, deadline - time.monotonic()))
            answer = client[engine_id].pull("_rebuild_answer", block=True)
        except ipyparallel.error.TimeoutError:
            answers[engine_id] = (
                f"did not answer within {seconds:g} s (busy with another run, or stuck)."
            )
            continue
        except ipyparallel.error.EngineError as error:
            answers[engine_id] = f"was lost while being checked ({error})."
            continue
        except Exception as error:
            answers[engine_id] = f"failed while being checked: {error}"
            continue
        answers[engine_id] = answer if isinstance(answer, dict) else f"answered {answer!r}"
    return answers


def write_run_profile(connection_file: Path, ipython_dir: Path) -> str:
    """Give a run ``IPYTHONDIR``: a profile holding a copy of the client connection file.

    The copy lets the sandboxed run see that file and nothing else of the controller's
    folder. Returns the profile's name, for ``IPYTHON_PROFILE``.
    """
    security = ipython_dir / f"profile_{RUN_PROFILE}" / "security"
    security.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(connection_file, security / CLIENT_FILE)
    return RUN_PROFILE


def cluster_environment(ipython_dir: Path, profile: str) -> dict[str, str]:
    """What the package's opt_neuron.py reads to use the cluster (as on the HPC systems)."""
    return {"USEIPYP": "1", "IPYTHONDIR": str(ipython_dir), "IPYTHON_PROFILE": profile}


# --- a cluster on this machine: make run CLUSTER=N and the tests ---------------------------


@dataclass
class LocalCluster:
    """An ipcontroller and its engines on loopback, started by ``start_local_cluster``."""

    ipython_dir: Path
    controller: subprocess.Popen
    engines: list[subprocess.Popen]
    sandbox: Sandbox
    engine_folders: list[Path]
    readable: list[Path]
    log_folder: Path

    @property
    def profile_dir(self) -> Path:
        return self.ipython_dir / "profile_default"

    @property
    def connection_file(self) -> Path:
        return self.profile_dir / "security" / CLIENT_FILE

    @property
    def engine_file(self) -> Path:
        return self.profile_dir / "security" / ENGINE_FILE

    def start_engine(self) -> subprocess.Popen:
        """One more engine, under the sandbox, like the others."""
        number = len(self.engine_folders) + 1
        folder = self.ipython_dir / f"engine-{number}"
        folder.mkdir(parents=True, exist_ok=True)
        # The engine's own copy: the controller's folder is not for the sandbox to see.
        shutil.copyfile(self.engine_file, folder / ENGINE_FILE)
        log = open(self.log_folder / f"engine-{number}.log", "ab")
        try:
            process = self.sandbox.popen(
                [sys.executable, "-m", "ipyparallel.engine", f"--file={folder / ENGINE_FILE}"],
                cwd=folder,
                writable=[folder],
                readable=self.readable,
                env=_engine_environment(),
                # The engine must reach the controller on loopback: see README (cluster runs).
                share_network=True,
                limits=Limits(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self.engine_folders.append(folder)
        self.engines.append(process)
        return process

    def stop(self) -> None:
        """Stop every engine and the controller (whole process groups)."""
        for process in [*self.engines, self.controller]:
            kill_group(process)


def _engine_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # One evaluation per engine: numerical libraries must not start threads of their own.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


def start_local_cluster(
    ipython_dir: Path,
    engines: int,
    *,
    sandbox: Sandbox,
    readable: list[Path],
    log_folder: Path,
    timeout: float = 60.0,
) -> LocalCluster:
    """Start an ipcontroller on loopback and ``engines`` ipengines under ``sandbox``.

    The engines see the ``readable`` folders (where the runs' folders are), their own
    folder, and nothing else of this machine's files; the controller runs as this process's
    user (it runs no model code). Returns once every engine has registered; raises
    ClusterError (after stopping what it started) when that takes longer than ``timeout``.
    """
    ipython_dir = Path(ipython_dir).resolve()
    ipython_dir.mkdir(parents=True, exist_ok=True)
    log_folder.mkdir(parents=True, exist_ok=True)
    security = ipython_dir / "profile_default" / "security"
    for stale in (CLIENT_FILE, ENGINE_FILE):
        (security / stale).unlink(missing_ok=True)
    env = {**os.environ, "IPYTHONDIR": str(ipython_dir)}
    with open(log_folder / "controller.log", "ab") as log:
        controller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ipyparallel.controller",
                "--ip=127.0.0.1",
                # An engine starting on a busy machine (NEURON, the sandbox) can take longer
                # than the default 30 s to register; it would be dropped half-registered.
                f"--IPController.registration_timeout={REGISTRATION_SECONDS}",
            ],
            cwd=ipython_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster = LocalCluster(
        ipython_dir=ipython_dir,
        controller=controller,
        engines=[],
        sandbox=sandbox,
        engine_folders=[],
        readable=[Path(path).resolve() for path in readable],
        log_folder=log_folder,
    )
    try:
        deadline = time.monotonic() + timeout
        while not (cluster.connection_file.is_file() and cluster.engine_file.is_file()):
            if controller.poll() is not None:
                raise ClusterError(
                    [f"ipcontroller exited with code {controller.returncode}; see {log.name}."]
                )
            if time.monotonic() > deadline:
                raise ClusterError([f"ipcontroller wrote no connection files in {timeout:g} s."])
            time.sleep(0.2)
        time.sleep(0.5)  # the files are written before they are complete
        for _ in range(engines):
            cluster.start_engine()
        with connected(cluster.connection_file) as client:
            try:
                client.wait_for_engines(engines, timeout=max(1.0, deadline - time.monotonic()))
            except Exception as error:
                raise ClusterError(
                    [
                        f"{len(client.ids)} of {engines} engines registered within "
                        f"{timeout:g} s ({error}); see the logs in {log_folder}."
                    ]
                ) from None
    except BaseException:
        cluster.stop()
        raise
    return cluster
