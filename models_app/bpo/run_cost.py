"""What a run will cost, from a measured time per evaluation: wall time and core-hours.

BluePyOpt evaluates ``offspring_size`` individuals per generation (the first generation its
initial population), mapped over the workers: each generation takes
``ceil(offspring_size / workers)`` rounds of one evaluation each, and the next one waits for
the slowest. A continued run first evaluates its ``offspring_size`` parents again, then the
generations after the checkpoint's. NSG charges every core of every node for the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RunCost:
    """The expected size of a run, and whether it fits its runtime limit."""

    evaluations: int
    wall_seconds: float
    core_hours: float
    runtime_hours: float

    @property
    def over_limit(self) -> bool:
        return self.wall_seconds > self.runtime_hours * 3600

    @property
    def summary(self) -> str:
        return (
            f"About {duration_text(self.wall_seconds)} of wall time and "
            f"{self.core_hours:.2f} core-hours for {self.evaluations} evaluations."
        )

    @property
    def warning(self) -> str:
        if not self.over_limit:
            return ""
        return (
            f"That is more than the runtime limit of {duration_text(self.runtime_hours * 3600)}: "
            "the run would probably be stopped before it ends. Ask for a longer runtime, more "
            "cores, or fewer generations or offspring."
        )


def run_cost(
    *,
    seconds_per_evaluation: float,
    offspring_size: int,
    max_ngen: int,
    nodes: int,
    cores_per_node: int,
    runtime_hours: float,
    continued_from_generation: int = 0,
) -> RunCost:
    """The cost of a run of ``max_ngen`` generations on ``nodes`` x ``cores_per_node`` cores.

    ``continued_from_generation``: the generation stored in the checkpoint a continued run
    resumes from (0 for a new optimisation).
    """
    workers = max(1, nodes * cores_per_node)
    generations = max(0, max_ngen - continued_from_generation)
    if continued_from_generation:
        generations += 1  # the parents, evaluated again first
    rounds = math.ceil(offspring_size / workers) * generations
    wall = rounds * seconds_per_evaluation
    return RunCost(
        evaluations=offspring_size * generations,
        wall_seconds=wall,
        core_hours=wall * workers / 3600,
        runtime_hours=runtime_hours,
    )


def duration_text(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``: as precise as a forecast deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
