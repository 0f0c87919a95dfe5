"""From what the user gives to a run folder ready to simulate, and the checkpoint to analyse.

A source is NSG's ``output.tar.gz`` (members ``./...``: NSG's control files beside the whole
run folder), the zip of an NSG job's results (STDOUT, STDERR, output.tar.gz), a zip of an
optimisation, or a folder (a run folder, or a catalogue model with ``checkpoints/<run>.pkl``).
Archives are unpacked with ``models_app.bpo.archive`` (limits, no path escapes); a folder is
copied, because known fixes and compiled mechanisms must never touch the original.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models_app.bpo.archive import (
    TAR_LIMITS,
    ArchiveError,
    ArchiveLimits,
    CorruptArchive,
    extract_tar,
    extract_zip,
)
from models_app.bpo.checkpoints import CHECKPOINT_SUFFIX, checkpoint_files
from models_app.bpo.layout import (
    CHECKPOINTS_DIR,
    CONFIG_DIR,
    ENTRY_SCRIPT,
    MODEL_DIR,
    is_never_copied,
)
from models_app.bpo.optimisation import InvalidOptimisation, Optimisation, load_optimisation
from models_app.bpo.package import MANIFEST_NAME, SMALLEST_USEFUL_MAX_NGEN

from .errors import (
    CORRUPT_ARCHIVE,
    INVALID_OPTIMISATION,
    INVALID_SOURCE,
    NO_CHECKPOINT,
    NO_RUN_FOLDER,
    UNSAFE_ARCHIVE,
    AnalysisError,
)

NSG_OUTPUT_NAME = "output.tar.gz"
# How deep a run folder may sit in an unpacked source (NSG: ./<top>/ or ./<top>/<subdir>/).
_MAX_DEPTH = 4
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
# NSG's files that say why a job ended early.
_JOB_ERROR_FILES = ("stderr.txt", "STDERR", "scheduler_stderr.txt")
_LOG_TAIL = 4_000


@dataclass(frozen=True)
class PreparedRun:
    """A private copy of the run folder, validated, and the checkpoint chosen in it.

    ``checkpoint`` None: the folder holds several and none was named, so the simulation
    process (which may unpickle them) takes the one with the best stored fitness among
    ``checkpoints``.
    """

    run_folder: Path
    checkpoint: Path | None
    optimisation: Optimisation
    source: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    chosen_by: str = ""  # "name", "best_run", "only" or "" (the best stored fitness)
    # A run that continued another: {"generation", "source"} from its package's manifest.
    continued_from: dict[str, Any] | None = None


def prepare_run(
    source: Path,
    work_dir: Path,
    *,
    checkpoint_name: str | None = None,
    limits: ArchiveLimits = TAR_LIMITS,
) -> PreparedRun:
    """Unpack or copy ``source`` into ``work_dir`` and find its run folder and checkpoint.

    Raises ``AnalysisError`` for a missing or unsafe source, a folder that is not an
    optimisation, and a run without checkpoint.
    """
    source = Path(source)
    warnings: list[str] = []
    if source.is_dir():
        original = _choose_run_folder(source, warnings)
        description = _copy_folder(original, work_dir / "run" / original.name, limits)
        description["name"] = source.name
        description["run_folder"] = original.relative_to(source).as_posix()
        run_folder = tree = work_dir / "run" / original.name
        job_folder = source
        meta_best_run = _catalogue_best_run(original)
    elif source.is_file():
        description, tree = _unpack(source, work_dir, limits)
        run_folder = _choose_run_folder(tree, warnings)
        description["run_folder"] = run_folder.relative_to(tree).as_posix()
        job_folder = tree
        meta_best_run = None
    else:
        raise AnalysisError(INVALID_SOURCE, f"{source} does not exist.")

    name = run_folder.name if run_folder != tree or source.is_dir() else _stem(source)
    try:
        optimisation = load_optimisation(run_folder, name=name)
    except InvalidOptimisation as error:
        raise AnalysisError(
            INVALID_OPTIMISATION,
            "The run folder is not a usable optimisation.",
            {"problems": error.problems},
        ) from None
    checkpoint, chosen_by = choose_checkpoint(
        run_folder, name=checkpoint_name, preferred=meta_best_run, job_folder=job_folder
    )
    return PreparedRun(
        run_folder,
        checkpoint,
        optimisation,
        description,
        warnings,
        checkpoints=checkpoint_files(run_folder),
        chosen_by=chosen_by,
        continued_from=_manifest_continued_from(run_folder),
    )


def choose_checkpoint(
    run_folder: Path,
    *,
    name: str | None = None,
    preferred: str | None = None,
    job_folder: Path | None = None,
) -> tuple[Path | None, str]:
    """The checkpoint to analyse in ``run_folder/checkpoints``, and why that one.

    ``name`` (with or without .pkl) when given; else ``preferred`` (a catalogue model's best
    run) when present; else the only one; else None with "": the one with the best stored
    fitness, which only a process that may unpickle them can tell. ``job_folder`` is
    searched for NSG's error files to explain a missing checkpoint.
    """
    available = checkpoint_files(run_folder)
    listed = [path.name for path in available]
    if name is not None:
        wanted = name if name.endswith(CHECKPOINT_SUFFIX) else name + CHECKPOINT_SUFFIX
        for path in available:
            if path.name == wanted:
                return path, "name"
        raise AnalysisError(
            NO_CHECKPOINT,
            f"There is no checkpoint named {wanted} in {CHECKPOINTS_DIR}/"
            + (f" (it holds {', '.join(listed)})." if listed else " (it holds no checkpoint)."),
            {"available": listed},
        )
    for path in available:
        if path.name == preferred:
            return path, "best_run"
    if len(available) == 1:
        return available[0], "only"
    if available:
        return None, ""
    raise _no_checkpoint(run_folder, job_folder or run_folder)


# --- unpacking -------------------------------------------------------------------------


def _unpack(source: Path, work_dir: Path, limits: ArchiveLimits) -> tuple[dict[str, Any], Path]:
    """Extract an archive source; returns its description and the folder to search."""
    unpacked = work_dir / "unpacked"
    lower = source.name.lower()
    if lower.endswith(".zip") or (not lower.endswith(_TAR_SUFFIXES) and zipfile.is_zipfile(source)):
        extracted = _guarded(lambda: extract_zip(source, unpacked, limits=limits))
        inner = _nsg_output_in(unpacked)
        if inner is None:
            return _described("zip", source, extracted), unpacked
        output = work_dir / "output"
        # The limits hold for everything unpacked: the zip's files count against them too.
        left = max(1, limits.max_total_bytes - extracted.bytes_written)
        inner_limits = dataclasses.replace(
            limits, max_total_bytes=left, max_member_bytes=min(limits.max_member_bytes, left)
        )
        try:
            extracted_output = _guarded(
                lambda: extract_tar(inner, output, limits=inner_limits, skip_links=True)
            )
        except AnalysisError as error:
            if error.kind == UNSAFE_ARCHIVE and extracted.bytes_written:
                error.details["problems"].append(
                    f"The results zip's own files already take {_megabytes(extracted.bytes_written)} "
                    f"of the {_megabytes(limits.max_total_bytes)} an analysis may unpack."
                )
            raise
        description = _described("nsg_results_zip", source, extracted_output)
        description["results_zip_files"] = extracted.files
        return description, output
    if lower.endswith(_TAR_SUFFIXES) or _is_tar(source):
        extracted = _guarded(lambda: extract_tar(source, unpacked, limits=limits, skip_links=True))
        return _described("nsg_output", source, extracted), unpacked
    raise AnalysisError(
        INVALID_SOURCE,
        f"{source.name} is neither a tar archive (NSG's output.tar.gz), a zip nor a folder.",
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _guarded(extract):
    try:
        return extract()
    except ArchiveError as error:
        kind = CORRUPT_ARCHIVE if isinstance(error, CorruptArchive) else UNSAFE_ARCHIVE
        raise AnalysisError(kind, error.summary + ".", {"problems": error.problems}) from None


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _described(kind: str, source: Path, extracted) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": source.name,
        "files": extracted.files,
        "bytes": extracted.bytes_written,
        "skipped_links": len(extracted.skipped_links),
    }


def _nsg_output_in(folder: Path) -> Path | None:
    """The output.tar.gz of an NSG results zip (at its top or in one folder)."""
    found = sorted(
        path
        for pattern in (NSG_OUTPUT_NAME, f"*/{NSG_OUTPUT_NAME}")
        for path in folder.glob(pattern)
        if path.is_file()
    )
    return found[0] if found else None


def _copy_folder(run_folder: Path, destination: Path, limits: ArchiveLimits) -> dict[str, Any]:
    """Copy ``run_folder`` to ``destination``, leaving out links, caches and compiled files."""
    files, size = 0, 0
    for directory, subdirectories, names in os.walk(run_folder):
        here = Path(directory)
        subdirectories[:] = [name for name in subdirectories if not is_never_copied(here / name)]
        for name in names:
            path = here / name
            if not is_never_copied(path) and path.is_file():
                files += 1
                size += path.stat().st_size
    if files > limits.max_members or size > limits.max_total_bytes:
        raise AnalysisError(
            INVALID_SOURCE,
            f"The folder holds {files:,} files and {size:,} bytes, more than an analysis "
            f"accepts ({limits.max_members:,} files, {limits.max_total_bytes:,} bytes).",
        )
    shutil.copytree(
        run_folder,
        destination,
        ignore=lambda directory, names: [
            name for name in names if is_never_copied(Path(directory) / name)
        ],
    )
    return {"kind": "folder", "files": files, "bytes": size, "skipped_links": 0}


def _catalogue_best_run(run_folder: Path) -> str | None:
    """The best run named by a catalogue model's ``<NAME>_meta.json``, kept beside it."""
    meta = run_folder.parent / f"{run_folder.name}_meta.json"
    try:
        best_run = json.loads(meta.read_text(encoding="utf-8")).get("best_run")
    except (OSError, ValueError, AttributeError):
        return None
    return best_run if isinstance(best_run, str) else None


# --- finding the run folder ------------------------------------------------------------


def is_run_folder(folder: Path) -> bool:
    return (
        (folder / CONFIG_DIR).is_dir()
        and (folder / ENTRY_SCRIPT).is_file()
        and (folder / MODEL_DIR).is_dir()
    )


def _choose_run_folder(tree: Path, warnings: list[str]) -> Path:
    found = _run_folders(tree)
    if not found:
        top = sorted(entry.name for entry in tree.iterdir()) if tree.is_dir() else []
        raise AnalysisError(
            NO_RUN_FOLDER,
            f"No optimisation folder (one holding {CONFIG_DIR}/, {ENTRY_SCRIPT} and "
            f"{MODEL_DIR}/) was found in it.",
            {"top_level": top[:50]},
        )

    def preference(folder: Path) -> tuple:
        has_checkpoint = any((folder / CHECKPOINTS_DIR).glob(f"*{CHECKPOINT_SUFFIX}"))
        return (not has_checkpoint, len(folder.relative_to(tree).parts), folder.as_posix())

    found.sort(key=preference)
    if len(found) > 1:
        others = ", ".join(folder.relative_to(tree).as_posix() for folder in found[1:])
        warnings.append(
            f"Several optimisation folders were found; "
            f"{found[0].relative_to(tree).as_posix() or '.'} was analysed (not {others})."
        )
    return found[0]


def _run_folders(tree: Path) -> list[Path]:
    found = []
    for directory, subdirectories, _ in os.walk(tree):
        here = Path(directory)
        depth = len(here.relative_to(tree).parts)
        if is_run_folder(here):
            found.append(here)
            subdirectories[:] = []  # a run folder's own subfolders are its parts
        elif depth >= _MAX_DEPTH:
            subdirectories[:] = []
        else:
            subdirectories[:] = sorted(
                name
                for name in subdirectories
                if not name.startswith(".") and not is_never_copied(here / name)
            )
    return found


# --- explaining a missing checkpoint ---------------------------------------------------


def _no_checkpoint(run_folder: Path, job_folder: Path) -> AnalysisError:
    reasons = []
    max_ngen = _manifest_max_ngen(run_folder)
    if max_ngen is not None and max_ngen < SMALLEST_USEFUL_MAX_NGEN:
        reasons.append(
            f"The run asked for {max_ngen} generation(s); opt_neuron.py writes its checkpoint "
            f"only from generation {SMALLEST_USEFUL_MAX_NGEN} on, so run at least "
            f"{SMALLEST_USEFUL_MAX_NGEN} generations."
        )
    job_errors = _job_error_tails(job_folder)
    if any("TIME LIMIT" in text for text in job_errors.values()):
        reasons.append(
            "The job was stopped by its time limit before the optimisation finished: "
            "ask for a longer runtime, or for fewer generations or a smaller offspring size."
        )
    if not reasons:
        reasons.append(
            "This is often because the runtime was too short for the generations asked "
            "(the job was stopped before the optimisation wrote its checkpoint), or because "
            f"max_ngen was below {SMALLEST_USEFUL_MAX_NGEN} (no checkpoint is written then)."
        )
    folder = run_folder / CHECKPOINTS_DIR
    held = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else None
    return AnalysisError(
        NO_CHECKPOINT,
        "The run left no checkpoint to analyse. " + " ".join(reasons),
        {
            "checkpoints_folder": held,
            "max_ngen": max_ngen,
            "job_errors": job_errors,
        },
    )


def _manifest(run_folder: Path) -> dict[str, Any]:
    """The run package's manifest in the run folder; {} when missing or unreadable."""
    try:
        manifest = json.loads((run_folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _manifest_max_ngen(run_folder: Path) -> int | None:
    run = _manifest(run_folder).get("run")
    value = run.get("max_ngen") if isinstance(run, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _manifest_continued_from(run_folder: Path) -> dict[str, Any] | None:
    """Where the run continued another (the generation its checkpoint held), or None."""
    continued = _manifest(run_folder).get("continued_from")
    if not isinstance(continued, dict):
        return None
    generation, source = continued.get("generation"), continued.get("source")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
        return None
    return {"generation": generation, "source": source[:200] if isinstance(source, str) else ""}


def _job_error_tails(job_folder: Path) -> dict[str, str]:
    tails = {}
    for name in _JOB_ERROR_FILES:
        for path in sorted(job_folder.glob(name)) + sorted(job_folder.glob(f"*/{name}")):
            if path.is_file() and not path.is_symlink():
                with open(path, "rb") as stream:
                    stream.seek(max(0, path.stat().st_size - _LOG_TAIL))
                    tails[path.relative_to(job_folder).as_posix()] = stream.read().decode(
                        "utf-8", "replace"
                    )
    return tails


def _stem(source: Path) -> str:
    name = source.name
    for suffix in (*_TAR_SUFFIXES, ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
