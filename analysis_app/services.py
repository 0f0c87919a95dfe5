"""Analysis flows shared by the pages, the Celery tasks and ``manage.py analyse``.

An analysis copies its source out of storage into a work folder under
ANALYSIS_WORK_DIR, runs the engine in a child process (``engine_process``), and stores
what the engine wrote under ``analyses/<user>/<id>/``. "Save analysis" copies that, with
every figure as HTML and PNG, to ``BluePyOptAnalysis/<user>/<folder>/``, never over an
existing folder; "Save comparison" writes comparison.json and the comparison's figures (HTML
and PNG) to a folder of its own there. Both claim the folder in the request and are written
by a Celery task. Every file goes through Django's default storage (filesystem or S3).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import shutil
import tempfile
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from analysis_app.engine import ANALYSIS_FILE, AnalysisError, compare, figures
from analysis_app.engine.errors import INTERNAL, INVALID_SOURCE
from analysis_app.engine.figures import FigureExportError
from analysis_app.engine_process import run_engine
from analysis_app.models import Analysis, SavedComparison
from rebuild_site.deletion import DeleteRefused
from rebuild_site.stored import folder_used, stored_files

logger = logging.getLogger(__name__)

RESULTS_PREFIX = "analyses"
SAVED_PREFIX = "BluePyOptAnalysis"
FIGURES_DIR = "figures"
NSG_OUTPUT = "output.tar.gz"
# A running analysis whose worker has not reported for this long is started again.
# A running analysis or a save whose worker has not reported for this long is taken over.
STALE_SECONDS = settings.ANALYSIS_STALE_SECONDS
_HEARTBEAT_SECONDS = 5.0
# What analysis_run and analysis_save_write ended with (the tasks' return values).
DONE = "done"
FAILED = "failed"
NOT_CLAIMED = "not claimed"  # ended, gone, or another worker has it now
RUNNING_ELSEWHERE = "running elsewhere"
SAVED = "saved"
NOT_SAVING = "not saving"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_CHUNK = 1024 * 1024


class SaveRefused(Exception):
    """The analysis cannot be saved; the message says why, for the user. ``suggested``:
    a free folder name to offer in its place, when the one asked for is taken."""

    def __init__(self, message: str, *, suggested: str = "") -> None:
        super().__init__(message)
        self.suggested = suggested


# ----------------------------------------------------------------------------- create


def analysis_create(
    *,
    owner,
    source_kind: str,
    top: int = 1,
    job=None,
    optimisation=None,
    checkpoint: str = "",
    uploads: dict[str, IO[bytes]] | None = None,
) -> Analysis:
    """Record an analysis of the chosen source and queue it (after the transaction commits).

    The form has checked that the source (and ``checkpoint``, a catalogue model's) is the
    user's to analyse. ``uploads`` (an NSG
    result from the user's computer, ``{name: file}``) are stored under the user's area
    first; nothing of them is left when the analysis cannot be recorded.
    """
    folder, chosen, uploaded = "", "", []
    if source_kind == Analysis.Source.JOB:
        folder = job.folder
    elif source_kind == Analysis.Source.CATALOGUE:
        # The checkpoint chosen among the model's (the form checked it), else its best run.
        folder, chosen = optimisation.name, checkpoint or optimisation.best_checkpoint
    elif source_kind == Analysis.Source.UPLOAD:
        uploaded = _uploads_store(owner=owner, files=uploads or {})
    try:
        with transaction.atomic():
            analysis = Analysis.objects.create(
                owner=owner,
                source_kind=source_kind,
                job=job if source_kind == Analysis.Source.JOB else None,
                optimisation=optimisation if source_kind == Analysis.Source.CATALOGUE else None,
                uploaded_files=uploaded,
                folder=folder,
                checkpoint=chosen,
                top=top,
            )
            from analysis_app.tasks import run_analysis

            transaction.on_commit(lambda: run_analysis.delay(analysis.pk))
    except BaseException:
        _storage_delete(uploaded)
        raise
    return analysis


def _uploads_store(*, owner, files: dict[str, IO[bytes]]) -> list[str]:
    folder = f"{RESULTS_PREFIX}/{owner.get_username()}/uploads/{secrets.token_hex(8)}"
    stored: list[str] = []
    try:
        for name, handle in files.items():
            handle.seek(0)
            stored.append(_storage_write(f"{folder}/{_safe_name(name)}", handle))
    except BaseException:
        _storage_delete(stored)
        raise
    return stored


# ----------------------------------------------------------------------------- run


def analysis_run(*, analysis_id: int) -> str:
    """Run a queued analysis to its end (the Celery task), unless another worker has it."""
    now = timezone.now()
    claimed = (
        Analysis.objects.filter(pk=analysis_id)
        .filter(
            Q(status=Analysis.Status.QUEUED)
            | Q(
                status=Analysis.Status.RUNNING,
                heartbeat_at__lt=now - timedelta(seconds=STALE_SECONDS),
            )
        )
        .update(status=Analysis.Status.RUNNING, started_at=now, heartbeat_at=now, progress={})
    )
    if not claimed:
        running = Analysis.objects.filter(pk=analysis_id, status=Analysis.Status.RUNNING)
        # Another worker has it, or had it and stopped: the task looks again later.
        return RUNNING_ELSEWHERE if running.exists() else NOT_CLAIMED
    analysis = Analysis.objects.select_related("owner", "job", "optimisation").get(pk=analysis_id)
    # A worker that died running this analysis left its folder (its engine died with it).
    _remove_work_folders(analysis.pk)
    settings.ANALYSIS_WORK_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"analysis-{analysis.pk}-", dir=settings.ANALYSIS_WORK_DIR))
    try:
        source = _fetch_source(analysis, work / "source")
        outcome = run_engine(
            source=source,
            out_dir=work / "out",
            progress_file=work / "progress.json",
            mechanisms_cache=settings.MECHANISMS_CACHE_DIR,
            timeout=settings.ANALYSIS_TIMEOUT_SECONDS,
            top=analysis.top,
            checkpoint=analysis.checkpoint or None,
            work_dir=work,
            max_unpacked_bytes=settings.ANALYSIS_UNPACKED_MAX_BYTES,
            on_progress=_progress_recorder(analysis.pk),
            sandbox=settings.SANDBOX,
        )
        if not outcome.succeeded:
            _record_failure(analysis, outcome.error)
            return FAILED
        _store_results(analysis, outcome.out_dir, outcome.analysis)
        return DONE
    except AnalysisError as error:
        _record_failure(analysis, error.as_dict())
        return FAILED
    except Exception as error:
        # The one failure policy of tasks: the row says failed, with the reason and the
        # time; the error is raised again so that Celery records the failure too.
        logger.exception("analysis %s failed", analysis_id)
        _record_failure(
            analysis,
            {
                "kind": INTERNAL,
                "message": f"The analysis could not be completed: {error}",
                "details": {"traceback": traceback.format_exc()},
            },
        )
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch_source(analysis: Analysis, folder: Path) -> Path:
    """Copy what the analysis reads out of storage; the local file to give the engine."""
    folder.mkdir(parents=True, exist_ok=True)
    if analysis.source_kind == Analysis.Source.JOB:
        job = analysis.job
        if job is None:
            raise AnalysisError(INVALID_SOURCE, "The job of this analysis was deleted.")
        stored = job.result_files.filter(name=NSG_OUTPUT).first()
        if stored is None:
            raise AnalysisError(
                INVALID_SOURCE,
                f"The stored result of {job.folder} holds no {NSG_OUTPUT}; "
                "copy the job's results to storage again.",
                {"stored_files": list(job.result_files.values_list("name", flat=True))},
            )
        return _storage_read(stored.storage_name, folder / NSG_OUTPUT)
    if analysis.source_kind == Analysis.Source.CATALOGUE:
        optimisation = analysis.optimisation
        if optimisation is None:
            raise AnalysisError(INVALID_SOURCE, "The catalogue model of this analysis was deleted.")
        return _storage_read(optimisation.archive, folder / f"{optimisation.name}.zip")
    # An upload: one zip of the results, or output.tar.gz beside STDOUT and STDERR.
    names = list(analysis.uploaded_files)
    chosen = next((n for n in names if n.lower().endswith(".zip")), None) or next(
        (n for n in names if n.endswith(f"/{NSG_OUTPUT}")), None
    )
    if chosen is None:
        raise AnalysisError(INVALID_SOURCE, f"The upload holds neither a zip nor {NSG_OUTPUT}.")
    return _storage_read(chosen, folder / chosen.rsplit("/", 1)[-1])


def _progress_recorder(analysis_id: int):
    """Copies the engine's progress into the row when it changes (and beats regularly)."""
    last: dict[str, Any] = {"progress": None, "at": 0.0}

    def record(progress: dict[str, Any] | None) -> None:
        now = timezone.now()
        moment = now.timestamp()
        if progress == last["progress"] and moment - last["at"] < _HEARTBEAT_SECONDS:
            return
        fields: dict[str, Any] = {"heartbeat_at": now}
        if progress is not None and progress != last["progress"]:
            fields["progress"] = progress
        Analysis.objects.filter(pk=analysis_id, status=Analysis.Status.RUNNING).update(**fields)
        last.update(progress=progress, at=moment)

    return record


def _store_results(analysis: Analysis, out_dir: Path, document: dict[str, Any]) -> None:
    # The id names the folder; the token keeps a rerun (or a reused id) off older files.
    prefix = (
        f"{RESULTS_PREFIX}/{analysis.owner.get_username()}/{analysis.pk}-{secrets.token_hex(4)}"
    )
    names = sorted(
        path.relative_to(out_dir).as_posix() for path in out_dir.rglob("*") if path.is_file()
    )
    # analysis.json last: a prefix holding one holds a complete analysis.
    names.sort(key=lambda name: name == ANALYSIS_FILE)
    written: list[str] = []
    try:
        for name in names:
            with open(out_dir / name, "rb") as handle:
                written.append(_storage_write(f"{prefix}/{name}", handle))
    except BaseException:
        _storage_delete(written)
        raise
    best = document["individuals"][0]
    Analysis.objects.filter(pk=analysis.pk).update(
        status=Analysis.Status.DONE,
        result_prefix=prefix,
        result_files=names,
        fitness=best["fitness"],
        evaluation_seconds=_evaluation_seconds(document),
        folder=analysis.folder or _safe_name(document["model"]["name"]),
        finished_at=timezone.now(),
    )


def _evaluation_seconds(document: dict[str, Any]) -> float | None:
    """The best individual's protocols' seconds in all (what a run's cost is forecast from)."""
    rows = (document.get("timings") or {}).get("protocols") or []
    seconds = [row.get("seconds") for row in rows if row.get("rank") == 1]
    if not seconds or not all(isinstance(value, int | float) for value in seconds):
        return None
    return float(sum(seconds)) or None


def _record_failure(analysis: Analysis, error: dict[str, Any]) -> None:
    progress = Analysis.objects.filter(pk=analysis.pk).values_list("progress", flat=True).first()
    Analysis.objects.filter(pk=analysis.pk).update(
        status=Analysis.Status.FAILED,
        error_kind=error.get("kind") or INTERNAL,
        error_message=error.get("message") or "The analysis failed.",
        error_details=error.get("details") or {},
        finished_at=timezone.now(),
        progress={**(progress or {}), "stage": "failed", "message": error.get("message", "")},
    )


# ----------------------------------------------------------------------------- reading


def analysis_document(*, analysis: Analysis) -> dict[str, Any]:
    """The stored analysis.json (no recomputation)."""
    with default_storage.open(f"{analysis.stored_prefix()}/{ANALYSIS_FILE}", "rb") as handle:
        return json.load(handle)


@contextlib.contextmanager
def _stored_analysis(analysis: Analysis) -> Iterator[tuple[dict[str, Any], Path | None]]:
    """analysis.json's content and the morphology, copied out of storage for a moment."""
    document = analysis_document(analysis=analysis)
    with tempfile.TemporaryDirectory(prefix="analysis-figures-") as scratch:
        relative = document["model"].get("morphology_file")
        morphology = None
        if relative and relative in analysis.result_files:
            morphology = _storage_read(
                f"{analysis.stored_prefix()}/{relative}", Path(scratch) / relative
            )
        yield document, morphology


def analysis_figures(*, analysis: Analysis, individual: int = 0) -> dict[str, Any]:
    """The Plotly figures of the analysis (engine.figures), built from what is stored."""
    with _stored_analysis(analysis) as (document, morphology):
        if not 0 <= individual < len(document["individuals"]):
            raise KeyError(individual)
        return figures.all_figures(document, morphology, individual=individual)


def analysis_figure_file(*, analysis: Analysis, name: str, kind: str, individual: int = 0) -> bytes:
    """One figure as a self-contained HTML page or a PNG (kaleido). KeyError: no such figure.

    A saved analysis' best-individual figures are read back from its saved folder.
    """
    if kind not in ("html", "png"):
        raise KeyError(kind)
    if analysis.is_saved and individual == 0:
        saved = f"{analysis.saved_to}/{FIGURES_DIR}/{name}.{kind}"
        if name in figures.FIGURE_NAMES and default_storage.exists(saved):
            with default_storage.open(saved, "rb") as handle:
                return handle.read()
    built = analysis_figures(analysis=analysis, individual=individual)
    figure = built[name]
    with tempfile.TemporaryDirectory(prefix="analysis-figure-") as scratch:
        written = figures.write_figure_files(
            {name: figure}, scratch, html=kind == "html", png=kind == "png"
        )
        return written[name][kind].read_bytes()


def analysis_file_open(*, analysis: Analysis, name: str) -> IO[bytes]:
    """One of the files the engine wrote (hoc, trace CSV, morphology, analysis.json)."""
    if name not in analysis.result_files:
        raise KeyError(name)
    return default_storage.open(f"{analysis.stored_prefix()}/{name}", "rb")


def analysis_traces_zip(*, analysis: Analysis, label: str) -> IO[bytes]:
    """The CSV traces of one individual (``best``, ``top2`` ...) as a zip; KeyError if none."""
    folder = f"traces/{label}/"
    names = [name for name in analysis.result_files if name.startswith(folder)]
    if not names:
        raise KeyError(label)
    buffer = tempfile.SpooledTemporaryFile(max_size=16 * _CHUNK)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            with (
                default_storage.open(f"{analysis.stored_prefix()}/{name}", "rb") as source,
                archive.open(
                    f"{analysis.folder or 'analysis'}_{label}/{name[len(folder) :]}", "w"
                ) as member,
            ):
                shutil.copyfileobj(source, member, _CHUNK)
    buffer.seek(0)
    return buffer


# ----------------------------------------------------------------------------- save


def saved_folder(analysis: Analysis, name: str | None = None) -> str:
    """``BluePyOptAnalysis/<user>/<folder>``: where "Save analysis" writes (the notebook's).

    ``name`` is the folder the user chose; by default the analysed run's folder.
    """
    folder = _safe_name(name or analysis.folder or f"analysis-{analysis.pk}")
    return f"{SAVED_PREFIX}/{analysis.owner.get_username()}/{folder}"


def free_saved_folder(analysis: Analysis, name: str | None = None) -> str:
    """The first folder name from ``name`` (default: the run's folder) whose saved folder is
    neither in storage nor claimed by another analysis: ``name``, ``name-2``, ``name-3`` ...

    The page offers it, so a taken folder never dead-ends the user."""
    base = name or analysis.folder or f"analysis-{analysis.pk}"
    return _free_folder(analysis.owner, base, fallback=f"{base}-{analysis.pk}")


def _free_folder(owner, base: str, *, fallback: str) -> str:
    """The first of ``base``, ``base-2``, ``base-3`` ... free under the owner's saved
    analyses (neither in storage nor claimed by an analysis)."""
    for number in range(1, _MAX_FOLDER_SUFFIX + 1):
        candidate = _safe_name(base if number == 1 else f"{base}-{number}")
        if not _saved_folder_taken(f"{SAVED_PREFIX}/{owner.get_username()}/{candidate}"):
            return candidate
    return f"{fallback}-{int(timezone.now().timestamp())}"


_MAX_FOLDER_SUFFIX = 50


def _saved_folder_taken(prefix: str) -> bool:
    """Whether a saved analysis or a saved comparison claims ``prefix``, or storage holds
    files there. A failed comparison's row still names its folder, but left nothing in it
    and does not hold it."""
    return (
        Analysis.objects.filter(saved_to=prefix).exists()
        or SavedComparison.objects.filter(saved_to=prefix)
        .exclude(status=SavedComparison.Status.FAILED)
        .exists()
        or folder_used(prefix)
    )


def _chosen_folder_name(name: str | None) -> str | None:
    """The folder name the user typed (None: the default); SaveRefused unless it is a plain
    name, which cannot reach outside the user's saved folders."""
    name = (name or "").strip() or None
    if name is not None and (_safe_name(name) != name or len(name) > 200):
        raise SaveRefused(
            f"{name!r} cannot be a folder name: use letters, digits, '.', '-' and '_' "
            f"(for example {_safe_name(name)!r})."
        )
    return name


@contextlib.contextmanager
def _saved_folders_locked(owner) -> Iterator[None]:
    """A transaction in which one of ``owner``'s saved folders is checked and claimed.

    Each table keeps its saved folders unique (a constraint), but a saved analysis and a
    saved comparison could claim the same folder at the same moment: claims lock the
    owner's row, since every folder they claim is under BluePyOptAnalysis/<owner>/.
    (SQLite, whose transactions are immediate here, has one writer at a time anyway.)"""
    with transaction.atomic():
        list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values("pk"))
        yield


def analysis_save_start(*, analysis: Analysis, name: str | None = None) -> str:
    """Claim the analysis' saved folder and queue the copy; the folder's name.

    Raises SaveRefused when the analysis is not finished, is saved already, or its folder
    exists in storage (an existing folder is never overwritten); the refusal names a free
    folder to use instead.
    """
    if analysis.status != Analysis.Status.DONE:
        raise SaveRefused("Only a finished analysis can be saved.")
    if analysis.save_status == Analysis.SaveStatus.SAVED:
        raise SaveRefused(f"This analysis is already saved in {analysis.saved_to}/.")
    if analysis.save_status == Analysis.SaveStatus.SAVING:
        raise SaveRefused(f"This analysis is being saved to {analysis.saved_to}/.")
    name = _chosen_folder_name(name)
    prefix = saved_folder(analysis, name)

    def taken() -> SaveRefused:
        free = free_saved_folder(analysis, name)
        return SaveRefused(
            f"{prefix}/ already exists, and an analysis is never overwritten. "
            f"Save it as {free!r} instead (the name is filled in below), or choose another.",
            suggested=free,
        )

    try:
        with _saved_folders_locked(analysis.owner):
            if _saved_folder_taken(prefix):
                raise taken()
            claimed = (
                Analysis.objects.filter(pk=analysis.pk, status=Analysis.Status.DONE)
                .exclude(save_status__in=[Analysis.SaveStatus.SAVING, Analysis.SaveStatus.SAVED])
                .update(
                    saved_to=prefix,
                    save_status=Analysis.SaveStatus.SAVING,
                    save_error="",
                    save_heartbeat_at=None,
                )
            )
    except IntegrityError:
        raise taken() from None
    if not claimed:
        raise SaveRefused("This analysis is being saved already.")
    from analysis_app.tasks import save_analysis

    transaction.on_commit(lambda: save_analysis.delay(analysis.pk))
    return prefix


class _ClaimLost(Exception):
    """The save was taken over (its worker was thought dead): stop, and touch nothing."""


class _SaveBeat:
    """Beats a background save's heartbeat, which is also its writer's claim: when another
    worker has taken the save over (the heartbeat is no longer the one written here),
    raises _ClaimLost instead. ``saving`` selects the row while it is being saved;
    ``field`` is its heartbeat."""

    def __init__(self, saving: QuerySet, field: str, claimed_at) -> None:
        self.saving = saving
        self.field = field
        self.at = claimed_at

    def __call__(self) -> None:
        now = timezone.now()
        if not self.rows().update(**{self.field: now}):
            raise _ClaimLost()
        self.at = now

    def rows(self) -> QuerySet:
        """The save's row, as long as it is this writer's."""
        return self.saving.filter(**{self.field: self.at})


def _store_folder(
    folder: Path, prefix: str, *, last: str, beat: _SaveBeat, written: list[str]
) -> list[str]:
    """Copy every file of ``folder`` to ``prefix`` in storage, ``last`` last (its presence
    means the saved folder is complete), beating the save's claim before each; the names.
    What is written is appended to ``written`` as it goes (for _undo_save)."""
    names = sorted(
        path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()
    )
    names.sort(key=lambda name: name == last)
    for name in names:
        beat()
        with open(folder / name, "rb") as handle:
            written.append(_storage_write(f"{prefix}/{name}", handle))
    return names


def _undo_save(beat: _SaveBeat, written: list[str]) -> bool:
    """After a save failed: whether it is still this writer's, and then what it wrote is
    removed (a save taken over is the other writer's, files included)."""
    try:
        beat()
    except _ClaimLost:
        return False
    _storage_delete(written)
    return True


def analysis_save_write(*, analysis_id: int) -> str:
    """Write a claimed analysis' saved folder (the Celery task): all of it, or nothing."""
    analysis = (
        Analysis.objects.select_related("owner")
        .filter(pk=analysis_id, save_status=Analysis.SaveStatus.SAVING)
        .first()
    )
    if analysis is None:
        return NOT_SAVING
    # Claimed like an analysis run: a save whose worker died is taken over by the next
    # task the sweep queues, never written by two at once.
    now = timezone.now()
    saving = Analysis.objects.filter(pk=analysis_id, save_status=Analysis.SaveStatus.SAVING)
    if not saving.filter(
        Q(save_heartbeat_at__isnull=True)
        | Q(save_heartbeat_at__lt=now - timedelta(seconds=STALE_SECONDS))
    ).update(save_heartbeat_at=now):
        return NOT_CLAIMED
    beat = _SaveBeat(saving, "save_heartbeat_at", now)
    prefix = analysis.saved_to
    # The folder was reserved for this analysis alone (saved_to is unique): anything in it
    # is what an interrupted save of this analysis wrote, and is written again whole.
    _storage_delete(stored_files(prefix))
    written: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="analysis-save-") as scratch:
            folder = Path(scratch)
            for name in analysis.result_files:
                _storage_read(f"{analysis.result_prefix}/{name}", folder / name)
            _write_saved_figures(analysis, folder, on_wait=beat)
            _store_folder(folder, prefix, last=ANALYSIS_FILE, beat=beat, written=written)
    except _ClaimLost:
        logger.warning("saving analysis %s: taken over by another worker", analysis_id)
        return NOT_CLAIMED
    except Exception as error:
        if not _undo_save(beat, written):
            return NOT_CLAIMED
        logger.warning("saving analysis %s failed: %s", analysis_id, error)
        beat.rows().update(
            save_status=Analysis.SaveStatus.FAILED,
            save_heartbeat_at=None,
            saved_to="",
            save_error=f"The analysis was not saved: {error}",
        )
        return FAILED
    if not beat.rows().update(save_status=Analysis.SaveStatus.SAVED, saved_at=timezone.now()):
        return NOT_CLAIMED
    return SAVED


def _write_saved_figures(
    analysis: Analysis, folder: Path, *, on_wait: Callable[[], None] | None = None
) -> None:
    """figures/<name>.html and .png for the best; figures/<label>/ for the next ones.
    ``on_wait`` is called while the PNGs are drawn (the save's heartbeat)."""
    document = json.loads((folder / ANALYSIS_FILE).read_text(encoding="utf-8"))
    relative = document["model"].get("morphology_file")
    morphology = folder / relative if relative and (folder / relative).is_file() else None
    for index, individual in enumerate(document["individuals"]):
        built = figures.all_figures(document, morphology, individual=index)
        target = folder / FIGURES_DIR
        if index:
            # the run's figures (morphology, evolution) are the same for every individual
            built = {
                name: figure
                for name, figure in built.items()
                if name not in ("morphology", "morphology_3d", "evolution")
            }
            target = target / individual["label"]
        figures.write_figure_files(built, target, html=True, png=True, on_wait=on_wait)


# ----------------------------------------------------------------------------- compare

COMPARISON_FILE = "comparison.json"
# More analyses than this make figures no one can read (and requests that read many
# documents): the page says so.
MAX_COMPARED = 6


def comparison_analyses(*, user, ids: list[int | None]) -> list[Analysis]:
    """The analyses ``user`` chose to compare, in the order chosen.

    Raises CompareRefused naming what is wrong: fewer than two, too many, one that is not
    theirs (or does not exist), one that is not done."""
    chosen = list(dict.fromkeys(ids))
    if None in chosen:
        raise compare.CompareRefused("An analysis was named by something that is not a number.")
    if len(chosen) < 2:
        raise compare.CompareRefused(
            "Choose at least two analyses to compare (tick them in the lists of analyses)."
        )
    if len(chosen) > MAX_COMPARED:
        raise compare.CompareRefused(
            f"Choose at most {MAX_COMPARED} analyses to compare; {len(chosen)} were chosen."
        )
    found = {
        analysis.pk: analysis
        for analysis in Analysis.objects.visible_to(user)
        .select_related("owner", "job", "optimisation")
        .filter(pk__in=chosen)
    }
    missing = [str(pk) for pk in chosen if pk not in found]
    if missing:
        raise compare.CompareRefused(
            f"No analysis {', '.join(missing)} among yours: it was deleted, or is not yours."
        )
    unfinished = [found[pk] for pk in chosen if found[pk].status != Analysis.Status.DONE]
    if unfinished:
        raise compare.CompareRefused(
            "Only finished analyses can be compared: "
            + ", ".join(f"{a} is {a.get_status_display().lower()}" for a in unfinished)
            + "."
        )
    return [found[pk] for pk in chosen]


def comparison_entries(analyses: list[Analysis]) -> list[compare.Compared]:
    """Each analysis' analysis.json, named ``<folder> #<id>``; CompareRefused when one
    cannot be read."""
    entries = []
    for analysis in analyses:
        try:
            document = analysis_document(analysis=analysis)
        except (OSError, ValueError):
            raise compare.CompareRefused(
                f"The stored analysis {analysis} cannot be read: its analysis.json is "
                "missing from storage or damaged."
            ) from None
        if not document.get("individuals"):
            raise compare.CompareRefused(f"The analysis {analysis} holds no individual.")
        entries.append(compare.Compared(name=str(analysis), document=document))
    return entries


def comparison_folder(analyses: list[Analysis]) -> str:
    """The default folder name of a saved comparison: ``compare-<names>``."""
    folders = [analysis.folder or f"analysis-{analysis.pk}" for analysis in analyses]
    if len(set(folders)) < len(folders):  # two seeds of one run: the ids tell them apart
        folders = [
            f"{folder}-{analysis.pk}" for folder, analysis in zip(folders, analyses, strict=True)
        ]
    return _safe_name("compare-" + "-".join(folders))


def free_comparison_folder(owner, analyses: list[Analysis], name: str | None = None) -> str:
    """A free folder name for the comparison under the owner's saved analyses."""
    base = name or comparison_folder(analyses)
    return _free_folder(owner, base, fallback=base)


def comparison_save_start(
    *, owner, analyses: list[Analysis], name: str | None = None
) -> SavedComparison:
    """Claim ``BluePyOptAnalysis/<owner>/<name>/`` (default ``compare-<names>``) for the
    comparison and queue the task that writes it (``comparison_save_write``); the claim.

    Raises SaveRefused when the name is not a plain folder name, or the folder is taken (in
    storage, by a saved analysis or by another saved comparison): a saved folder is never
    overwritten, and the refusal offers a free name instead."""
    name = _chosen_folder_name(name)
    folder = name or comparison_folder(analyses)
    prefix = f"{SAVED_PREFIX}/{owner.get_username()}/{folder}"

    def taken() -> SaveRefused:
        free = free_comparison_folder(owner, analyses, folder)
        return SaveRefused(
            f"{prefix}/ already exists, and a saved folder is never overwritten. "
            f"Save it as {free!r} instead (the name is filled in below), or choose another.",
            suggested=free,
        )

    from analysis_app.tasks import save_comparison

    try:
        with _saved_folders_locked(owner):
            if _saved_folder_taken(prefix):
                raise taken()
            saved = SavedComparison.objects.create(
                owner=owner,
                compared=[
                    {"id": analysis.pk, "name": str(analysis), "folder": analysis.folder}
                    for analysis in analyses
                ],
                saved_to=prefix,
                # the task is queued now: the sweep leaves it alone for a while
                queued_at=timezone.now(),
            )
            saved.analyses.set(analyses)
            transaction.on_commit(lambda: save_comparison.delay(saved.pk))
    except IntegrityError:
        raise taken() from None
    return saved


def comparison_save_write(*, comparison_id: int) -> str:
    """Write a claimed comparison's folder (the Celery task ``save_comparison``): every
    figure as self-contained HTML and as PNG, then comparison.json; all of it or nothing.

    Claimed like a saved analysis: a save whose worker died (its heartbeat stale) is taken
    over by the task the sweep queues again, and never written by two at once."""
    saving = SavedComparison.objects.filter(pk=comparison_id, status=SavedComparison.Status.SAVING)
    if not saving.exists():
        return NOT_SAVING
    now = timezone.now()
    if not saving.filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - timedelta(seconds=STALE_SECONDS))
    ).update(heartbeat_at=now):
        return NOT_CLAIMED
    saved = SavedComparison.objects.get(pk=comparison_id)
    beat = _SaveBeat(saving, "heartbeat_at", now)
    prefix = saved.saved_to
    written: list[str] = []
    try:
        # The folder was reserved for this comparison alone: anything in it is what an
        # interrupted save of it wrote, and is written again whole.
        _storage_delete(stored_files(prefix))
        analyses = _compared_analyses(saved)
        entries = comparison_entries(analyses)
        compared = compare.comparison(entries)
        built = compare.comparison_figures(entries, compared)
        with tempfile.TemporaryDirectory(prefix="comparison-save-") as scratch:
            folder = Path(scratch)
            figures.write_figure_files(
                built, folder / FIGURES_DIR, html=True, png=True, on_wait=beat
            )
            (folder / COMPARISON_FILE).write_text(
                json.dumps(_comparison_document(analyses, compared), indent=1, default=str),
                encoding="utf-8",
            )
            names = _store_folder(folder, prefix, last=COMPARISON_FILE, beat=beat, written=written)
    except _ClaimLost:
        logger.warning("saving comparison %s: taken over by another worker", comparison_id)
        return NOT_CLAIMED
    except Exception as error:
        if not _undo_save(beat, written):
            return NOT_CLAIMED
        logger.warning("saving comparison %s failed: %s", comparison_id, error, exc_info=True)
        beat.rows().update(
            status=SavedComparison.Status.FAILED,
            heartbeat_at=None,
            error=_comparison_save_failure(error, prefix),
        )
        return FAILED
    if not beat.rows().update(
        status=SavedComparison.Status.SAVED, files=names, error="", saved_at=timezone.now()
    ):
        return NOT_CLAIMED
    return SAVED


def _compared_analyses(saved: SavedComparison) -> list[Analysis]:
    """The analyses of a saved comparison, in the order compared; CompareRefused when one
    was deleted or is no longer done since the comparison was claimed."""
    found = {
        analysis.pk: analysis
        for analysis in saved.analyses.select_related("owner", "job", "optimisation")
    }
    gone = [entry["name"] for entry in saved.compared if entry["id"] not in found]
    if gone:
        raise compare.CompareRefused(
            f"{', '.join(gone)} {'was' if len(gone) == 1 else 'were'} deleted before the "
            "comparison was written"
        )
    analyses = [found[entry["id"]] for entry in saved.compared]
    unfinished = [str(a) for a in analyses if a.status != Analysis.Status.DONE]
    if unfinished:
        raise compare.CompareRefused(f"{', '.join(unfinished)} is no longer a finished analysis")
    return analyses


def _comparison_document(analyses: list[Analysis], compared: dict[str, Any]) -> dict[str, Any]:
    """comparison.json: what was compared, where each analysis is stored, and every score."""
    return {
        "format_version": 1,
        "created_at": timezone.now().isoformat(timespec="seconds"),
        "analyses": [
            {
                "id": analysis.pk,
                "name": str(analysis),
                "folder": analysis.folder,
                "source": analysis.source_description,
                "stored_in": analysis.stored_prefix(),
            }
            for analysis in analyses
        ],
        **compared,
    }


def _comparison_save_failure(error: Exception, prefix: str) -> str:
    """What a user is told when a comparison could not be saved (the log has the rest)."""
    if isinstance(error, FigureExportError):
        said = str(error).splitlines()[0].removesuffix(" It said:").strip()
        reason = f"the server could not draw its figures as PNG images ({said})"
    elif isinstance(error, compare.CompareRefused):
        reason = str(error).rstrip(".")
    elif isinstance(error, OSError):
        reason = f"the storage refused a file ({error})"
    else:
        reason = f"it stopped unexpectedly ({type(error).__name__}: {error})"
    return (
        f"The comparison was not saved: {reason}. Nothing was kept in {prefix}/; "
        "open the comparison again to save it."
    )


def saved_comparisons_of(*, user, analyses: list[Analysis]) -> list[SavedComparison]:
    """The saved comparisons ``user`` may see of exactly these analyses, in this order."""
    ids = [analysis.pk for analysis in analyses]
    rows = SavedComparison.objects.visible_to(user).filter(analyses=analyses[0])
    return [row for row in rows if row.compared_ids == ids]


def comparison_file_open(*, saved: SavedComparison, name: str) -> IO[bytes]:
    """One file of a saved comparison (comparison.json, figures/<name>.html or .png)."""
    if saved.status != SavedComparison.Status.SAVED or name not in saved.files:
        raise KeyError(name)
    return default_storage.open(f"{saved.saved_to}/{name}", "rb")


# ----------------------------------------------------------------------------- storage


def _safe_name(name: str) -> str:
    cleaned = _UNSAFE_NAME.sub("_", name).strip("._") or "analysis"
    return cleaned[:200]


def _storage_read(name: str, target: Path) -> Path:
    """Copy a stored file to a local path, streamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with default_storage.open(name, "rb") as source, open(target, "wb") as destination:
        shutil.copyfileobj(source, destination, _CHUNK)
    return target


def _storage_write(name: str, handle: IO[bytes]) -> str:
    # FileSystemStorage would pick another name for an existing file: a file of a failed
    # earlier attempt is replaced, so that the name is exactly the one asked for.
    if default_storage.exists(name):
        default_storage.delete(name)
    # An uploaded file is given as it is: the filesystem storage moves a large one (kept on
    # disk by Django) into place instead of copying it.
    content = handle if isinstance(handle, File) else File(handle, name=name.rsplit("/", 1)[-1])
    saved = default_storage.save(name, content)
    if saved != name:
        default_storage.delete(saved)
        raise OSError(f"storage refused the name {name} (it saved {saved})")
    return saved


def _storage_delete(names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            default_storage.delete(name)


@dataclass(frozen=True)
class StoredResult:
    """A collected result found for ``manage.py analyse``: its storage name and folder."""

    storage_name: str
    folder: str


def stored_result_find(*, reference: str) -> StoredResult | None:
    """``job:<id>`` or a storage prefix of collected results: where its output.tar.gz is."""
    from nsg_app.models import Job, ResultFile

    if reference.startswith("job:"):
        number = reference[len("job:") :]
        job = Job.objects.filter(pk=int(number)).first() if number.isdigit() else None
        if job is None:
            return None
        stored = ResultFile.objects.filter(job=job, name=NSG_OUTPUT).first()
        return StoredResult(stored.storage_name, job.folder) if stored else None
    prefix = reference.rstrip("/")
    name = prefix if prefix.endswith(f"/{NSG_OUTPUT}") else f"{prefix}/{NSG_OUTPUT}"
    if prefix and default_storage.exists(name):
        folder = name[: -len(f"/{NSG_OUTPUT}")].rsplit("/", 1)[-1]
        return StoredResult(name, folder)
    return None


def stored_result_copy(*, result: StoredResult, folder: Path) -> Path:
    """Copy a stored result's output.tar.gz into ``folder``; the local file."""
    return _storage_read(result.storage_name, folder / NSG_OUTPUT)


RESULT_FORMS = (
    "job:<id>, a storage prefix of collected results, a local run folder, "
    "an output.tar.gz or a zip of NSG results"
)


def result_source(
    *, reference: str, folder: Path, announce: Callable[[str], None] | None = None
) -> Path | None:
    """The local file or folder a RESULT of the command line names (``RESULT_FORMS``).

    A local path is used where it is; a job's or a storage prefix's output.tar.gz is copied
    into ``folder`` (``announce`` is told so first). None when ``reference`` names nothing
    of these.
    """
    local = Path(reference).expanduser()
    if not reference.startswith("job:") and local.exists():
        return local.resolve()
    stored = stored_result_find(reference=reference)
    if stored is None:
        return None
    if announce is not None:
        announce(f"Copying {stored.storage_name} out of storage …")
    return stored_result_copy(result=stored, folder=folder)


def result_not_found(reference: str) -> str:
    return (
        f"{reference} is neither a local folder or file, a job id (job:<id>) with a stored "
        "output.tar.gz, nor a storage prefix holding output.tar.gz."
    )


# ----------------------------------------------------------------------------- sweep


def analyses_sweep(*, redrive_after: timedelta) -> dict[str, int]:
    """Queue again every analysis and save (of an analysis or a comparison) that nothing has
    reported on for a while.

    The database is the queue: a queued analysis whose message was lost, a running one
    whose worker died, a save stopped half-way are all found here (the periodic sweep of
    nsg_app.services.sweep) and claimed again by their tasks' conditional updates.
    """
    from analysis_app.tasks import run_analysis, save_analysis, save_comparison

    now = timezone.now()
    stale = now - timedelta(seconds=STALE_SECONDS)
    not_lately = Q(queued_at__isnull=True) | Q(queued_at__lt=now - redrive_after)
    analyses = Analysis.objects.filter(not_lately).filter(
        Q(status=Analysis.Status.QUEUED, created_at__lt=now - redrive_after)
        | Q(status=Analysis.Status.RUNNING, heartbeat_at__lt=stale)
        | Q(status=Analysis.Status.RUNNING, heartbeat_at__isnull=True)
    )
    saves = Analysis.objects.filter(not_lately, save_status=Analysis.SaveStatus.SAVING).filter(
        Q(save_heartbeat_at__isnull=True) | Q(save_heartbeat_at__lt=stale)
    )
    comparisons = SavedComparison.objects.filter(
        not_lately, status=SavedComparison.Status.SAVING
    ).filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale))
    counts = {"analyses": 0, "saves": 0, "comparison_saves": 0}
    for kind, rows, task in (
        ("analyses", analyses, run_analysis),
        ("saves", saves, save_analysis),
        ("comparison_saves", comparisons, save_comparison),
    ):
        for row_id, queued_at in rows.values_list("pk", "queued_at"):
            # Claimed, so that two sweeps at once queue it once.
            if rows.model.objects.filter(pk=row_id, queued_at=queued_at).update(queued_at=now):
                transaction.on_commit(lambda task=task, row_id=row_id: task.delay(row_id))
                counts[kind] += 1
    return counts


# ----------------------------------------------------------------------------- delete


def analysis_delete_refusal(analysis: Analysis) -> str:
    """Why the analysis cannot be deleted now, or "" when it can."""
    if analysis.is_active:
        return (
            f"The analysis is {analysis.get_status_display().lower()}, and a running analysis "
            "cannot be stopped: delete it once it has ended."
        )
    if analysis.save_status == Analysis.SaveStatus.SAVING:
        return f"The analysis is being saved to {analysis.saved_to}/: delete it once it is saved."
    comparing = analysis.saved_comparisons.filter(status=SavedComparison.Status.SAVING).first()
    if comparing is not None:
        return (
            f"A comparison of it is being saved to {comparing.saved_to}/: delete it once "
            "that is saved."
        )
    return ""


def analysis_stored_files(analysis: Analysis) -> list[str]:
    """The analysis' own stored files (its results and the result uploaded for it), its
    analysis.json last. Its saved copy (BluePyOptAnalysis/...) is not among them: it is kept."""
    names = set(analysis.uploaded_files)
    if analysis.result_prefix:
        names |= set(stored_files(analysis.result_prefix))
    return sorted(names, key=lambda name: (name.endswith(f"/{ANALYSIS_FILE}"), name))


def analysis_delete(analysis: Analysis) -> int:
    """Delete the analysis' stored files, its scratch folders and its row; how many stored
    files were removed. Raises DeleteRefused (nothing deleted) while it runs or is saved.
    A saved copy under BluePyOptAnalysis/ is the user's to keep, and is left as it is."""
    try:
        analysis.refresh_from_db()  # as it is now, not as the page saw it
    except Analysis.DoesNotExist:
        raise DeleteRefused("It was deleted already.") from None
    refusal = analysis_delete_refusal(analysis)
    if refusal:
        raise DeleteRefused(refusal)
    names = analysis_stored_files(analysis)
    for name in names:
        default_storage.delete(name)
    _remove_work_folders(analysis.pk)
    analysis.delete()
    return len(names)


def _remove_work_folders(analysis_pk: int) -> None:
    """The analysis's work folders on this machine (a killed worker's, or a delete's)."""
    root = settings.ANALYSIS_WORK_DIR
    if root.is_dir():
        for folder in root.glob(f"analysis-{analysis_pk}-*"):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)


def comparison_delete_refusal(saved: SavedComparison) -> str:
    """Why the saved comparison cannot be deleted now, or "" when it can."""
    if saved.status == SavedComparison.Status.SAVING:
        return f"It is being saved to {saved.saved_to}/: delete it once it is saved."
    return ""


def comparison_stored_files(saved: SavedComparison) -> list[str]:
    """The files deleting the saved comparison removes: its saved folder, comparison.json
    first (a folder without it is no longer a complete comparison). A failed save left
    nothing, and its folder may be another save's now: none."""
    if saved.status != SavedComparison.Status.SAVED:
        return []
    return sorted(
        stored_files(saved.saved_to),
        key=lambda name: (not name.endswith(f"/{COMPARISON_FILE}"), name),
    )


def comparison_delete(saved: SavedComparison) -> int:
    """Delete a saved comparison's folder and its row; how many stored files were removed.
    Raises DeleteRefused (nothing deleted) while it is being saved. The analyses it
    compared are not touched."""
    try:
        saved.refresh_from_db()  # as it is now, not as the page saw it
    except SavedComparison.DoesNotExist:
        raise DeleteRefused("It was deleted already.") from None
    refusal = comparison_delete_refusal(saved)
    if refusal:
        raise DeleteRefused(refusal)
    names = comparison_stored_files(saved)
    for name in names:
        default_storage.delete(name)
    saved.delete()
    return len(names)
