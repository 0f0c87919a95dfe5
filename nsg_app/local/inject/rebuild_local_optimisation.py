"""What a local run adds to the optimisation process: parallel evaluations and a progress file.

The local runner puts this folder first on the PYTHONPATH of the run it starts, so the
folder's ``sitecustomize.py`` is loaded by every Python process of the run (``init.py`` and
the ``opt_neuron.py`` it starts in a new interpreter). When ``REBUILD_LOCAL_CORES`` is set it
calls ``activate()``, which only installs an import hook: nothing else happens, and nothing
heavy is imported, until the process imports bluepyopt. Once
``bluepyopt.deapext.optimisations`` has run, ``DEAPOptimisation`` is patched in place:

- ``__init__``: ``map_function=None`` (the serial default of the HBP ``opt_neuron.py``
  scripts, which use ipyparallel only when USEIPYP=1) becomes a map over a pool of forked
  worker processes, so the evaluations are spread over the cores without editing the model.
  Results come back in the order of the serial map, so a seed gives the same optimisation.
- ``run``: ``max_ngen`` and ``offspring_size`` are captured for the progress file.

Once ``bluepyopt.ephys.protocols`` has run, ``SweepProtocol.run`` is wrapped so that a failed
protocol is explained: BluePyOpt raises only "Failed to run Neuron Sweep Protocol" for it, and
when the protocol ran isolated NEURON's error stays in the child process. The protocol is
then run once more in this process, not isolated, to get that error; the protocol's name and
the error go to the file named by ``REBUILD_LOCAL_FAILURE_FILE`` (for the runner) and onto the
exception as a note (for STDERR). The run is failing by then: NEURON's state in this process
no longer matters.

``deap.tools.Logbook.record`` is wrapped so that each generation's figures in the progress
file are exactly the logbook's. The progress file (path in ``REBUILD_LOCAL_PROGRESS_FILE``)
is rewritten atomically after each evaluation and each generation.

Standard library only: the child imports this as a top-level module, and
``nsg_app.local.progress`` imports it to write the same file format.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import sys
import time
import traceback
from datetime import UTC, datetime

# A top-level module in the run's processes (this folder is on their PYTHONPATH); a module of
# the package for the project.
if __package__:
    from . import protocol_failures
else:
    import protocol_failures

CORES_VARIABLE = "REBUILD_LOCAL_CORES"
PROGRESS_FILE_VARIABLE = "REBUILD_LOCAL_PROGRESS_FILE"
STARTED_AT_VARIABLE = "REBUILD_LOCAL_STARTED_AT"
FAILURE_FILE_VARIABLE = "REBUILD_LOCAL_FAILURE_FILE"
# Set by the runner for a run on an ipyparallel cluster: the digest of the package's compiled
# mechanisms ("" when it has none), which an engine joining during the run must load.
CLUSTER_MECHANISMS_VARIABLE = "REBUILD_LOCAL_CLUSTER_MECHANISMS"
# How long a cluster run waits for an engine when every engine is gone, in seconds.
CLUSTER_WAIT_VARIABLE = "REBUILD_LOCAL_CLUSTER_WAIT_SECONDS"
CLUSTER_WAIT_SECONDS = 60.0
# A task whose engine dies is sent to another engine up to this many times.
CLUSTER_RETRIES = 3
# What each engine runs before it evaluates (see the file).
ENGINE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster_engine.py")

PROGRESS_FORMAT = 1
RUNNING = "running"

_PATCHED_MODULE = "bluepyopt.deapext.optimisations"
_PROTOCOLS_MODULE = "bluepyopt.ephys.protocols"
_PATCHED_MARK = "_rebuild_local_patched"
# After the pool is told to stop, give the workers this long before terminating them.
_WORKER_STOP_SECONDS = 5.0


# --- the progress file -------------------------------------------------------------------


def now_text() -> str:
    """The current time as the progress file writes it (ISO 8601, UTC)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def progress_document(*, cores: int | None, started_at: str, phase: str = RUNNING) -> dict:
    """A progress document with nothing evaluated yet: every key the file ever holds."""
    return {
        "format": PROGRESS_FORMAT,
        "phase": phase,
        "message": "",
        "cores": cores,
        "generation": 0,
        "max_ngen": None,
        "offspring_size": None,
        "evaluations_done": 0,
        "evaluations_in_generation": 0,
        "evaluations_expected": None,
        "best": None,
        "average": None,
        "std": None,
        "worst": None,
        "evaluation_seconds": 0.0,
        # On a cluster: evaluations done by each engine (id -> count), and engines lost.
        "engines": {},
        "engines_lost": [],
        "started_at": started_at,
        "evaluations_started_at": None,
        "updated_at": started_at,
    }


def write_progress_document(path: str | os.PathLike[str], document: dict) -> None:
    """Replace the file at ``path`` with ``document``; a reader never sees half of it."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    # One temporary name per process: the runner and the optimisation never write at the
    # same time, but a killed writer's leftover must not be picked up by another.
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    # "x" after an unlink: never write through a link another process put at that name.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    with open(temporary, "x", encoding="utf-8") as file:
        json.dump(document, file, indent=1, allow_nan=False)
    os.replace(temporary, path)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class ProgressRecorder:
    """Counts evaluations and generations of this process and writes the progress file."""

    def __init__(self, path: str | None, *, cores: int, started_at: str) -> None:
        self.path = path
        self.document = progress_document(cores=cores, started_at=started_at)
        self.in_run = False
        self._map_started: float | None = None
        self._evaluation_seconds = 0.0
        self._offspring_size: int | None = None
        self._max_ngen: int | None = None
        self._write_failed = False

    def run_started(self, *, max_ngen: int, offspring_size: int, continue_cp: bool) -> None:
        self.in_run = True
        self._max_ngen, self._offspring_size = max_ngen, offspring_size
        document = self.document
        document["max_ngen"] = max_ngen
        document["offspring_size"] = offspring_size
        # Every generation evaluates offspring_size individuals (the first one its initial
        # population); a continued run's starting generation is known at its first record.
        if not continue_cp:
            document["evaluations_expected"] = document["evaluations_done"] + (
                max_ngen * offspring_size
            )
        if document["evaluations_started_at"] is None:
            document["evaluations_started_at"] = now_text()
        self._write()

    def run_finished(self) -> None:
        self.in_run = False
        self._write()

    def map_started(self) -> None:
        self._map_started = time.monotonic()

    def map_finished(self) -> None:
        if self._map_started is not None:
            self._evaluation_seconds += time.monotonic() - self._map_started
            self._map_started = None
        self._write()

    def evaluation_done(self, count: int = 1) -> None:
        self.document["evaluations_done"] += count
        self.document["evaluations_in_generation"] += count
        self._write()

    def engine_evaluations(self, engine_ids: list) -> None:
        """Count the evaluations of one map by the engine that did each one."""
        engines = self.document["engines"]
        for engine_id in engine_ids:
            key = str(engine_id)
            engines[key] = engines.get(key, 0) + 1
        self._write()

    def engine_lost(self, engine_id: int) -> None:
        if engine_id not in self.document["engines_lost"]:
            self.document["engines_lost"].append(engine_id)
        self._write()

    def generation_recorded(self, entry: dict) -> None:
        """Called with the record just added to the optimisation's logbook."""
        document = self.document
        generation = entry.get("gen")
        if isinstance(generation, int):
            document["generation"] = generation
            if (
                document["evaluations_expected"] is None
                and self._max_ngen is not None
                and self._offspring_size is not None
            ):
                remaining = max(self._max_ngen - generation, 0) * self._offspring_size
                document["evaluations_expected"] = document["evaluations_done"] + remaining
        document["best"] = _number(entry.get("min"))
        document["average"] = _number(entry.get("avg"))
        document["std"] = _number(entry.get("std"))
        document["worst"] = _number(entry.get("max"))
        document["evaluations_in_generation"] = 0
        self._write()

    def _write(self) -> None:
        seconds = self._evaluation_seconds
        if self._map_started is not None:
            seconds += time.monotonic() - self._map_started
        self.document["evaluation_seconds"] = round(seconds, 3)
        self.document["updated_at"] = now_text()
        if self.path is None or self._write_failed:
            return
        try:
            write_progress_document(self.path, self.document)
        except (OSError, ValueError) as error:
            # Progress is for people watching; it must never stop the optimisation.
            self._write_failed = True
            print(f"Local run: the progress file cannot be written ({error})", file=sys.stderr)


# --- parallel evaluations ------------------------------------------------------------------

# The function the workers call, set before they are forked so that they inherit it: the
# evaluator behind it (NEURON cell, protocols) is never pickled.
_worker_function = None


def _serve(connection, inherited_ends: tuple) -> None:
    """A worker's loop: evaluate (index, arguments) tasks until told to stop or orphaned."""
    # Close the parent's ends of every pipe inherited by the fork, so that a worker sees
    # end-of-file as soon as the optimisation process is gone.
    for end in inherited_ends:
        end.close()
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, arguments = task
        try:
            outcome = (index, True, _worker_function(*arguments), "")
        except Exception as error:
            outcome = (index, False, error, traceback.format_exc())
        try:
            connection.send(outcome)
        except Exception as error:  # the result or the exception does not pickle
            text = "".join(traceback.format_exception(error))
            if not outcome[1]:
                text = f"{outcome[3]}\n{text}"
            connection.send((index, False, None, text))


class EvaluationPool:
    """Worker processes forked from this one, each evaluating one individual at a time.

    Not ``multiprocessing.Pool``: its daemonic workers may not start children, which
    BluePyOpt's isolated protocols (the HBP models' default) do for every simulation, and it
    waits forever when a worker dies. Here a worker that dies fails the map at once.
    """

    def __init__(self, processes: int, function) -> None:
        import multiprocessing
        import multiprocessing.util

        global _worker_function
        _worker_function = function
        self.function = function
        context = multiprocessing.get_context("fork")
        self._workers: list[tuple] = []  # (process, connection)
        # multiprocessing's exit handler waits for non-daemonic children; registered after
        # it (it is registered when multiprocessing.util is first imported), this one runs
        # first and lets the workers go.
        atexit.register(self.close)
        parent_ends: list = []
        try:
            for number in range(processes):
                parent_end, child_end = context.Pipe()
                parent_ends.append(parent_end)
                process = context.Process(
                    target=_serve,
                    args=(child_end, tuple(parent_ends)),
                    name=f"evaluation-worker-{number + 1}",
                    daemon=False,
                )
                process.start()
                child_end.close()
                self._workers.append((process, parent_end))
        except BaseException:
            self.close()
            raise

    def map(self, calls: list[tuple], on_result) -> list:
        """``[function(*arguments) for arguments in calls]``, in that order."""
        from multiprocessing.connection import wait

        results: list = [None] * len(calls)
        tasks = iter(enumerate(calls))
        busy: dict = {}  # connection -> (process, index)

        def dispatch(process, connection) -> None:
            for index, arguments in tasks:
                connection.send((index, arguments))
                busy[connection] = (process, index)
                return

        try:
            for process, connection in self._workers:
                dispatch(process, connection)
            while busy:
                sentinels = {
                    process.sentinel: connection for connection, (process, _) in busy.items()
                }
                for ready in wait([*busy, *sentinels]):
                    connection = sentinels.get(ready, ready)
                    if connection not in busy:
                        continue
                    process, index = busy[connection]
                    try:
                        # A dead worker's pipe may stay open in a child it started, so its
                        # exit (the sentinel) without a result waiting is a death too.
                        if not connection.poll():
                            raise EOFError
                        _, succeeded, value, text = connection.recv()
                    except (EOFError, OSError):
                        process.join(1)
                        raise RuntimeError(
                            f"The evaluation worker {process.pid} died (exit code "
                            f"{process.exitcode}) while evaluating individual {index}."
                        ) from None
                    del busy[connection]
                    if not succeeded:
                        raise _worker_error(value, text, process.pid, index)
                    results[index] = value
                    on_result()
                    dispatch(process, connection)
        except BaseException:
            # A failed or interrupted map leaves workers mid-task: drop the pool.
            self.close()
            raise
        return results

    @property
    def closed(self) -> bool:
        return not self._workers

    def close(self) -> None:
        workers, self._workers = self._workers, []
        atexit.unregister(self.close)
        for _, connection in workers:
            try:
                connection.send(None)
            except OSError:
                pass
            connection.close()
        deadline = time.monotonic() + _WORKER_STOP_SECONDS
        for process, _ in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join()


def _worker_error(error, text: str, pid: int, index: int) -> BaseException:
    where = f"in the evaluation worker {pid}, evaluating individual {index}"
    if isinstance(error, BaseException):
        error.add_note(f"Raised {where}:\n{text.rstrip()}")
        return error
    return RuntimeError(f"The evaluation failed {where}:\n{text.rstrip()}")


class EvaluationMap:
    """The map DEAPOptimisation gets: a pool of ``cores`` workers, or in-process when 1."""

    def __init__(self, cores: int, recorder: ProgressRecorder) -> None:
        self.cores = cores
        self.recorder = recorder
        self._pool: EvaluationPool | None = None

    def __call__(self, function, *iterables) -> list:
        calls = list(zip(*iterables, strict=False))
        self.recorder.map_started()
        try:
            if self.cores > 1 and len(calls) > 1:
                return self._pool_for(function).map(calls, self.recorder.evaluation_done)
            results = []
            for arguments in calls:
                results.append(function(*arguments))
                self.recorder.evaluation_done()
            return results
        finally:
            self.recorder.map_finished()

    def _pool_for(self, function) -> EvaluationPool:
        # DEAP passes the same toolbox.evaluate at every generation, so the workers are
        # forked once; another function needs workers that inherited it.
        # (Compared with ==: a bound method is a new object at each attribute access.)
        if self._pool is None or self._pool.closed or self._pool.function != function:
            if self._pool is not None:
                self._pool.close()
            self._pool = EvaluationPool(self.cores, function)
        return self._pool


class CountedMap:
    """A model's own map (ipyparallel when USEIPYP=1), counted for the progress file."""

    def __init__(self, map_function, recorder: ProgressRecorder) -> None:
        self.map_function = map_function
        self.recorder = recorder

    def __call__(self, function, *iterables) -> list:
        self.recorder.map_started()
        try:
            results = list(self.map_function(function, *iterables))
            self.recorder.evaluation_done(len(results))
            return results
        finally:
            self.recorder.map_finished()


class ClusterMap:
    """The model's ipyparallel map (``view.map_sync``), watched while the engines work.

    The same view and the same map, in the same order (so a seed gives the serial run's
    optimisation), only asynchronous, so that this process can count the evaluations as they
    end, note which engine did each one, send a task whose engine died to another engine
    (``retries``), prepare an engine that joins during the run, and give up with a clear
    message when every engine is gone (ipyparallel would wait for one forever).
    """

    POLL_SECONDS = 0.5

    def __init__(self, view, recorder: ProgressRecorder) -> None:
        self.view = view
        self.recorder = recorder
        self.client = view.client
        self.known: set = set(self.client.ids)
        self.wait_seconds = _float_from_environment(CLUSTER_WAIT_VARIABLE, CLUSTER_WAIT_SECONDS)

    def __call__(self, function, *iterables) -> list:
        self.recorder.map_started()
        try:
            with self.view.temp_flags(retries=CLUSTER_RETRIES):
                result = self.view.map_async(function, *iterables)
            counted = 0
            alone_since = None
            while not result.ready():
                result.wait(self.POLL_SECONDS)
                done = result.progress
                if done > counted:
                    self.recorder.evaluation_done(done - counted)
                    counted = done
                if self._watch_engines():
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
                elif time.monotonic() - alone_since > self.wait_seconds:
                    with contextlib.suppress(Exception):
                        result.abort()
                    raise RuntimeError(
                        "Every engine of the cluster was lost "
                        f"(engines {', '.join(map(str, sorted(self.recorder.document['engines_lost'])))}); "
                        f"none came back within {self.wait_seconds:g} s, so the run cannot go on."
                    )
            values = list(result.get())
            if len(values) > counted:
                self.recorder.evaluation_done(len(values) - counted)
            self.recorder.engine_evaluations(
                [metadata.get("engine_id") for metadata in result.metadata]
            )
            return values
        finally:
            self.recorder.map_finished()

    def _watch_engines(self) -> bool:
        """Note lost and new engines; True while at least one engine is there."""
        ids = set(self.client.ids)
        for engine_id in sorted(self.known - ids):
            print(
                f"Local run: engine {engine_id} of the cluster was lost; the other engines "
                "take over its evaluations.",
                file=sys.stderr,
            )
            self.recorder.engine_lost(engine_id)
        new = sorted(ids - self.known)
        if new:
            self._prepare(new)
        self.known = ids
        return bool(ids)

    def _prepare(self, engine_ids: list) -> None:
        # An engine that joined after the runner's check: ready it the same way (the file
        # lies beside this one); if it cannot serve, its tasks fail there and are retried.
        digest = os.environ.get(CLUSTER_MECHANISMS_VARIABLE) or None
        with open(ENGINE_SOURCE, encoding="utf-8") as source:
            code = source.read()
        call = f"\nrebuild_prepare_engine({os.getcwd()!r}, {digest!r})\n"
        self.client[engine_ids].execute(code + call, block=False)
        print(f"Local run: engines {engine_ids} joined the cluster.", file=sys.stderr)


def _float_from_environment(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def _ipyparallel_view(map_function):
    """The ipyparallel view whose map ``map_function`` is, or None."""
    view = getattr(map_function, "__self__", None)
    module = type(view).__module__ if view is not None else ""
    if module.startswith("ipyparallel") and hasattr(view, "map_async"):
        return view
    return None


# --- patching BluePyOpt --------------------------------------------------------------------

_recorder: ProgressRecorder | None = None
_cores = 1


def activate() -> None:
    """Patch BluePyOpt when (if ever) this process imports it. Called by sitecustomize."""
    global _recorder, _cores
    _cores = _cores_from_environment()
    _recorder = ProgressRecorder(
        os.environ.get(PROGRESS_FILE_VARIABLE) or None,
        cores=_cores,
        started_at=os.environ.get(STARTED_AT_VARIABLE) or now_text(),
    )
    waiting = {}
    for name, patch in ((_PATCHED_MODULE, patch_bluepyopt), (_PROTOCOLS_MODULE, patch_protocols)):
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
        else:
            waiting[name] = patch
    if waiting and not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(waiting))


def _cores_from_environment() -> int:
    text = os.environ.get(CORES_VARIABLE, "")
    try:
        cores = int(text)
    except ValueError:
        cores = 0
    return cores if cores > 0 else (os.cpu_count() or 1)


class _PatchOnImport:
    """A meta path finder that patches the modules it waits for right after they run."""

    def __init__(self, patches: dict) -> None:
        self._patches = dict(patches)  # module name -> patch function

    def find_spec(self, fullname, path=None, target=None):
        patch = self._patches.pop(fullname, None)
        if patch is None:
            return None
        import importlib.machinery

        if not self._patches:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


class _PatchingLoader:
    """Runs the module with its own loader, then patches it; everything else is delegated."""

    def __init__(self, loader, patch) -> None:
        self._loader = loader
        self._patch = patch

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._patch(module)


def patch_bluepyopt(module) -> None:
    """Patch ``module.DEAPOptimisation`` and deap's Logbook (once)."""
    import functools
    import inspect

    import deap.tools

    recorder = _recorder
    if recorder is None:
        return
    optimisation = module.DEAPOptimisation
    if getattr(optimisation, _PATCHED_MARK, False):
        return
    original_init = optimisation.__init__
    original_run = optimisation.run
    init_signature = inspect.signature(original_init)
    run_signature = inspect.signature(original_run)

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        bound = init_signature.bind(self, *args, **kwargs)
        given = bound.arguments.get("map_function")
        if given is None and not bound.arguments.get("use_scoop"):
            bound.arguments["map_function"] = EvaluationMap(_cores, recorder)
        elif given is not None and not isinstance(given, EvaluationMap | CountedMap | ClusterMap):
            view = _ipyparallel_view(given)
            if view is not None and CLUSTER_MECHANISMS_VARIABLE in os.environ:
                bound.arguments["map_function"] = ClusterMap(view, recorder)
            else:
                bound.arguments["map_function"] = CountedMap(given, recorder)
        original_init(*bound.args, **bound.kwargs)

    @functools.wraps(original_run)
    def run(self, *args, **kwargs):
        bound = run_signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        offspring_size = bound.arguments["offspring_size"] or self.offspring_size
        recorder.run_started(
            max_ngen=int(bound.arguments["max_ngen"]),
            offspring_size=int(offspring_size),
            continue_cp=bool(bound.arguments["continue_cp"]),
        )
        try:
            return original_run(self, *args, **kwargs)
        finally:
            recorder.run_finished()

    optimisation.__init__ = __init__
    optimisation.run = run
    setattr(optimisation, _PATCHED_MARK, True)

    logbook = deap.tools.Logbook
    if not getattr(logbook.record, _PATCHED_MARK, False):
        original_record = logbook.record

        @functools.wraps(original_record)
        def record(self, **infos):
            original_record(self, **infos)
            # Only the optimisation's own logbook records while a run is under way; the
            # entry is read back so that the file holds exactly what the logbook holds.
            if recorder.in_run and "gen" in infos:
                recorder.generation_recorded(self[-1])

        setattr(record, _PATCHED_MARK, True)
        logbook.record = record


def patch_protocols(module) -> None:
    """Wrap ``module.SweepProtocol.run`` so that a failure names the protocol and its error."""
    import functools

    protocol_class = getattr(module, "SweepProtocol", None)
    wrapper_error = getattr(module, "SweepProtocolException", None)
    if protocol_class is None or wrapper_error is None:
        return  # a BluePyOpt of another shape: its errors go out as they are
    if getattr(protocol_class.run, _PATCHED_MARK, False):
        return
    original_run = protocol_class.run

    @functools.wraps(original_run)
    def run(self, cell_model, param_values, *args, **kwargs):
        try:
            return original_run(self, cell_model, param_values, *args, **kwargs)
        except wrapper_error as error:
            _explain_protocol_failure(
                error, original_run, self, cell_model, param_values, args, kwargs
            )
            raise

    setattr(run, _PATCHED_MARK, True)
    protocol_class.run = run


def _explain_protocol_failure(
    error, original_run, protocol, cell_model, param_values, args, kwargs
):
    """Note on ``error`` (and in the failure file) which protocol failed, and why."""
    name = str(getattr(protocol, "name", "") or type(protocol).__name__)
    chain = protocol_failures.error_chain(error)
    text = "".join(traceback.format_exception(error))
    if protocol_failures.is_wrapped_failure(chain) and not args:
        # Isolated: the error itself stayed in the child process. Run it again here.
        try:
            original_run(protocol, cell_model, param_values, **{**kwargs, "isolate": False})
        except Exception as again:
            chain = protocol_failures.error_chain(again)
            text = "".join(traceback.format_exception(again))
    document = protocol_failures.failure_document(name, chain, text)
    error.add_note(document["message"])
    path = os.environ.get(FAILURE_FILE_VARIABLE)
    if path:
        try:
            protocol_failures.write_first_failure(path, document)
        except OSError as failure:
            print(f"Local run: the failure file cannot be written ({failure})", file=sys.stderr)
