"""The checkpoints of an optimisation folder: names, seeds, stored fitness, the best one.

The published catalogue keeps one checkpoint per seed, ``checkpoints/seed<N>.pkl`` with its
cell ``cell_seed<N>_0.hoc``, and its ``_meta.json`` names the best in ``best_run``; a run
writes ``checkpoints/checkpoint.pkl``. The stored fitness of a checkpoint is the sum of the
fitness values of its hall of fame's first individual: the lower, the better.

A checkpoint is a pickle: reading one may run any code, so it is read only in a process of
its own, never in the web or worker process. ``survey_checkpoints`` is the one place that
starts such a process for this; the analysis engine's simulation process (already one of its
own) calls ``load_checkpoint`` and ``stored_fitness`` directly.

Run as ``python -m models_app.bpo.checkpoints FOLDER``: prints the survey of FOLDER/checkpoints
as JSON.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .layout import CHECKPOINTS_DIR
from .sandbox import Sandbox

CHECKPOINT_SUFFIX = ".pkl"
SURVEY_TIMEOUT_SECONDS = 120.0
# More than the catalogue ever holds (it keeps a few seeds): a bound on the work of a survey.
MAX_CHECKPOINTS = 50
_SEED = re.compile(r"^seed(\d+)\.pkl$")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CheckpointSummary:
    """One checkpoint as the pickers show it; ``fitness`` None when it could not be read."""

    name: str
    seed: int | None
    hoc: str | None  # the cell the original analysis wrote beside it, when there
    fitness: float | None = None
    error: str = ""
    # What a continued run needs: the generation stored, and the number of parents (the
    # offspring size the run used, which BluePyOpt does not store otherwise).
    generation: int | None = None
    offspring_size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointSummary:
        fitness = data.get("fitness")
        return cls(
            name=str(data["name"]),
            seed=_whole(data.get("seed")),
            hoc=data.get("hoc") if isinstance(data.get("hoc"), str) else None,
            fitness=float(fitness) if isinstance(fitness, int | float) else None,
            error=str(data.get("error") or ""),
            generation=_whole(data.get("generation")),
            offspring_size=_whole(data.get("offspring_size")),
        )


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def checkpoint_files(run_folder: Path) -> list[Path]:
    """The checkpoints of ``run_folder/checkpoints``, by name (links left out)."""
    folder = Path(run_folder) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix == CHECKPOINT_SUFFIX and path.is_file() and not path.is_symlink()
    )[:MAX_CHECKPOINTS]


def checkpoint_seed(name: str) -> int | None:
    """N of the catalogue's ``seed<N>.pkl``; None for other names (checkpoint.pkl)."""
    found = _SEED.match(name)
    return int(found[1]) if found else None


def checkpoint_hoc(path: Path) -> str | None:
    """``cell_<stem>_0.hoc`` beside the checkpoint, when it is there."""
    hoc = path.with_name(f"cell_{path.stem}_0.hoc")
    return hoc.name if hoc.is_file() else None


def best_checkpoint(
    summaries: Iterable[CheckpointSummary], *, preferred: str | None = None
) -> str | None:
    """The checkpoint to analyse by default: ``preferred`` (a catalogue model's ``best_run``)
    when present; else the lowest stored fitness; else the first by name."""
    summaries = list(summaries)
    names = [summary.name for summary in summaries]
    if preferred and preferred in names:
        return preferred
    read = [summary for summary in summaries if summary.fitness is not None]
    if read:
        return min(read, key=lambda summary: (summary.fitness, summary.name)).name
    return min(names) if names else None


# --- in a process of its own only ------------------------------------------------------


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Unpickle a BluePyOpt checkpoint. Only ever in a process of its own (see above)."""
    # The checkpoint's individuals are instances of bluepyopt's (and deap's) classes.
    import bluepyopt.deapext.optimisations  # noqa: F401

    with open(path, "rb") as stream:
        # Checkpoints of the published catalogue were pickled by Python 2.
        return pickle.load(stream, encoding="latin1")


def stored_fitness(checkpoint: Any) -> float | None:
    """The sum of the fitness values of the hall of fame's first individual."""
    if not isinstance(checkpoint, dict):
        return None
    hall_of_fame = list(checkpoint.get("halloffame") or [])
    if not hall_of_fame:
        return None
    values = getattr(getattr(hall_of_fame[0], "fitness", None), "values", None)
    try:
        total = float(sum(float(value) for value in values or ()))
    except (TypeError, ValueError):
        return None
    return total if values and math.isfinite(total) else None


def stored_generation(checkpoint: Any) -> tuple[int | None, int | None]:
    """The checkpoint's generation and its number of parents (the run's offspring size)."""
    if not isinstance(checkpoint, dict):
        return None, None
    generation = checkpoint.get("generation")
    try:
        parents = len(checkpoint.get("parents") or ())
    except TypeError:
        parents = 0
    return _whole(generation), parents or None


def summarise_checkpoint(path: Path) -> CheckpointSummary:
    """Read one checkpoint's stored fitness and generation (unpickles: a process of its
    own only)."""
    fitness, error, generation, parents = None, "", None, None
    try:
        checkpoint = load_checkpoint(path)
        fitness = stored_fitness(checkpoint)
        generation, parents = stored_generation(checkpoint)
        if fitness is None:
            error = "its hall of fame holds no individual with a fitness"
    except Exception as failure:  # a damaged or foreign file: said, not fatal
        error = f"{type(failure).__name__}: {' '.join(str(failure).split())}"[:500]
    return CheckpointSummary(
        name=path.name,
        seed=checkpoint_seed(path.name),
        hoc=checkpoint_hoc(path),
        fitness=fitness,
        error=error,
        generation=generation,
        offspring_size=parents,
    )


# --- the survey process ----------------------------------------------------------------


def survey_checkpoints(
    run_folder: Path,
    *,
    timeout: float = SURVEY_TIMEOUT_SECONDS,
    sandbox: Sandbox | None = None,
) -> list[CheckpointSummary]:
    """Every checkpoint of ``run_folder`` with its seed, stored fitness and generation.

    The pickles are read by ``python -m models_app.bpo.checkpoints`` in a process of its own
    (the one child process of this module), in ``sandbox`` (default: bubblewrap): unpickling
    runs code, and the checkpoints are the model's. It sees copies of them in a scratch
    folder and nothing else. When that process fails, the checkpoints are listed without
    fitness, with the reason.
    """
    files = checkpoint_files(run_folder)
    if not files:
        return []
    unread = [
        CheckpointSummary(path.name, checkpoint_seed(path.name), checkpoint_hoc(path))
        for path in files
    ]
    sandbox = sandbox or Sandbox()
    try:
        with tempfile.TemporaryDirectory(prefix="checkpoint-survey-") as scratch:
            copies = Path(scratch) / "run"
            for path in files:
                relative = path.relative_to(run_folder)
                (copies / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copies / relative)
                hoc = path.parent / checkpoint_hoc(path) if checkpoint_hoc(path) else None
                if hoc is not None and hoc.is_file():
                    shutil.copyfile(hoc, copies / relative.parent / hoc.name)
            finished = sandbox.run(
                [sys.executable, "-m", "models_app.bpo.checkpoints", str(copies)],
                cwd=scratch,
                writable=[scratch],
                packages=["models_app.bpo"],
                # This project's module: found from here, whatever the caller's sys.path.
                env=dict(os.environ, PYTHONPATH=str(_PROJECT_ROOT)),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        if finished.returncode != 0:
            lines = finished.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit code {finished.returncode}")
        return [CheckpointSummary.from_dict(item) for item in json.loads(finished.stdout)]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as failure:
        reason = f"the checkpoints could not be read: {failure}"
    except subprocess.TimeoutExpired:
        reason = f"reading the checkpoints took longer than {timeout:g} s"
    return [
        CheckpointSummary(summary.name, summary.seed, summary.hoc, error=reason)
        for summary in unread
    ]


def _main(argv: list[str]) -> int:
    run_folder = Path(argv[1])
    summaries = [summarise_checkpoint(path).as_dict() for path in checkpoint_files(run_folder)]
    sys.stdout.write(json.dumps(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
