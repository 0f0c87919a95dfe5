"""The simulation process: the model's own evaluator re-runs the best individuals.

Run as ``python -m analysis_app.engine.simulation REQUEST.json`` with the run folder as the
working directory, by ``analysis.analyse`` only. NEURON loads the compiled mechanisms of the
working directory into its process for good and keeps global state, so every analysis gets
a process of its own, never the web or worker process.

The evaluator is created once; then the protocols of the chosen individuals run in parallel
in processes forked from it, a fresh one per protocol as BluePyOpt's ``isolate_protocols``
does, and the scores are computed here by the evaluator's fitness calculator. The result is
written as JSON (numbers and text only) plus one ``.npz`` of traces per individual; the
engine never unpickles anything this process, which runs the model's code, wrote.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from models_app.bpo.checkpoints import best_checkpoint, load_checkpoint, summarise_checkpoint
from models_app.bpo.loading import ModelCodeError, load_evaluator

from .errors import CHECKPOINT_UNREADABLE, MODEL_ERROR
from .progress import LOADING, SCORING, SIMULATING, write_json_atomically, write_progress

_PARENT_POLL_SECONDS = 1.0

# Set before the worker processes are forked; they inherit them.
_EVALUATOR: Any = None
_PARAMETER_SETS: list[dict[str, float]] = []
_OBJECTIVES_OF: dict[str, list[int]] = {}  # protocol name -> objectives scored with it
# The individual (rank) whose cell this process last tried to build, and the one whose cell
# is built (instantiated, its parameters frozen) and inherited by the protocols' processes.
_CELL_TRIED_FOR: int | None = None
_CELL_READY_FOR: int | None = None


class SimulationFailure(Exception):
    """A failure to report to the engine as an ``AnalysisError`` of ``kind``."""

    def __init__(self, kind: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details or {}


def main(argv: list[str]) -> int:
    # The engine holds its time-limit alarm back while starting this process; the mask is
    # inherited, and a model may use the alarm too.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    _exit_with_parent()
    try:
        result = simulate(request)
    except SimulationFailure as failure:
        _write_failure(request, failure.kind, failure.message, failure.details)
        return 1
    except BaseException as error:  # every failure is reported, with its trace
        _write_failure(
            request,
            MODEL_ERROR,
            f"The model's code failed: {_one_line(error)}",
            {"traceback": _traceback(error)},
        )
        return 1
    write_json_atomically(Path(request["result_file"]), result)
    return 0


def simulate(request: dict[str, Any]) -> dict[str, Any]:
    """Load, simulate and score as ``request`` asks; returns the result document."""
    progress_file = request.get("progress_file")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    write_progress(progress_file, LOADING, "Loading the checkpoint and the model's evaluator")

    checkpoint_path, chosen_by, surveyed = _choose_checkpoint(request)
    checkpoint = _load_checkpoint(checkpoint_path)
    hall_of_fame = list(checkpoint.get("halloffame") or [])
    if not hall_of_fame:
        raise SimulationFailure(
            CHECKPOINT_UNREADABLE, "The checkpoint's hall of fame holds no individual."
        )
    evaluator, create_arguments = _create_evaluator(request["key"])
    top = max(1, int(request.get("top", 1)))
    individuals = hall_of_fame[:top]
    warnings = []
    if len(individuals) < top:
        warnings.append(
            f"The hall of fame holds {len(hall_of_fame)} individual(s); "
            f"{len(individuals)} were analysed instead of {top}."
        )
    parameter_sets = [
        _model_call("evaluator.param_dict", lambda ind=ind: dict(evaluator.param_dict(ind)))
        for ind in individuals
    ]
    protocols = dict(evaluator.fitness_protocols)
    timings["loading"] = time.perf_counter() - started

    started = time.perf_counter()
    responses, scored, protocol_seconds = _run_protocols(
        evaluator,
        parameter_sets,
        list(protocols),
        processes=request.get("processes") or os.cpu_count() or 1,
        progress_file=progress_file,
    )
    timings["simulating"] = time.perf_counter() - started

    started = time.perf_counter()
    write_progress(
        progress_file,
        SCORING,
        "Computing the objectives' scores",
        protocols_done=len(protocols) * len(individuals),
        protocols_total=len(protocols) * len(individuals),
    )
    traces_dir = Path(request["traces_dir"])
    traces_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for rank, (individual, parameters) in enumerate(
        zip(individuals, parameter_sets, strict=True), start=1
    ):
        traces_file = traces_dir / f"traces_{rank}.npz"
        objectives = _objectives(evaluator, responses[rank - 1], scored[rank - 1], individual)
        results.append(
            {
                "rank": rank,
                "parameters": _parameters(evaluator, parameters),
                "objectives": objectives,
                "stored_fitness": _stored_fitness(individual),
                "recomputed_fitness": _sum([objective["score"] for objective in objectives]),
                "hoc": _hoc(evaluator, parameters, warnings),
                "traces_file": traces_file.name,
                "recordings": _save_traces(responses[rank - 1], traces_file),
            }
        )
    timings["scoring"] = time.perf_counter() - started

    return {
        "individuals": results,
        "protocols": [_protocol(name, protocol) for name, protocol in protocols.items()],
        "protocol_seconds": protocol_seconds,
        "logbook": _logbook(checkpoint.get("logbook")),
        "checkpoint": {
            "name": checkpoint_path.name,
            "chosen_by": chosen_by,
            "checkpoints": surveyed,
            "generation": _number(checkpoint.get("generation")),
            "population_size": len(checkpoint.get("population") or []),
            "hall_of_fame_size": len(hall_of_fame),
        },
        "evaluator": {
            "type": type(evaluator).__name__,
            "create_arguments": create_arguments,
            "isolate_protocols": getattr(evaluator, "isolate_protocols", None),
        },
        "software": _versions(),
        "timings": timings,
        "warnings": warnings,
    }


# --- loading ---------------------------------------------------------------------------


def _choose_checkpoint(request: dict[str, Any]) -> tuple[Path, str, list[dict[str, Any]]]:
    """The checkpoint to analyse, why, and every checkpoint's seed and stored fitness.

    The engine names the checkpoint when it can; else the one with the best (lowest)
    stored fitness is taken, which takes unpickling them: done here, never in the engine.
    """
    paths = [Path(path) for path in request.get("checkpoints") or []]
    summaries = [summarise_checkpoint(path) for path in paths]
    surveyed = [summary.as_dict() for summary in summaries]
    if request.get("checkpoint"):
        return Path(request["checkpoint"]), request.get("chosen_by") or "name", surveyed
    best = best_checkpoint(summary for summary in summaries if summary.fitness is not None)
    if best is None:
        problems = [f"{summary.name}: {summary.error}" for summary in summaries]
        raise SimulationFailure(
            CHECKPOINT_UNREADABLE,
            "None of the checkpoints can be read: " + "; ".join(problems),
            {"problems": problems},
        )
    return next(path for path in paths if path.name == best), "fitness", surveyed


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = load_checkpoint(path)
    except Exception as error:
        raise SimulationFailure(
            CHECKPOINT_UNREADABLE,
            f"The checkpoint {path.name} cannot be read: {_one_line(error)}. It may be "
            "truncated (a run stopped while writing it) or not a BluePyOpt checkpoint.",
            {"traceback": _traceback(error)},
        ) from None
    if not isinstance(checkpoint, dict):
        raise SimulationFailure(
            CHECKPOINT_UNREADABLE,
            f"The checkpoint {path.name} is not a BluePyOpt checkpoint (not a dictionary).",
        )
    return checkpoint


def _create_evaluator(key: str) -> tuple[Any, dict[str, Any]]:
    """The model's evaluator, built as its own opt_neuron.py builds it (one loader for all)."""
    try:
        evaluator, script = load_evaluator(Path.cwd(), key)
    except ModelCodeError as failure:
        raise SimulationFailure(
            MODEL_ERROR,
            f"The model's code failed in {failure.step}: {_one_line(failure.error)}",
            {"traceback": _traceback(failure.error), "step": failure.step},
        ) from None
    for attribute in ("fitness_protocols", "fitness_calculator", "cell_model", "param_dict"):
        if not hasattr(evaluator, attribute):
            raise SimulationFailure(
                MODEL_ERROR,
                f"evaluator.create('{key}') returned a {type(evaluator).__name__} without "
                f"{attribute}; a BluePyOpt CellEvaluator is needed.",
            )
    return evaluator, {
        "args": _plain(script.args),
        "kwargs": _plain(script.kwargs),
        "imports": script.imports,
    }


def _model_call(what: str, call):
    """Run a call into the model's code; a failure becomes a MODEL_ERROR with its trace."""
    try:
        return call()
    except SimulationFailure:
        raise
    except BaseException as error:  # SystemExit from a model is a failure too
        raise SimulationFailure(
            MODEL_ERROR,
            f"The model's code failed in {what}: {_one_line(error)}",
            {"traceback": _traceback(error), "step": what},
        ) from None


# --- simulating ------------------------------------------------------------------------


def _run_protocols(
    evaluator: Any,
    parameter_sets: list[dict[str, float]],
    protocol_names: list[str],
    *,
    processes: int,
    progress_file: str | None,
) -> tuple[list[dict[str, Any]], list[dict[int, dict[str, Any]]], list[dict[str, Any]]]:
    """Every protocol for every parameter set, in forked processes.

    Each process also scores the objectives computed from its protocol's recordings alone,
    so that eFEL's work is shared out too. Returns, per parameter set, the responses and
    the objectives scored (by index), and the seconds each protocol took.
    """
    global _EVALUATOR, _PARAMETER_SETS, _OBJECTIVES_OF
    # Imported once here rather than in every forked process.
    import efel  # noqa: F401

    _EVALUATOR, _PARAMETER_SETS = evaluator, parameter_sets
    _OBJECTIVES_OF = _objectives_by_protocol(evaluator)
    # One individual after the other (its cell is built once, here, for all its protocols);
    # within one, the costliest protocols first, so that the last to finish is short.
    tasks = sorted(
        ((rank, name) for rank in range(len(parameter_sets)) for name in protocol_names),
        key=lambda task: (task[0], _cost_rank(evaluator.fitness_protocols[task[1]])),
    )
    responses: list[dict[str, Any]] = [{} for _ in parameter_sets]
    scored: list[dict[int, dict[str, Any]]] = [{} for _ in parameter_sets]
    seconds: list[dict[str, Any]] = []
    write_progress(
        progress_file,
        SIMULATING,
        f"Running {len(tasks)} protocol(s) on {min(processes, len(tasks))} process(es)",
        protocols_total=len(tasks),
    )
    # A fresh process per protocol, forked after the evaluator was created (NEURON and the
    # mechanisms already loaded), as BluePyOpt's isolate_protocols does; at most
    # ``processes`` at a time.
    context = multiprocessing.get_context("fork")
    waiting = list(tasks)
    running: dict[Any, tuple[tuple[int, str], Any]] = {}  # receiving end -> task, process
    try:
        while waiting or running:
            while waiting and len(running) < max(1, processes):
                task = waiting.pop(0)
                _prepare_cell(task[0])
                receiving, sending = context.Pipe(duplex=False)
                process = context.Process(
                    target=_run_task, args=(task, sending), name=f"protocol {task[1]}"
                )
                process.start()
                sending.close()
                running[receiving] = (task, process)
            for receiving in multiprocessing.connection.wait(list(running)):
                (rank, name), process = running.pop(receiving)
                try:
                    outcome = receiving.recv()
                except EOFError:
                    process.join()
                    outcome = (
                        "failed",
                        f"Protocol {name} failed: the process running it ended without a "
                        f"result (exit code {process.exitcode})",
                        "",
                    )
                finally:
                    receiving.close()
                process.join()
                if outcome[0] != "done":
                    raise SimulationFailure(
                        MODEL_ERROR, outcome[1], {"traceback": outcome[2], "protocol": name}
                    )
                responses[rank].update(outcome[1])
                scored[rank].update(outcome[3])
                seconds.append({"rank": rank + 1, "protocol": name, "seconds": outcome[2]})
                write_progress(
                    progress_file,
                    SIMULATING,
                    f"Ran {name}",
                    protocols_done=len(seconds),
                    protocols_total=len(tasks),
                )
    finally:
        for _, process in running.values():
            process.kill()
            process.join()
        _prepare_cell(None)
    return responses, scored, seconds


def _prepare_cell(rank: int | None) -> None:
    """Have the cell of individual ``rank`` instantiated in this process (None: none).

    BluePyOpt builds the cell again for every protocol (freeze, instantiate, run, destroy);
    for the HBP models that is about half a second each, a fifth of an analysis's CPU. The
    cell is the same for all of one individual's protocols, so it is built once here and
    every protocol's process, forked from this one, starts from it. Only for the plain
    SweepProtocol (whose run this reproduces, see ``_run_on_prepared_cell``); a cell that
    cannot be built here is left to each protocol's process, which reports the failure
    under the protocol's name as before.
    """
    global _CELL_TRIED_FOR, _CELL_READY_FOR
    if rank == _CELL_TRIED_FOR:
        return
    evaluator = _EVALUATOR
    if _CELL_TRIED_FOR is not None:
        _destroy_cell(evaluator, _PARAMETER_SETS[_CELL_TRIED_FOR])
    _CELL_TRIED_FOR, _CELL_READY_FOR = rank, None
    if rank is None or not _sweep_protocols_only(evaluator):
        return
    parameters = _PARAMETER_SETS[rank]
    try:
        if getattr(evaluator, "use_params_for_seed", False):
            evaluator.sim.random123_globalindex = evaluator.seed_from_param_dict(parameters)
        evaluator.cell_model.freeze(parameters)
        evaluator.cell_model.instantiate(sim=evaluator.sim)
    except Exception:
        _destroy_cell(evaluator, parameters)
        return
    _CELL_READY_FOR = rank


def _destroy_cell(evaluator: Any, parameters: dict[str, float]) -> None:
    try:
        evaluator.cell_model.destroy(sim=evaluator.sim)
        evaluator.cell_model.unfreeze(list(parameters))
    except Exception:
        pass  # a cell half built: the protocols' own processes build theirs and report


def _sweep_protocols_only(evaluator: Any) -> bool:
    """True when every fitness protocol runs as BluePyOpt's own SweepProtocol runs."""
    from bluepyopt.ephys.protocols import SweepProtocol
    from bluepyopt.ephys.simulators import NrnSimulator

    return type(evaluator.sim) is NrnSimulator and all(
        isinstance(protocol, SweepProtocol)
        and type(protocol).run is SweepProtocol.run
        and type(protocol)._run_func is SweepProtocol._run_func
        for protocol in evaluator.fitness_protocols.values()
    )


def _run_on_prepared_cell(protocol: Any) -> dict[str, Any]:
    """SweepProtocol._run_func (bluepyopt 1.14) without its freeze and instantiate of the
    cell, which ``_prepare_cell`` did before this process was forked."""
    from bluepyopt.ephys import simulators

    sim = _EVALUATOR.sim
    protocol.instantiate(sim=sim, cell_model=_EVALUATOR.cell_model)
    try:
        sim.run(protocol.total_duration, cvode_active=protocol.cvode_active)
    except (RuntimeError, simulators.NrnSimulatorException):
        # As BluePyOpt: a simulation that fails gives no responses, scored as such.
        return {recording.name: None for recording in protocol.recordings}
    return {recording.name: recording.response for recording in protocol.recordings}


def _cost_rank(protocol: Any) -> tuple[float, float]:
    """Sorts the costliest protocol first: the longest in simulated time, and among equally
    long ones the most depolarising. With variable time steps a cell that fires costs many
    more steps than one at rest: the HBP models' step_1.0 takes seven times step_-0.8's
    time, and run last it alone used to end the analysis several seconds after the rest."""
    try:
        duration = float(protocol.total_duration)
    except Exception:  # a protocol without a duration of its own
        duration = 0.0
    return (
        -duration,
        -max((_depolarising(s) for s in getattr(protocol, "stimuli", None) or []), default=0.0),
    )


def _depolarising(stimulus: Any) -> float:
    """A stimulus's largest current in nA (square pulse or ramp); 0 when it has none."""
    amplitudes = [
        getattr(stimulus, name, None)
        for name in ("step_amplitude", "ramp_amplitude_start", "ramp_amplitude_end")
    ]
    numbers = [float(value) for value in amplitudes if isinstance(value, int | float)]
    return max(numbers, default=0.0)


def _run_task(task: tuple[int, str], sending: Any) -> None:
    """In the forked process: run one protocol and score its objectives; send back
    ("done", responses, seconds, scored) or ("failed", message, traceback).

    The message names the protocol and the error under BluePyOpt's "Failed to run Neuron
    Sweep Protocol" (NEURON's own, for a mechanism no .mod file defines)."""
    rank, name = task
    started = time.perf_counter()
    try:
        protocol = _EVALUATOR.fitness_protocols[name]
        if _CELL_READY_FOR == rank:
            task_responses = _run_on_prepared_cell(protocol)
        else:
            # Not isolated again: this process is already a fresh fork for this protocol.
            task_responses = _EVALUATOR.run_protocol(
                protocol, param_values=_PARAMETER_SETS[rank], isolate=False
            )
        elapsed = time.perf_counter() - started
        scored = _score_objectives(
            _EVALUATOR.fitness_calculator.objectives, _OBJECTIVES_OF.get(name, []), task_responses
        )
        outcome = ("done", task_responses, elapsed, scored)
    except BaseException as error:  # reported to the simulation process
        wording = _protocol_failures()
        outcome = (
            "failed",
            wording.protocol_failure_message(name, wording.error_chain(error)),
            _traceback(error),
        )
    try:
        sending.send(outcome)
    except Exception as error:  # e.g. responses that cannot be pickled
        sending.send(
            (
                "failed",
                f"Protocol {name} failed: its responses cannot be sent back: {_one_line(error)}",
                "",
            )
        )
    sending.close()


# --- scoring and describing ------------------------------------------------------------


def _objectives_by_protocol(evaluator: Any) -> dict[str, list[int]]:
    """The objectives (by index) whose features read only the recordings of one protocol.

    Those are scored in that protocol's process; the others, once every protocol has run.
    """
    objectives = getattr(evaluator.fitness_calculator, "objectives", None)
    if not isinstance(objectives, list | tuple):
        return {}
    recordings_of = {
        name: {recording.name for recording in getattr(protocol, "recordings", None) or []}
        for name, protocol in evaluator.fitness_protocols.items()
    }
    assigned: dict[str, list[int]] = {}
    for index, objective in enumerate(objectives):
        needed: set[str] = set()
        for feature in getattr(objective, "features", None) or [None]:
            names = getattr(feature, "recording_names", None)
            if not isinstance(names, dict) or not names:
                needed = set()
                break
            needed.update(str(name) for name in names.values())
        owners = [name for name, held in recordings_of.items() if needed and needed <= held]
        if len(owners) == 1:
            assigned.setdefault(owners[0], []).append(index)
    return assigned


def _score(
    objective: Any, responses: dict[str, Any], computed: dict[int, Any] | None = None
) -> dict[str, Any]:
    """One objective's score and its features' description, by the objective's own
    ``calculate_score``; features whose eFEL values were read in one go (``computed``, see
    ``_efel_values``) score from those instead of asking eFEL again, one feature at a time."""
    computed = computed or {}
    features = list(getattr(objective, "features", None) or [])
    given = [feature for feature in features if id(feature) in computed]
    for feature in given:
        # An attribute of the instance hides the class's method for this call only.
        feature.calculate_score = _given_score(feature, computed[id(feature)])
    try:
        score = objective.calculate_score(responses)
    finally:
        for feature in given:
            del feature.calculate_score
    described = []
    for feature in features:
        row = _feature(feature, responses, value=id(feature) not in computed)
        if id(feature) in computed:
            row["value"] = _mean_value(computed[id(feature)])
        described.append(row)
    return {"score": _number(score), "features": described}


def _score_objectives(
    objectives: list[Any], indices: list[int], responses: dict[str, Any]
) -> dict[int, dict[str, Any]]:
    """``_score`` for several objectives, their eFEL values read in one go where possible."""
    features = [
        feature for index in indices for feature in getattr(objectives[index], "features", [])
    ]
    computed = _efel_values(features, responses)
    return {index: _score(objectives[index], responses, computed) for index in indices}


def _given_score(feature: Any, values: Any):
    """BluePyOpt's eFELFeature.calculate_score from already computed values: eFEL's
    getDistance (efel 5.x; trace_check off, as BluePyOpt calls it), the same arithmetic in
    the same order, then BluePyOpt's force_max_score."""

    def calculate_score(responses: Any, trace_check: bool = False) -> Any:
        if values is None or len(values) < 1:
            return feature.max_score  # BluePyOpt passes it as getDistance's error_dist
        distance = 0
        for value in values:
            distance += abs(value - feature.exp_mean)
        distance = distance / feature.exp_std / len(values)
        if distance != distance:  # NaN
            distance = feature.max_score
        if feature.force_max_score:
            distance = min(distance, feature.max_score)
        return distance

    return calculate_score


def _mean_value(values: Any) -> Any:
    """What eFEL's getMeanFeatureValues (BluePyOpt's calculate_feature) gives for them."""
    import numpy

    return None if values is None or len(values) == 0 else _plain(numpy.mean(values))


def _efel_values(features: list[Any], responses: dict[str, Any]) -> dict[int, Any]:
    """The raw eFEL values of BluePyOpt eFEL features (by ``id``), one eFEL call per trace
    and settings.

    BluePyOpt sets eFEL up, computes and resets it for every feature, once for its score
    and once more for its value, which costs more than the simulation of a short protocol;
    features sharing a trace and settings are read together here, once. Features of other
    kinds (or whose scoring a model changed), or any failure, are left to the features' own
    methods.
    """
    import efel
    from bluepyopt.ephys.efeatures import eFELFeature

    groups: dict[tuple, list[Any]] = {}
    for feature in features:
        if not (
            isinstance(feature, eFELFeature)
            and type(feature).calculate_score is eFELFeature.calculate_score
            and type(feature).calculate_feature is eFELFeature.calculate_feature
            and type(feature)._setup_efel is eFELFeature._setup_efel
            and isinstance(feature.efel_feature_name, str)
        ):
            continue
        key = tuple(
            repr(getattr(feature, attribute, None))
            for attribute in (
                "recording_names",
                "stim_start",
                "stim_end",
                "threshold",
                "stimulus_current",
                "interp_step",
                "double_settings",
                "int_settings",
                "string_settings",
            )
        )
        groups.setdefault(key, []).append(feature)
    values: dict[int, Any] = {}
    for group in groups.values():
        try:
            trace = group[0]._construct_efel_trace(responses)
            if trace is None:
                continue  # the features' own methods give their error scores
            group[0]._setup_efel()
            names = sorted({feature.efel_feature_name for feature in group})
            found = efel.getFeatureValues([trace], names, raise_warnings=False)[0]
        except Exception:  # the features' own methods read them one by one instead
            continue
        finally:
            efel.reset()
        for feature in group:
            values[id(feature)] = found.get(feature.efel_feature_name)
    return values


def _objectives(
    evaluator: Any,
    responses: dict[str, Any],
    scored: dict[int, dict[str, Any]],
    individual: Any,
) -> list[dict]:
    """Every objective's row: the scores already computed in the protocols' processes, and
    the others computed now by the evaluator's fitness calculator."""
    calculator = evaluator.fitness_calculator
    objectives = getattr(calculator, "objectives", None)
    if isinstance(objectives, list | tuple):
        names = [objective.name for objective in objectives]
        left = [index for index in range(len(objectives)) if index not in scored]
        scored.update(
            _model_call(
                "the fitness calculator's objectives",
                lambda: _score_objectives(list(objectives), left, responses),
            )
        )
    else:  # a calculator of its own kind: scores only
        scores = _model_call(
            "fitness_calculator.calculate_scores",
            lambda: calculator.calculate_scores(responses),
        )
        names = list(scores)
        scored = {
            index: {"score": _number(scores[name]), "features": []}
            for index, name in enumerate(names)
        }
    stored = list(getattr(getattr(individual, "fitness", None), "values", ()) or ())
    if len(stored) != len(names):
        stored = [None] * len(names)
    rows = []
    for index, name in enumerate(names):
        described = scored[index]["features"]
        first = described[0] if described else {}
        protocol, location, feature_name = _split_objective_name(name, first)
        row = {
            "name": name,
            "protocol": protocol,
            "location": location,
            "feature": feature_name,
            "score": scored[index]["score"],
            "stored_score": _number(stored[index]),
            "value": first.get("value"),
            "experimental_mean": first.get("experimental_mean"),
            "experimental_std": first.get("experimental_std"),
        }
        if len(described) > 1:
            row["features"] = described
        rows.append(row)
    return rows


def _feature(feature: Any, responses: dict[str, Any], *, value: bool = True) -> dict[str, Any]:
    recording_names = getattr(feature, "recording_names", None) or {}
    return {
        "name": getattr(feature, "name", ""),
        "efel_feature_name": getattr(feature, "efel_feature_name", None),
        "recording": recording_names.get("") if isinstance(recording_names, dict) else None,
        "value": _feature_value(feature, responses) if value else None,
        "experimental_mean": _number(getattr(feature, "exp_mean", None)),
        "experimental_std": _number(getattr(feature, "exp_std", None)),
    }


def _feature_value(feature: Any, responses: dict[str, Any]) -> Any:
    try:
        return _plain(feature.calculate_feature(responses))
    except Exception:  # the score was computed; the value is a courtesy
        return None


def _split_objective_name(name: str, feature: dict[str, Any]) -> tuple[str, str, str]:
    """protocol, location, feature of ``protocol.location.feature`` (protocols may hold dots,
    as in ``step_-0.1``; locations and eFEL feature names do not)."""
    parts = name.rsplit(".", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return name, "", feature.get("efel_feature_name") or ""


def _stored_fitness(individual: Any) -> float | None:
    values = getattr(getattr(individual, "fitness", None), "values", None)
    return _sum(values) if values else None


def _parameters(evaluator: Any, values: dict[str, float]) -> list[dict[str, Any]]:
    bounds = {
        param.name: (getattr(param, "lower_bound", None), getattr(param, "upper_bound", None))
        for param in getattr(evaluator, "params", None) or []
    }
    rows = []
    for name, value in values.items():
        lower, upper = bounds.get(name, (None, None))
        rows.append(
            {
                "name": name,
                "value": _number(value),
                "lower": _number(lower),
                "upper": _number(upper),
            }
        )
    return rows


def _hoc(evaluator: Any, parameters: dict[str, float], warnings: list[str]) -> str | None:
    try:
        return evaluator.cell_model.create_hoc(param_values=parameters)
    except Exception as error:  # the analysis stands without the hoc file
        warnings.append(f"The cell could not be written as hoc: {_one_line(error)}")
        return None


def _protocol(name: str, protocol: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": type(protocol).__name__,
        "total_duration": _number(getattr(protocol, "total_duration", None)),
        "stimuli": [_stimulus(stimulus) for stimulus in getattr(protocol, "stimuli", None) or []],
        "recordings": [recording.name for recording in getattr(protocol, "recordings", None) or []],
    }


def _stimulus(stimulus: Any) -> dict[str, Any]:
    described: dict[str, Any] = {"type": type(stimulus).__name__}
    try:
        described["description"] = str(stimulus)
    except Exception:
        described["description"] = type(stimulus).__name__
    location = getattr(stimulus, "location", None)
    if location is not None:
        described["location"] = getattr(location, "name", None) or str(location)
    described["settings"] = {
        key: _number(value)
        for key, value in vars(stimulus).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    envelope = getattr(stimulus, "envelope", None)
    if callable(envelope):
        try:
            described["envelope"] = [[_number(t), _number(amp)] for t, amp in envelope()]
        except Exception:  # a stimulus without a drawable envelope
            pass
    return described


def _save_traces(responses: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Write the time/voltage responses to ``path`` (npz); describe every recording."""
    import numpy

    arrays = {}
    recordings = []
    for index, (name, response) in enumerate(sorted(responses.items())):
        time_values = voltage = None
        if response is not None:
            try:
                time_values = numpy.asarray(response["time"], dtype=float)
                voltage = numpy.asarray(response["voltage"], dtype=float)
            except (KeyError, TypeError, IndexError, ValueError):
                time_values = voltage = None
        if time_values is None or voltage is None or time_values.shape != voltage.shape:
            recordings.append({"name": name, "key": None, "failed": response is None})
            continue
        key = f"r{index}"
        arrays[f"{key}_time"] = time_values
        arrays[f"{key}_voltage"] = voltage
        recordings.append({"name": name, "key": key, "failed": False})
    numpy.savez(path, **arrays)
    return recordings


def _logbook(logbook: Any) -> list[dict[str, Any]]:
    rows = []
    for record in list(logbook or []):
        if isinstance(record, dict):
            rows.append(
                {
                    key: _plain(record.get(key))
                    for key in ("gen", "nevals", "avg", "std", "min", "max")
                }
            )
    return rows


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("neuron", "bluepyopt", "efel", "deap", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


# --- plain data ------------------------------------------------------------------------


def _number(value: Any) -> float | int | None:
    """A finite JSON number, or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, int):
            return value
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: numbers (finite or None), text, lists, dicts."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    number = _number(value)
    return number if number is not None else (None if _is_number_like(value) else str(value))


def _is_number_like(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _sum(values: Any) -> float | None:
    numbers = [_number(value) for value in values]
    if not numbers or any(number is None for number in numbers):
        return None
    return float(sum(numbers))


# --- reporting -------------------------------------------------------------------------


def _write_failure(request: dict, kind: str, message: str, details: dict[str, Any]) -> None:
    write_json_atomically(
        Path(request["error_file"]), {"kind": kind, "message": message, "details": details}
    )


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def _one_line(error: BaseException) -> str:
    """``Type: message``, followed by the first cause's when the error wraps another
    (BluePyOpt wraps every protocol failure in "Failed to run Neuron Sweep Protocol")."""
    shown = _described(error)
    cause = error
    while cause.__cause__ is not None or (
        cause.__context__ is not None and not cause.__suppress_context__
    ):
        cause = cause.__cause__ or cause.__context__
    return shown if cause is error else f"{shown} (caused by {_described(cause)})"


def _described(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _exit_with_parent() -> None:
    """Leave when the engine that started this process is gone (killed, not just timed out)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _protocol_failures():
    """The wording of a failed protocol, shared with local runs, where it is a top-level
    module of nsg_app/local/inject (standard library only). Loaded from its file, on failure
    only: importing it through the nsg_app package would import the local runner with it,
    which this process (in the sandbox: only its own packages are there) neither has nor
    needs."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "nsg_app/local/inject/protocol_failures.py"
    spec = importlib.util.spec_from_file_location("protocol_failures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the exit handlers, which would wait for protocols still running after a failure.
    os._exit(code)
