"""The run package: the zip sent to an NSG BluePyOpt job or run on this machine.

Layout (docs/optimisation-folder.md section 2)::

    <run_name>/init.py                 generated launcher: python3 init.py
    <run_name>/opt_neuron.py           and every other top-level .py
    <run_name>/config/                 parameters.json replaced when new bounds are given
    <run_name>/model/ morphology/ mechanisms/
    <run_name>/checkpoints/ figures/   empty; the run writes into them (a continued run:
                                       checkpoints/checkpoint.pkl, the one it resumes from)
    <run_name>/rebuild_manifest.json   where it came from, run settings, fixes applied

Old checkpoints, figures, r_* traces, tools/, compiled mechanisms and caches stay behind.
The zip is byte-for-byte deterministic: the same inputs give the same bytes (sorted
entries, fixed timestamps and permissions, fixed compression level, no extra fields), so a
package's hash identifies its content.
"""

import hashlib
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .continuation import ContinuedFrom, generations_problem
from .errors import BpoError
from .fixes import AppliedFix, fix_bytes
from .layout import (
    CHECKPOINTS_DIR,
    CONFIG_DIR,
    CONFIG_FILES,
    ENTRY_SCRIPT,
    FIGURES_DIR,
    INIT_SCRIPT,
    MECHANISMS_DIR,
    MODEL_DIR,
    MORPHOLOGY_DIR,
    is_never_copied,
)
from .naming import folder_name_problem
from .numeric import parse_whole_number
from .optimisation import Optimisation, load_optimisation
from .parameters import bounds_changes, parameter_problems

DEFAULT_OFFSPRING_SIZE = 10  # the use case's defaults
DEFAULT_MAX_NGEN = 2
MIN_RUN_SETTING = 1
MAX_OFFSPRING_SIZE = 1000
MAX_NGEN = 1000
# opt_neuron.py writes a checkpoint only from the second generation on.
SMALLEST_USEFUL_MAX_NGEN = 2

MANIFEST_NAME = "rebuild_manifest.json"
MANIFEST_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pkl"
CHECKPOINT_ARGUMENT = f"./{CHECKPOINTS_DIR}/{CHECKPOINT_NAME}"
# The variable opt_neuron.py reads its random seed from (HBP models and the demo alike).
SEED_VARIABLE = "BLUEPYOPT_SEED"
MAX_SEED = 2**32 - 1  # numpy.random.seed takes 32-bit seeds

PACKAGED_DIRS = (CONFIG_DIR, MODEL_DIR, MORPHOLOGY_DIR, MECHANISMS_DIR)
EMPTY_RUN_DIRS = (CHECKPOINTS_DIR, FIGURES_DIR)

# The earliest date a zip can hold; any fixed date would do.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_COMPRESSION_LEVEL = 9
_FILE_ATTRIBUTES = (stat.S_IFREG | 0o644) << 16
_DIRECTORY_ATTRIBUTES = (stat.S_IFDIR | 0o755) << 16 | 0x10  # 0x10: MS-DOS directory flag
_UNIX = 3  # ZipInfo.create_system; the default depends on the building machine
# Packages are a few megabytes; larger ones spill to disk while being built.
_IN_MEMORY_BYTES = 32 * 1024 * 1024


class InvalidPackageRequest(BpoError):
    """The run settings, run name or replacement parameters were refused."""

    summary = "The run package cannot be built"


@dataclass(frozen=True)
class PackageResult:
    """What was written: the zip's size and SHA-256, its entries, fixes and warnings."""

    run_name: str
    size: int
    sha256: str
    entries: tuple[str, ...]
    fixes: tuple[AppliedFix, ...]
    warnings: tuple[str, ...]
    manifest: dict[str, Any] = field(repr=False)


def run_settings_errors(*, offspring_size: object, max_ngen: object) -> dict[str, str]:
    """Messages keyed by field ("offspring_size", "max_ngen"); empty when both are acceptable."""
    errors = {}
    for field_name, raw, label, highest in (
        ("offspring_size", offspring_size, "The offspring size", MAX_OFFSPRING_SIZE),
        ("max_ngen", max_ngen, "The number of generations", MAX_NGEN),
    ):
        try:
            value = parse_whole_number(raw)
        except ValueError:
            value = None
        if value is None or not MIN_RUN_SETTING <= value <= highest:
            errors[field_name] = (
                f"{label} must be a whole number from {MIN_RUN_SETTING} to {highest}."
            )
    return errors


def max_ngen_warning(max_ngen: int) -> str | None:
    """The warning for a run too short to leave a checkpoint, or None."""
    if max_ngen < SMALLEST_USEFUL_MAX_NGEN:
        return (
            f"With fewer than {SMALLEST_USEFUL_MAX_NGEN} generations the optimisation writes "
            "no checkpoint, so the run leaves no result to analyse."
        )
    return None


def optimisation_arguments(
    *, offspring_size: int, max_ngen: int, resume_flag: str | None = None
) -> list[str]:
    """The arguments after ``python3`` that start the optimisation, or continue it from
    ``./checkpoints/checkpoint.pkl`` with the model's own ``resume_flag``."""
    return [
        ENTRY_SCRIPT,
        f"--max_ngen={max_ngen}",
        f"--offspring_size={offspring_size}",
        resume_flag or "--start",
        "--checkpoint",
        CHECKPOINT_ARGUMENT,
    ]


def init_script(
    *,
    offspring_size: int,
    max_ngen: int,
    seed: int | None = None,
    resume_flag: str | None = None,
) -> str:
    """The text of the generated ``init.py`` (also shown in the source-code panel).

    ``seed`` is written into it: a job's copy of the package carries its seed this way,
    because NSG passes no environment variables to the job. ``resume_flag``: the package
    continues the checkpoint it carries (see ``optimisation_arguments``).
    """
    arguments = "\n".join(
        f'    "{argument}",'
        for argument in optimisation_arguments(
            offspring_size=offspring_size, max_ngen=max_ngen, resume_flag=resume_flag
        )
    )
    folders = ", ".join(f'"{folder}"' for folder in EMPTY_RUN_DIRS)
    return f'''"""Start this folder's BluePyOpt optimisation (generated; see {MANIFEST_NAME}).

NSG runs it as `python3 {INIT_SCRIPT}` after compiling the mechanisms; a local run does the same.
"""

import os
import random
import subprocess
import sys

COMMAND = [
{arguments}
]
# The optimisation's random seed, read by opt_neuron.py from {SEED_VARIABLE}: the job's own
# seed when set here, else the environment's, else a fresh one; STDOUT says which.
SEED = {seed!r}

if SEED is not None:
    os.environ["{SEED_VARIABLE}"] = str(SEED)
elif not os.environ.get("{SEED_VARIABLE}"):
    os.environ["{SEED_VARIABLE}"] = str(random.SystemRandom().randint(1, {MAX_SEED}))
print("{SEED_VARIABLE}=" + os.environ["{SEED_VARIABLE}"], flush=True)
os.chdir(os.path.dirname(os.path.abspath(__file__)))
# Some unzip tools drop empty folders; the optimisation writes into these.
for folder in ({folders}):
    if not os.path.isdir(folder):
        os.makedirs(folder)
sys.exit(subprocess.call([sys.executable] + COMMAND))
'''


def build_package(
    root: Path,
    *,
    run_name: str,
    offspring_size: int,
    max_ngen: int,
    parameters: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | BinaryIO,
    source_name: str | None = None,
    continued_from: ContinuedFrom | None = None,
) -> PackageResult:
    """Write the run package of the optimisation in ``root`` to ``out`` (a path or binary file).

    ``parameters`` replaces config/parameters.json (a whole document, ``{key: {...}}``).
    ``source_name`` names the source model in the manifest (default: the folder's name).
    ``continued_from``: the package continues that checkpoint (carried as
    checkpoints/checkpoint.pkl) with the model's resume flag, up to generation ``max_ngen``;
    ``offspring_size`` must be the checkpoint's.
    Raises ``InvalidPackageRequest`` for bad settings or parameters and
    ``InvalidOptimisation`` when ``root`` is not a valid optimisation. Known legacy fixes are
    applied to the packaged copy only; ``root`` is never changed. Writing to a path replaces
    the file atomically.
    """
    offspring_size, max_ngen = _checked_settings(run_name, offspring_size, max_ngen)
    if continued_from is not None:
        _check_continuation(continued_from, offspring_size=offspring_size, max_ngen=max_ngen)
    optimisation = load_optimisation(Path(root), name=source_name)
    if parameters is not None:
        problems = _replacement_problems(parameters, optimisation.key)
        if problems:
            raise InvalidPackageRequest(problems)

    files, fixes = _packaged_files(optimisation.root)
    if parameters is not None:
        # Key order is kept (not sorted): the evaluator numbers its parameters in this order.
        text = json.dumps(parameters, indent=4, allow_nan=False) + "\n"
        files[f"{CONFIG_DIR}/{CONFIG_FILES['parameters']}"] = text.encode("utf-8")
    resume = continued_from.resume_flag if continued_from is not None else None
    if continued_from is not None:
        files[f"{CHECKPOINTS_DIR}/{CHECKPOINT_NAME}"] = continued_from.checkpoint.read_bytes()
    files[INIT_SCRIPT] = init_script(
        offspring_size=offspring_size, max_ngen=max_ngen, resume_flag=resume
    ).encode()
    warning = max_ngen_warning(max_ngen) if continued_from is None else None
    warnings = (warning,) if warning else ()
    manifest = _manifest(
        optimisation,
        run_name=run_name,
        offspring_size=offspring_size,
        max_ngen=max_ngen,
        parameters=parameters,
        fixes=fixes,
        warnings=warnings,
        continued_from=continued_from,
    )
    files[MANIFEST_NAME] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()

    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES) as spool:
        entries = _write_zip(spool, run_name, files)
        spool.seek(0)
        size, sha256 = _deliver(spool, out)
    return PackageResult(
        run_name=run_name,
        size=size,
        sha256=sha256,
        entries=tuple(entries),
        fixes=tuple(fixes),
        warnings=warnings,
        manifest=manifest,
    )


def seed_package(source: BinaryIO, out: BinaryIO, *, seed: int) -> bool:
    """Copy the package zip ``source`` to ``out`` with ``seed`` written into its init.py.

    The job's copy of a package: its init.py is generated again from the run settings of
    the package's own manifest, with the seed in it, and the manifest records the seed;
    every other entry is copied as it is, so the copy runs on NSG as the package does.
    Returns False (and copies the zip unchanged) for a package without a manifest of ours
    (its init.py is not ours to rewrite). Raises InvalidPackageRequest for a bad seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidPackageRequest([f"The seed must be a whole number from 0 to {MAX_SEED}."])
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
        manifests = [
            info
            for info in infos
            if info.filename.count("/") == 1 and info.filename.endswith(f"/{MANIFEST_NAME}")
        ]
        manifest = json.loads(archive.read(manifests[0])) if len(manifests) == 1 else None
        run = manifest.get("run") if isinstance(manifest, dict) else None
        if not isinstance(run, dict) or not {"offspring_size", "max_ngen"} <= set(run):
            source.seek(0)
            _copy_hashing(source, out)
            return False
        top = manifests[0].filename.split("/", 1)[0]
        replaced = {
            f"{top}/{INIT_SCRIPT}": init_script(
                offspring_size=int(run["offspring_size"]),
                max_ngen=int(run["max_ngen"]),
                seed=seed,
                resume_flag=run.get("resume_flag") or None,
            ).encode(),
            manifests[0].filename: (
                json.dumps({**manifest, "run": {**run, "seed": seed}}, indent=2, sort_keys=True)
                + "\n"
            ).encode(),
        }
        with zipfile.ZipFile(out, "w") as copy:
            for info in infos:
                data = replaced.get(info.filename)
                if data is None:
                    data = archive.read(info)
                copy.writestr(info, data, compresslevel=_COMPRESSION_LEVEL)
    return True


def _checked_settings(run_name: str, offspring_size: object, max_ngen: object) -> tuple[int, int]:
    problems = list(run_settings_errors(offspring_size=offspring_size, max_ngen=max_ngen).values())
    name_problem = folder_name_problem(run_name)
    if name_problem:
        problems.append(name_problem)
    if problems:
        raise InvalidPackageRequest(problems)
    return parse_whole_number(offspring_size), parse_whole_number(max_ngen)


def _check_continuation(
    continued_from: ContinuedFrom, *, offspring_size: int, max_ngen: int
) -> None:
    problems = []
    if offspring_size != continued_from.offspring_size:
        problems.append(
            f"A continued run keeps the checkpoint's offspring size, "
            f"{continued_from.offspring_size}, not {offspring_size}."
        )
    problem = generations_problem(max_ngen, continued_from.generation)
    if problem:
        problems.append(problem)
    if problems:
        raise InvalidPackageRequest(problems)


def _replacement_problems(parameters: Mapping[str, Any], key: str) -> list[str]:
    if not isinstance(parameters, Mapping) or list(parameters) != [key]:
        return [f"The new parameters must be a parameters.json document whose one key is '{key}'."]
    return parameter_problems(parameters[key])


def _manifest(
    optimisation: Optimisation,
    *,
    run_name: str,
    offspring_size: int,
    max_ngen: int,
    parameters: Mapping[str, Any] | None,
    fixes: list[AppliedFix],
    warnings: tuple[str, ...],
    continued_from: ContinuedFrom | None = None,
) -> dict[str, Any]:
    """The package's own record: what it was built from, how it runs, what was changed."""
    changes = (
        bounds_changes(optimisation.parameters, parameters[optimisation.key])
        if parameters is not None
        else []
    )
    resume = continued_from.resume_flag if continued_from is not None else None
    arguments = optimisation_arguments(
        offspring_size=offspring_size, max_ngen=max_ngen, resume_flag=resume
    )
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "source": {"name": optimisation.name, "key": optimisation.key},
        "run": {
            "name": run_name,
            "offspring_size": offspring_size,
            "max_ngen": max_ngen,
            "entry": INIT_SCRIPT,
            "command": " ".join(["python3", *arguments]),
        },
        "parameters": {
            "replaced": parameters is not None,
            "changed_bounds": [
                {
                    "section": change.section,
                    "name": change.name,
                    "lower": change.lower,
                    "upper": change.upper,
                    "original_lower": change.old_lower,
                    "original_upper": change.old_upper,
                }
                for change in changes
            ],
        },
        "fixes": [fix.as_dict() for fix in fixes],
        "warnings": list(warnings),
    }
    if continued_from is not None:
        manifest["run"]["resume_flag"] = resume
        manifest["continued_from"] = continued_from.as_dict()
    return manifest


def _packaged_files(root: Path) -> tuple[dict[str, bytes], list[AppliedFix]]:
    """The files that travel, by path relative to ``root``, with known fixes applied."""
    paths = [
        path
        for path in sorted(root.glob("*.py"))
        if path.name != INIT_SCRIPT and path.is_file() and not is_never_copied(path)
    ]
    for folder in PACKAGED_DIRS:
        paths += _files_under(root / folder)
    files: dict[str, bytes] = {}
    applied: list[AppliedFix] = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        files[relative], changes = fix_bytes(relative, path.read_bytes())
        applied += changes
    return files, applied


def _files_under(folder: Path) -> list[Path]:
    found = []
    for directory, subdirectories, names in os.walk(folder):
        here = Path(directory)
        subdirectories[:] = sorted(
            name for name in subdirectories if not is_never_copied(here / name)
        )
        found += [
            here / name
            for name in sorted(names)
            if (here / name).is_file() and not is_never_copied(here / name)
        ]
    return found


def _write_zip(target: BinaryIO, run_name: str, files: Mapping[str, bytes]) -> list[str]:
    directories = {run_name + "/"}
    directories |= {f"{run_name}/{folder}/" for folder in (*PACKAGED_DIRS, *EMPTY_RUN_DIRS)}
    for relative in files:
        parts = relative.split("/")[:-1]
        directories |= {
            f"{run_name}/{'/'.join(parts[:depth])}/" for depth in range(1, len(parts) + 1)
        }
    contents = {f"{run_name}/{relative}": data for relative, data in files.items()}
    names = sorted(directories | set(contents))
    with zipfile.ZipFile(target, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
            info.create_system = _UNIX
            if name in directories:
                info.external_attr = _DIRECTORY_ATTRIBUTES
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, b"")
            else:
                info.external_attr = _FILE_ATTRIBUTES
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, contents[name], compresslevel=_COMPRESSION_LEVEL)
    return names


def _deliver(source: BinaryIO, out: str | os.PathLike[str] | BinaryIO) -> tuple[int, str]:
    """Copy the built zip to ``out``; returns its size and SHA-256."""
    if not isinstance(out, str | os.PathLike):
        return _copy_hashing(source, out)
    path = Path(out)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".partial", dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as output:
            result = _copy_hashing(source, output)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return result


def _copy_hashing(source: BinaryIO, output: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
        output.write(chunk)
    return size, digest.hexdigest()
