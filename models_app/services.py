"""Catalogue flows: import an optimisation, save parameter versions, build run packages.

The upload page, "Refresh from repository", `manage.py import_model`, the demo model and
`manage.py build_package` all come through these functions.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from models_app import repository
from models_app.bpo.archive import ArchiveError, extract_zip
from models_app.bpo.checkpoints import best_checkpoint, survey_checkpoints
from models_app.bpo.continuation import (
    CannotContinue,
    ContinuedFrom,
    continued_from,
    no_resume_message,
    resume_flag,
)
from models_app.bpo.errors import BpoError
from models_app.bpo.layout import (
    CHECKPOINTS_DIR,
    COMPILED_DIR_NAMES,
    MECHANISMS_DIR,
    is_archiver_litter,
)
from models_app.bpo.mechanisms import (
    COMPILE_TIMEOUT_SECONDS,
    MechanismCompileError,
    compile_error_lines,
    compile_mechanisms,
)
from models_app.bpo.metadata import (
    CatalogueMetadata,
    InvalidMetadata,
    metadata_file_name,
    parse_metadata,
)
from models_app.bpo.naming import new_run_name, parse_name
from models_app.bpo.optimisation import find_root, load_optimisation
from models_app.bpo.package import PackageResult, build_package
from models_app.bpo.parameters import apply_bounds, bounds_changes
from models_app.bpo.sandbox import Sandbox
from models_app.models import Optimisation, ParameterSet, RunPackage
from rebuild_site.deletion import DeleteRefused

logger = logging.getLogger(__name__)

CATALOGUE_PREFIX = "catalogue"
PACKAGES_PREFIX = "packages"
_SKIPPED_NAMES = COMPILED_DIR_NAMES | {"__pycache__", ".ipython", ".git", ".ipynb_checkpoints"}


class ImportFailed(Exception):
    """An optimisation was refused; `problems` lists every reason, nothing was stored."""

    def __init__(
        self, problems: Iterable[str], *, summary: str = "The optimisation was not imported"
    ) -> None:
        self.problems = list(problems)
        self.summary = summary
        super().__init__(summary + ": " + "; ".join(self.problems))


@dataclass(frozen=True)
class ImportOutcome:
    optimisation: Optimisation
    created: bool
    changed: bool


# ----------------------------------------------------------------------------- import


def optimisation_import(
    *,
    source: str | Path | BinaryIO,
    kind: str,
    owner=None,
    published: bool = False,
    meta: dict | bytes | None = None,
    replace: bool = False,
    source_url: str = "",
) -> ImportOutcome:
    """Import an optimisation from a URL, a zip (path or file object) or a folder.

    `owner` None makes a shared catalogue model (staff imports, the repository, the demo);
    a user's upload stays private to them until staff publish it. With `replace`, a shared
    model of the same name is updated when its files changed (repository refresh).
    Raises ImportFailed with every problem found; on failure nothing is stored.
    """
    with _unpacked(source) as (root, meta_beside, origin):
        if meta is None and meta_beside is not None:
            meta = meta_beside
        try:
            loaded = load_optimisation(
                root, name=_folder_name(root, origin), with_neuron=True, sandbox=_sandbox()
            )
        except BpoError as error:
            raise ImportFailed(error.problems) from None
        metadata = _metadata(meta)
        with tempfile.TemporaryDirectory(prefix="catalogue-zip-") as scratch:
            archive_path = Path(scratch) / f"{loaded.name}.zip"
            digest = _zip_folder(root, loaded.name, archive_path)
            return _store(
                loaded=loaded,
                metadata=metadata,
                archive=archive_path,
                digest=digest,
                kind=kind,
                owner=owner,
                published=published,
                replace=replace,
                source_url=source_url or (origin if _is_url(origin) else ""),
            )


def _is_url(value: str) -> bool:
    return urlparse(value).scheme in ("http", "https", "file")


@contextmanager
def _unpacked(source) -> Iterator[tuple[Path, bytes | None, str]]:
    """The optimisation's folder, its `_meta.json` bytes when found beside it, and its origin."""
    work = Path(tempfile.mkdtemp(prefix="import-"))
    try:
        meta_bytes = None
        if isinstance(source, str) and _is_url(source):
            zip_path = work / "download.zip"
            with open(zip_path, "wb") as handle:
                try:
                    repository.download(source, handle, max_bytes=settings.UPLOAD_MAX_BYTES)
                except repository.RepositoryError as error:
                    raise ImportFailed([str(error)]) from None
            meta_bytes = _meta_beside_url(source)
            yield _extracted(zip_path, work), meta_bytes, source
            return
        if isinstance(source, str | Path):
            path = Path(source)
            if path.is_dir():
                meta_file = path.parent / metadata_file_name(path.name)
                meta_bytes = meta_file.read_bytes() if meta_file.is_file() else None
                yield path.resolve(), meta_bytes, str(path)
                return
            if not path.is_file():
                raise ImportFailed([f"{source} is neither a folder, a zip file nor a URL"])
            meta_file = path.with_name(metadata_file_name(path.stem))
            meta_bytes = meta_file.read_bytes() if meta_file.is_file() else None
            yield _extracted(path, work), meta_bytes, str(path)
            return
        yield _extracted(source, work), None, getattr(source, "name", "upload.zip") or "upload.zip"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _meta_beside_url(url: str) -> bytes | None:
    if not url.endswith(".zip"):
        return None
    meta_url = url[: -len(".zip")] + "_meta.json"
    buffer = io.BytesIO()
    try:
        repository.download(meta_url, buffer, max_bytes=1024 * 1024)
    except repository.RepositoryError:
        return None  # the metadata is optional: the name and configs say enough
    return buffer.getvalue()


def _extracted(zip_source, work: Path) -> Path:
    try:
        extracted = extract_zip(zip_source, work / "unpacked")
    except ArchiveError as error:
        raise ImportFailed(error.problems, summary="The zip file was refused") from None
    try:
        return find_root(extracted.path)
    except BpoError as error:
        raise ImportFailed(error.problems) from None


def _folder_name(root: Path, origin: str) -> str:
    """A folder extracted from a zip that held the files at its top is named after the zip."""
    if root.name != "unpacked":
        return root.name
    stem = Path(urlparse(origin).path if _is_url(origin) else origin).name
    return stem[: -len(".zip")] if stem.endswith(".zip") else stem


def _metadata(meta) -> CatalogueMetadata | None:
    if meta is None:
        return None
    try:
        return parse_metadata(meta)
    except InvalidMetadata as error:
        raise ImportFailed(error.problems, summary="The catalogue metadata was refused") from None


def _zip_folder(root: Path, name: str, target: Path) -> str:
    """The folder as stored in the catalogue: one top folder, compiled files left out.

    Entries are sorted and dated 1980-01-01, so the same files give the same bytes and the
    SHA-256 tells whether a repository model changed since the last refresh.
    """
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part in _SKIPPED_NAMES or is_archiver_litter(part) for part in relative.parts):
                continue
            if path.is_symlink() or not path.is_file():
                continue
            entry = zipfile.ZipInfo(
                f"{name}/{relative.as_posix()}", date_time=(1980, 1, 1, 0, 0, 0)
            )
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as source, archive.open(entry, "w") as member:
                shutil.copyfileobj(source, member, 1024 * 1024)
    digest = hashlib.sha256()
    with open(target, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _descriptive_fields(loaded, metadata: CatalogueMetadata | None) -> dict:
    parsed = parse_name(loaded.name)
    fields = {
        "region": parsed.region or "",
        "cell_type": parsed.cell_type or "",
        "etype": parsed.e_type or "",
        "morphology": parsed.morphology or Path(loaded.morphology).stem,
        "species": "",
        "contributors": "",
        "description": "",
    }
    if metadata is not None:
        fields.update(
            {
                key: value
                for key, value in {
                    "region": metadata.cell_soma_location,
                    "cell_type": metadata.cell_type,
                    "etype": metadata.e_type,
                    "morphology": metadata.morphology,
                    "species": metadata.species,
                    "contributors": metadata.contributors,
                    "description": metadata.description,
                }.items()
                if value
            }
        )
    return fields


def _checkpoints(root: Path, metadata: CatalogueMetadata | None) -> tuple[list[dict], str]:
    """The folder's checkpoints with seed and stored fitness (read in a process of their
    own), and the best: the metadata's best_run, else the best stored fitness."""
    summaries = survey_checkpoints(root, sandbox=_sandbox())
    best = best_checkpoint(summaries, preferred=metadata.best_run if metadata else None)
    return [summary.as_dict() for summary in summaries], best or ""


def _meta_document(metadata: CatalogueMetadata | None) -> dict:
    if metadata is None:
        return {}
    document = {key: value for key, value in vars(metadata).items() if key != "extra"}
    document["channels"] = list(metadata.channels)
    document.update(metadata.extra)
    return document


def _store(
    *, loaded, metadata, archive: Path, digest: str, kind, owner, published, replace, source_url
) -> ImportOutcome:
    existing = Optimisation.objects.filter(name=loaded.name, owner=owner).first()
    if existing is not None and not replace:
        whose = "your catalogue" if owner is not None else "the catalogue"
        raise ImportFailed([f"A model named {loaded.name} is already in {whose}."])
    if existing is not None and existing.archive_sha256 == digest:
        return ImportOutcome(existing, created=False, changed=False)

    checkpoints, best = _checkpoints(loaded.root, metadata)
    storage_name = f"{CATALOGUE_PREFIX}/{digest[:16]}/{loaded.name}.zip"
    with open(archive, "rb") as handle:
        stored_name = default_storage.save(storage_name, File(handle))
    fields = dict(
        key=loaded.key,
        source=kind,
        source_url=source_url,
        published=published,
        meta=_meta_document(metadata),
        features=loaded.features,
        parameters=loaded.parameters,
        protocols=loaded.protocols,
        morphology_file=loaded.morphology,
        archive=stored_name,
        archive_sha256=digest,
        best_checkpoint=best,
        checkpoints=checkpoints,
        mechanisms_status=Optimisation.Mechanisms.PENDING,
        mechanisms_errors="",
        mechanisms_status_at=timezone.now(),
        **_descriptive_fields(loaded, metadata),
    )
    try:
        with transaction.atomic():
            if existing is None:
                optimisation = Optimisation.objects.create(name=loaded.name, owner=owner, **fields)
                old_archive = None
            else:
                old_archive = existing.archive
                for field, value in fields.items():
                    setattr(existing, field, value)
                existing.save()
                optimisation = existing
    except IntegrityError:
        default_storage.delete(stored_name)
        raise ImportFailed([f"A model named {loaded.name} is already in the catalogue."]) from None
    except BaseException:
        default_storage.delete(stored_name)
        raise
    if old_archive and old_archive != stored_name:
        transaction.on_commit(lambda: default_storage.delete(old_archive))
    _queue_compile(optimisation.pk)
    return ImportOutcome(optimisation, created=existing is None, changed=True)


# ----------------------------------------------------------------------------- mechanisms


def _queue_compile(optimisation_id: int) -> None:
    from models_app.tasks import compile_model_mechanisms

    def send() -> None:
        try:
            compile_model_mechanisms.apply_async((optimisation_id,), retry=False)
        except Exception:
            # No broker (an import from the shell with Redis down): the model stays
            # pending and beat's sweep queues its compile once the broker is back.
            logger.warning("could not queue the mechanisms' compile of model %s", optimisation_id)

    transaction.on_commit(send)


def mechanisms_compile(*, optimisation_id: int) -> str:
    """Compile a catalogue model's mechanisms (through the cache) and record the outcome.

    The row is claimed by a conditional update, so a message delivered twice compiles once;
    the outcome is recorded only if the model's files did not change meanwhile.
    """
    Mechanisms = Optimisation.Mechanisms
    claimed = Optimisation.objects.filter(
        pk=optimisation_id, mechanisms_status=Mechanisms.PENDING
    ).update(mechanisms_status=Mechanisms.COMPILING, mechanisms_status_at=timezone.now())
    if not claimed:
        return "not pending"
    optimisation = Optimisation.objects.get(pk=optimisation_id)
    outcome = {"mechanisms_status": Mechanisms.COMPILED, "mechanisms_errors": ""}
    with optimisation_folder(optimisation) as root:
        try:
            compile_mechanisms(
                root / MECHANISMS_DIR, cache_dir=settings.MECHANISMS_CACHE_DIR, sandbox=_sandbox()
            )
        except MechanismCompileError as error:
            lines = compile_error_lines(error.log) or error.problems
            outcome = {
                "mechanisms_status": Mechanisms.FAILED,
                "mechanisms_errors": "\n".join(lines),
            }
    Optimisation.objects.filter(
        pk=optimisation_id,
        mechanisms_status=Mechanisms.COMPILING,
        archive_sha256=optimisation.archive_sha256,
    ).update(mechanisms_status_at=timezone.now(), **outcome)
    return outcome["mechanisms_status"]


def mechanisms_requeue_stale(*, now: datetime | None = None) -> list[int]:
    """Queue again the compiles whose message was lost or whose worker died; their ids.

    A model still waiting after MECHANISMS_REQUEUE_SECONDS, or compiling for longer than
    nrnivmodl may take, goes back to waiting and gets a new task.
    """
    Mechanisms = Optimisation.Mechanisms
    now = now or timezone.now()
    waiting_since = now - timedelta(seconds=settings.MECHANISMS_REQUEUE_SECONDS)
    compiling_since = now - timedelta(
        seconds=COMPILE_TIMEOUT_SECONDS + settings.MECHANISMS_REQUEUE_SECONDS
    )
    Optimisation.objects.filter(
        mechanisms_status=Mechanisms.COMPILING, mechanisms_status_at__lt=compiling_since
    ).update(mechanisms_status=Mechanisms.PENDING, mechanisms_status_at=waiting_since)
    stale = list(
        Optimisation.objects.filter(
            mechanisms_status=Mechanisms.PENDING, mechanisms_status_at__lte=waiting_since
        ).values_list("pk", flat=True)
    )
    # Restart the wait, so the next sweep does not queue the same model again at once.
    Optimisation.objects.filter(pk__in=stale, mechanisms_status=Mechanisms.PENDING).update(
        mechanisms_status_at=now
    )
    for optimisation_id in stale:
        _queue_compile(optimisation_id)
    return stale


# ----------------------------------------------------------------------------- files


@contextmanager
def optimisation_folder(optimisation: Optimisation) -> Iterator[Path]:
    """The optimisation's original files, unpacked from storage into a temporary folder."""
    with _stored_zip_folder(optimisation.archive) as root:
        yield root


@contextmanager
def package_folder(package: RunPackage) -> Iterator[Path]:
    """A run package's files as built (init.py, configs with the user's bounds, fixes)."""
    with _stored_zip_folder(package.file) as root:
        yield root


@contextmanager
def _stored_zip_folder(name: str) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="catalogue-"))
    try:
        with default_storage.open(name, "rb") as handle:
            extracted = extract_zip(handle, work / "unpacked")
        yield find_root(extracted.path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- parameters


class NothingChanged(Exception):
    """The submitted bounds are those of the version they were edited from."""

    def __init__(self, base_label: str) -> None:
        super().__init__(base_label)
        self.base_label = base_label


def parameter_set_save(
    *, optimisation: Optimisation, owner, bounds, base: ParameterSet | None = None
) -> ParameterSet:
    """A new version of the parameters with `bounds` [(section, name, lower, upper)].

    Raises bpo.parameters.InvalidBounds (with `.errors` keyed by field) when refused.
    """
    start = base.parameters if base is not None else optimisation.parameters_document()
    updated = apply_bounds(start, optimisation.key, bounds)
    if not bounds_changes(start[optimisation.key], updated[optimisation.key]):
        raise NothingChanged(
            f"version {base.version}" if base is not None else "the original parameters"
        )
    changes = [
        [c.section, c.name, c.old_lower, c.old_upper, c.lower, c.upper]
        for c in bounds_changes(optimisation.parameters, updated[optimisation.key])
    ]
    with transaction.atomic():
        latest = (
            ParameterSet.objects.select_for_update()
            .filter(optimisation=optimisation, owner=owner)
            .aggregate(Max("version"))["version__max"]
        )
        return ParameterSet.objects.create(
            optimisation=optimisation,
            owner=owner,
            version=(latest or 0) + 1,
            parameters=updated,
            changes=changes,
        )


# ----------------------------------------------------------------------------- packages


def _package_store(owner, run_name: str, zip_path: Path, sha256: str) -> str:
    """Store a built package's zip under the owner's packages, named by its content."""
    storage_name = f"{PACKAGES_PREFIX}/{owner.get_username()}/{sha256[:12]}/{run_name}.zip"
    with open(zip_path, "rb") as handle:
        return default_storage.save(storage_name, File(handle))


def package_create(
    *,
    optimisation: Optimisation,
    owner,
    offspring_size: int,
    max_ngen: int,
    parameter_set: ParameterSet | None = None,
    now: datetime | None = None,
) -> RunPackage:
    """Build the run package zip (docs §2), store it and record it for `owner`.

    Raises bpo.package.InvalidPackageRequest for refused settings.
    """
    now = timezone.localtime(now or timezone.now())
    run_name = new_run_name(optimisation.name, now)
    parameters = parameter_set.parameters if parameter_set is not None else None
    with optimisation_folder(optimisation) as root, tempfile.TemporaryDirectory() as out_dir:
        zip_path = Path(out_dir) / f"{run_name}.zip"
        result = build_package(
            root,
            run_name=run_name,
            offspring_size=offspring_size,
            max_ngen=max_ngen,
            parameters=parameters,
            out=zip_path,
            source_name=optimisation.name,
        )
        stored = _package_store(owner, run_name, zip_path, result.sha256)
    try:
        return RunPackage.objects.create(
            optimisation=optimisation,
            owner=owner,
            parameter_set=parameter_set,
            run_name=run_name,
            offspring_size=offspring_size,
            max_ngen=max_ngen,
            file=stored,
            size=result.size,
            sha256=result.sha256,
            fixes=[fix.as_dict() for fix in result.fixes],
        )
    except BaseException:
        default_storage.delete(stored)
        raise


def package_write(
    *,
    optimisation: Optimisation,
    offspring_size: int,
    max_ngen: int,
    parameter_set: ParameterSet | None,
    out: str | os.PathLike,
    now: datetime | None = None,
):
    """Build a run package straight to a file (manage.py build_package); nothing is stored."""
    now = timezone.localtime(now or timezone.now())
    with optimisation_folder(optimisation) as root:
        return build_package(
            root,
            run_name=new_run_name(optimisation.name, now),
            offspring_size=offspring_size,
            max_ngen=max_ngen,
            parameters=parameter_set.parameters if parameter_set else None,
            out=out,
            source_name=optimisation.name,
        )


# ----------------------------------------------------------------------------- continue


@contextmanager
def continuation_open(
    *,
    optimisation: Optimisation,
    source: Path,
    source_label: str,
    checkpoint_name: str | None = None,
) -> Iterator[tuple[Path, ContinuedFrom]]:
    """The run folder of a result of ``optimisation`` and the checkpoint to continue.

    ``source`` is anything ``manage.py analyse`` reads (an output.tar.gz, a results zip, a
    run folder, a catalogue model's folder); it is unpacked and its checkpoint chosen by the
    analysis engine's own ``prepare_run`` (``checkpoint_name``, else the catalogue's best
    run, else the only one, else the best stored fitness). The checkpoint's generation and
    parents are read by the sandboxed survey. Raises CannotContinue, saying why.
    """
    from analysis_app.engine import AnalysisError
    from analysis_app.engine.analysis import unpack_limits
    from analysis_app.engine.sources import prepare_run

    # Under ANALYSIS_WORK_DIR, like an analysis: a result may unpack to gigabytes.
    settings.ANALYSIS_WORK_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="continue-", dir=settings.ANALYSIS_WORK_DIR) as work:
        try:
            prepared = prepare_run(
                Path(source),
                Path(work),
                checkpoint_name=checkpoint_name,
                limits=unpack_limits(settings.ANALYSIS_UNPACKED_MAX_BYTES),
            )
        except AnalysisError as error:
            raise CannotContinue([error.message, *error.details.get("problems", [])]) from None
        run_folder = prepared.run_folder
        if prepared.optimisation.key != optimisation.key:
            raise CannotContinue(
                [
                    f"{source_label} is a run of the optimisation '{prepared.optimisation.key}', "
                    f"not of {optimisation.name} ('{optimisation.key}')."
                ]
            )
        # Said before the checkpoints are read: the script alone decides this.
        if resume_flag(run_folder) is None:
            raise CannotContinue([no_resume_message(optimisation.name)])
        summaries = {
            summary.name: summary for summary in survey_checkpoints(run_folder, sandbox=_sandbox())
        }
        checkpoint = prepared.checkpoint
        if checkpoint is None:
            name = best_checkpoint(
                summaries.values(), preferred=optimisation.best_checkpoint or None
            )
            checkpoint = run_folder / CHECKPOINTS_DIR / name
        yield (
            run_folder,
            continued_from(
                run_folder,
                checkpoint,
                summaries[checkpoint.name],
                source=source_label,
                model_name=optimisation.name,
            ),
        )


@contextmanager
def continuation_source(*, optimisation: Optimisation, job=None) -> Iterator[tuple[Path, str]]:
    """What "Continue" reads: a job's stored output.tar.gz, or the catalogue model itself
    (its own published checkpoints); and how to name it."""
    if job is None:
        with optimisation_folder(optimisation) as root:
            yield root, f"the published run of {optimisation.name}"
        return
    from analysis_app.services import result_source

    with tempfile.TemporaryDirectory(prefix="continue-source-") as folder:
        try:
            source = result_source(reference=f"job:{job.pk}", folder=Path(folder))
        except OSError as error:
            raise CannotContinue(
                [f"The stored output.tar.gz of {job.folder} cannot be read from storage: {error}"]
            ) from None
        if source is None:
            raise CannotContinue(
                [f"{job.folder} has no stored output.tar.gz: copy its results to storage first."]
            )
        yield source, job.folder


def continuation_read(*, optimisation: Optimisation, job=None) -> ContinuedFrom:
    """The checkpoint "Continue" would resume from (generation, offspring size, flag)."""
    with (
        continuation_source(optimisation=optimisation, job=job) as (source, label),
        continuation_open(optimisation=optimisation, source=source, source_label=label) as (
            _,
            found,
        ),
    ):
        return found


def package_continue_create(
    *,
    optimisation: Optimisation,
    owner,
    max_ngen: int,
    job=None,
    now: datetime | None = None,
) -> RunPackage:
    """Build, store and record the package that continues ``job`` (None: the catalogue
    model's own published run) up to generation ``max_ngen``.

    Raises CannotContinue, or bpo.package.InvalidPackageRequest for refused generations.
    """
    now = timezone.localtime(now or timezone.now())
    run_name = new_run_name(optimisation.name, now)
    with (
        continuation_source(optimisation=optimisation, job=job) as (source, label),
        continuation_open(optimisation=optimisation, source=source, source_label=label) as (
            run_folder,
            found,
        ),
        tempfile.TemporaryDirectory() as out_dir,
    ):
        zip_path = Path(out_dir) / f"{run_name}.zip"
        result = _continued_package(run_folder, found, run_name, max_ngen, zip_path, optimisation)
        stored = _package_store(owner, run_name, zip_path, result.sha256)
    try:
        return RunPackage.objects.create(
            optimisation=optimisation,
            owner=owner,
            run_name=run_name,
            offspring_size=found.offspring_size,
            max_ngen=max_ngen,
            file=stored,
            size=result.size,
            sha256=result.sha256,
            fixes=[fix.as_dict() for fix in result.fixes],
            continued_from={**found.as_dict(), "job": job.pk if job is not None else None},
        )
    except BaseException:
        default_storage.delete(stored)
        raise


def package_continue_write(
    *,
    optimisation: Optimisation,
    source: Path,
    source_label: str,
    max_ngen: int,
    out: str | os.PathLike,
    checkpoint_name: str | None = None,
    now: datetime | None = None,
) -> PackageResult:
    """The package continuing the result ``source`` straight to a file (manage.py
    build_package --continue); nothing is stored. Raises as ``package_continue_create``."""
    now = timezone.localtime(now or timezone.now())
    with continuation_open(
        optimisation=optimisation,
        source=source,
        source_label=source_label,
        checkpoint_name=checkpoint_name,
    ) as (run_folder, found):
        return _continued_package(
            run_folder, found, new_run_name(optimisation.name, now), max_ngen, out, optimisation
        )


def _continued_package(
    run_folder: Path,
    found: ContinuedFrom,
    run_name: str,
    max_ngen: int,
    out,
    optimisation: Optimisation,
) -> PackageResult:
    # The result's own run folder travels, not the catalogue's files: it holds the configs
    # (the user's bounds) and code the checkpoint was made with.
    return build_package(
        run_folder,
        run_name=run_name,
        offspring_size=found.offspring_size,
        max_ngen=max_ngen,
        out=out,
        source_name=optimisation.name,
        continued_from=found,
    )


# ----------------------------------------------------------------------------- repository


def repository_refresh_request(*, started_by):
    """Staff's "Refresh from repository": a refresh row, its task queued once it commits."""
    from models_app.models import RepositoryRefresh
    from models_app.tasks import refresh_repository

    refresh = RepositoryRefresh.objects.create(
        started_by=started_by, source_url=settings.MODEL_REPOSITORY_INDEX_URL
    )
    transaction.on_commit(lambda: refresh_repository.delay(refresh.pk))
    return refresh


def repository_refresh_run(refresh) -> None:
    """Import or update every optimisation the repository lists, recording progress."""
    from models_app.models import RepositoryRefresh

    refresh.status = RepositoryRefresh.Status.RUNNING
    refresh.save(update_fields=["status"])
    try:
        entries = repository.list_optimisations(
            settings.MODEL_REPOSITORY_INDEX_URL, settings.MODEL_REPOSITORY_URL
        )
    except repository.RepositoryError as error:
        refresh.status = RepositoryRefresh.Status.FAILED
        refresh.error = str(error)
        refresh.finished_at = timezone.now()
        refresh.save(update_fields=["status", "error", "finished_at"])
        return
    refresh.total = len(entries)
    refresh.save(update_fields=["total"])
    for entry in entries:
        try:
            outcome = optimisation_import(
                source=entry.zip_url,
                kind=Optimisation.Source.REPOSITORY,
                published=True,
                replace=True,
                source_url=entry.zip_url,
            )
        except ImportFailed as error:
            refresh.problems.append([entry.name, "; ".join(error.problems)])
        else:
            (refresh.imported if outcome.changed else refresh.unchanged).append(
                outcome.optimisation.name
            )
        refresh.done += 1
        refresh.save(update_fields=["done", "imported", "unchanged", "problems"])
    refresh.status = RepositoryRefresh.Status.DONE
    refresh.finished_at = timezone.now()
    refresh.save(update_fields=["status", "finished_at"])


def _sandbox() -> Sandbox:
    """Where a model's files are read or its code run: the SANDBOX setting."""
    return Sandbox.named(settings.SANDBOX)


# ----------------------------------------------------------------------------- delete


def _named(names: list[str], limit: int = 5) -> str:
    more = len(names) - limit
    names = names[:limit]
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def upload_delete_refusal(optimisation: Optimisation) -> str:
    """Why the user's upload cannot be deleted now (what still needs it), or "" when it can."""
    from analysis_app.models import Analysis
    from nsg_app.models import Job

    if optimisation.source != Optimisation.Source.UPLOAD or optimisation.owner_id is None:
        return "Only a user's own upload can be deleted; catalogue models are kept."
    if optimisation.mechanisms_status == Optimisation.Mechanisms.COMPILING:
        return "Its mechanisms are being compiled: delete it once they are done."
    jobs = list(
        Job.objects.filter(package__optimisation=optimisation)
        .order_by("pk")
        .values_list("folder", flat=True)
    )
    if jobs:
        return (
            f"{len(jobs)} job(s) were run from its run packages ({_named(jobs)}): "
            "delete them first (on their job pages), so that no run loses its package."
        )
    active = list(
        Analysis.objects.filter(
            optimisation=optimisation,
            status__in=(Analysis.Status.QUEUED, Analysis.Status.RUNNING),
        )
    )
    if active:
        return f"{len(active)} analysis(es) of it are running ({_named([str(analysis) for analysis in active])}): wait for them to end."
    others = optimisation.packages.exclude(owner_id=optimisation.owner_id).count()
    others += optimisation.parameter_sets.exclude(owner_id=optimisation.owner_id).count()
    if others:
        return (
            f"Other users have {others} run package(s) or parameter version(s) of it: "
            "ask staff to make it private and remove them first."
        )
    return ""


def upload_stored_files(optimisation: Optimisation) -> list[str]:
    """What deleting the upload removes from storage: its packages' zips, then its own zip
    (unless another model's row names the same stored zip)."""
    names = [package.file for package in optimisation.packages.order_by("pk") if package.file]
    shared = (
        Optimisation.objects.filter(archive=optimisation.archive)
        .exclude(pk=optimisation.pk)
        .exists()
    )
    if optimisation.archive and not shared:
        names.append(optimisation.archive)
    return names


def upload_delete(optimisation: Optimisation) -> int:
    """Delete a user's upload: its row (with its parameter versions and run packages) and
    then their stored zips; how many stored files were removed. Raises DeleteRefused,
    with nothing deleted, while jobs, running analyses or other users still need it."""
    with transaction.atomic():
        current = Optimisation.objects.select_for_update().filter(pk=optimisation.pk).first()
        if current is None:
            raise DeleteRefused("It was deleted already.")
        refusal = upload_delete_refusal(current)
        if refusal:
            raise DeleteRefused(refusal)
        names = upload_stored_files(current)
        current.delete()  # its parameter versions and run packages go with it
    for name in names:
        default_storage.delete(name)
    return len(names)
