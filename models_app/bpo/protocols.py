"""protocols.json: the stimulation protocols, as checks and as stimulus traces to plot.

The content under the optimisation key is
``{protocol: {"stimuli": [{delay, amp, duration, totduration}], "extra_recordings": [...]}}``.
Each stimulus is a current step of ``amp`` nA from ``delay`` to ``delay + duration`` ms in a
sweep of ``totduration`` ms; a protocol's stimuli add up (a step plus a holding current).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .numeric import number_problem
from .ordering import natural_key
from .wording import json_type

LABEL = "protocols.json"
STIMULUS_FIELDS = ("delay", "amp", "duration", "totduration")


@dataclass(frozen=True)
class StimulusTrace:
    """The injected current of one protocol: time in ms, current in nA, ready to plot."""

    protocol: str
    time: tuple[float, ...]
    current: tuple[float, ...]


def stimulus_traces(protocols: Mapping[str, Any]) -> list[StimulusTrace]:
    """The stimulus of every protocol (content under the key of a well-formed protocols.json).

    Each trace is a step function drawn with two points at every change, from 0 to the
    protocol's total duration, so a plain line plot shows the steps. Protocols come in
    natural order (``step_-0.8`` before ``step_0.2``).
    """
    return [_trace(name, protocols[name]["stimuli"]) for name in sorted(protocols, key=natural_key)]


def protocol_problems(protocols: object) -> list[str]:
    """Every problem with the content under the key of protocols.json, in words."""
    if not isinstance(protocols, dict):
        return [
            f"{LABEL}: the value under the key must be an object mapping protocol names "
            f"to their stimuli; it is {json_type(protocols)}."
        ]
    if not protocols:
        return [f"{LABEL} defines no protocol."]
    problems = []
    for name, definition in protocols.items():
        if not isinstance(definition, dict):
            problems.append(f"{LABEL}: protocol '{name}' must be an object with a 'stimuli' list.")
            continue
        stimuli = definition.get("stimuli")
        if not isinstance(stimuli, list) or not stimuli:
            # The evaluator takes the first stimulus's timing for every feature.
            problems.append(f"{LABEL}: protocol '{name}' must have a non-empty 'stimuli' list.")
        else:
            for position, stimulus in enumerate(stimuli, start=1):
                problems += _stimulus_problems(name, position, stimulus)
        if "extra_recordings" in definition:
            problems += _recording_problems(name, definition["extra_recordings"])
    return problems


def _stimulus_problems(protocol: str, position: int, stimulus: object) -> list[str]:
    where = f"{LABEL}: protocol '{protocol}', stimulus {position}"
    if not isinstance(stimulus, dict):
        return [f"{where} must be an object with {', '.join(STIMULUS_FIELDS)}."]
    problems = []
    for field in STIMULUS_FIELDS:
        if field not in stimulus:
            problems.append(f"{where} has no '{field}'.")
            continue
        problem = number_problem(stimulus[field])
        if problem:
            problems.append(f"{where}: '{field}' {problem}.")
        elif field in ("delay", "duration") and stimulus[field] < 0:
            problems.append(f"{where}: '{field}' must not be negative.")
        elif field == "totduration" and stimulus[field] <= 0:
            problems.append(f"{where}: 'totduration' must be positive.")
    return problems


def _recording_problems(protocol: str, recordings: object) -> list[str]:
    where = f"{LABEL}: protocol '{protocol}'"
    if not isinstance(recordings, list):
        return [f"{where}: 'extra_recordings' must be a list."]
    return [
        f"{where}, extra recording {position} must be an object with a 'name'."
        for position, recording in enumerate(recordings, start=1)
        if not (isinstance(recording, dict) and isinstance(recording.get("name"), str))
    ]


def _trace(protocol: str, stimuli: list[Mapping[str, float]]) -> StimulusTrace:
    end = max(float(stimulus["totduration"]) for stimulus in stimuli)
    steps = [
        (
            float(stimulus["delay"]),
            float(stimulus["delay"]) + float(stimulus["duration"]),
            float(stimulus["amp"]),
        )
        for stimulus in stimuli
    ]
    ends = {min(max(t, 0.0), end) for start, stop, _ in steps for t in (start, stop)}
    changes = sorted({0.0, end} | ends)
    segments: list[tuple[float, float, float]] = []
    for start, stop in pairwise(changes):
        level = sum(amp for on, off, amp in steps if on <= start < off)
        # Round away float noise such as 0.1 + 0.2 = 0.30000000000000004;
        # adding 0.0 turns -0.0 into 0.0.
        level = round(level, 12) + 0.0
        if segments and segments[-1][2] == level:
            segments[-1] = (segments[-1][0], stop, level)
        else:
            segments.append((start, stop, level))
    time = tuple(t for start, stop, _ in segments for t in (start, stop))
    current = tuple(level for _, _, level in segments for _ in range(2))
    return StimulusTrace(protocol=protocol, time=time, current=current)
