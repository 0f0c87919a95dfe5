"""Continuing an optimisation from one of its checkpoints, for more generations.

BluePyOpt's ``run(continue_cp=True, cp_filename=...)`` reloads the population, parents,
generation, hall of fame, logbook, history and random state from the checkpoint, evaluates
every parent again, and goes on until the generation ``max_ngen`` (a total, not "more"); its
logbook keeps the earlier generations, so the continued run's evolution starts at
generation 1. The offspring size is not stored, but the parents are ``offspring_size``
individuals (BluePyOpt selects mu = offspring_size of them), so the continued run must use
that number. A ``max_ngen`` at or below the stored generation would run nothing and write no
checkpoint, so it is refused.

A model's opt_neuron.py decides whether it can resume at all: the flag its argparse maps to
``run(continue_cp=...)`` is read from the script (``--resume`` in the HBP family), never
assumed. The checkpoint's generation and parents are read by the sandboxed checkpoint survey
(``checkpoints.survey_checkpoints``), never here: unpickling runs code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointSummary
from .errors import BpoError
from .layout import ENTRY_SCRIPT
from .loading import read_entry_script

RESUME_KEYWORD = "continue_cp"  # BluePyOpt's run(...) keyword for resuming
# When a script offers several spellings of its resume flag, the HBP family's comes first.
PREFERRED_RESUME_FLAGS = ("--resume", "--continue_cp")
RESUME_NOTE = (
    "Resuming evaluates the checkpoint's parents again before the first new generation, "
    "so the continued run takes one generation's worth of evaluations more than it adds."
)


class CannotContinue(BpoError):
    """The run cannot be continued from this checkpoint; ``problems`` says why."""

    summary = "The optimisation cannot be continued"


@dataclass(frozen=True)
class ContinuedFrom:
    """The checkpoint a run continues from, as the sandboxed survey read it."""

    checkpoint: Path  # the checkpoint file; it travels in the package
    checkpoint_name: str  # its name where it was found (seed1.pkl, checkpoint.pkl)
    generation: int  # the generation stored in it
    offspring_size: int  # its number of parents: the offspring size it was run with
    resume_flag: str  # opt_neuron.py's flag for run(continue_cp=True)
    source: str  # what was continued, as the user named it (a job, a model's run)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "checkpoint": self.checkpoint_name,
            "generation": self.generation,
            "offspring_size": self.offspring_size,
            "resume_flag": self.resume_flag,
        }


def resume_flag(root: Path) -> str | None:
    """The command-line flag of ``root/opt_neuron.py`` that resumes from ``--checkpoint``.

    None when the script has no such flag: its ``run(...)`` call takes no ``continue_cp``
    from the command line, or takes it from an option its argparse does not declare.
    """
    entry = Path(root) / ENTRY_SCRIPT
    if not entry.is_file():
        return None
    script = read_entry_script(entry.read_text(encoding="utf-8", errors="replace"))
    dest = script.run_options.get(RESUME_KEYWORD)
    if dest is None:
        return None
    flags = [flag for flag, option_dest in script.options.items() if option_dest == dest]
    for preferred in PREFERRED_RESUME_FLAGS:
        if preferred in flags:
            return preferred
    long_flags = [flag for flag in flags if flag.startswith("--")]
    return (long_flags or flags or [None])[0]


def no_resume_message(model_name: str) -> str:
    return (
        f"{model_name} cannot be continued: its {ENTRY_SCRIPT} has no resume mode (no "
        f"command-line flag of its argparse reaches run({RESUME_KEYWORD}=...)), so it can "
        "only start new optimisations."
    )


def generations_problem(generations: object, stored_generation: int) -> str | None:
    """Why ``generations`` cannot be the continued run's max_ngen, or None."""
    if isinstance(generations, bool) or not isinstance(generations, int):
        return "The number of generations must be a whole number."
    if generations <= stored_generation:
        return (
            f"The checkpoint already holds generation {stored_generation}: the new maximum "
            f"of generations must be more than {stored_generation} (it is the total, not the "
            f"number of generations to add), not {generations}."
        )
    return None


def continued_from(
    root: Path,
    checkpoint: Path,
    summary: CheckpointSummary,
    *,
    source: str,
    model_name: str,
) -> ContinuedFrom:
    """What a continued run of ``root`` from ``checkpoint`` needs; raises CannotContinue.

    ``summary`` is the sandboxed survey's reading of ``checkpoint``.
    """
    flag = resume_flag(root)
    if flag is None:
        raise CannotContinue([no_resume_message(model_name)])
    problems = []
    if summary.error:
        problems.append(f"The checkpoint {summary.name} could not be read: {summary.error}")
    elif summary.generation is None or summary.offspring_size is None:
        problems.append(
            f"The checkpoint {summary.name} holds no generation number or no parents, so "
            "BluePyOpt cannot resume from it."
        )
    if problems:
        raise CannotContinue(problems)
    return ContinuedFrom(
        checkpoint=Path(checkpoint),
        checkpoint_name=summary.name,
        generation=summary.generation,
        offspring_size=summary.offspring_size,
        resume_flag=flag,
        source=source,
    )
