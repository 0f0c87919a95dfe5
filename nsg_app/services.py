"""Job flows shared by the pages, the admin and the Celery tasks."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from models_app.bpo.naming import new_run_name
from models_app.bpo.package import MAX_SEED
from models_app.bpo.run_cost import RunCost, run_cost
from models_app.bpo.untrusted import UntrustedFileError
from nsg_app.backends import backend_for
from nsg_app.backends.nsg import nsg_client, submission_fields
from nsg_app.collection import MANIFEST, CollectError, store_results
from nsg_app.local.cluster import ClusterError, count_engines
from nsg_app.models import Job, NsgAccount
from nsg_app.nsg import AuthenticationError, NsgError, ValidationError
from nsg_app.polling import account_poll, accounts_due, job_apply_status
from nsg_app.stages import stage_record
from rebuild_site.stored import folder_used

logger = logging.getLogger(__name__)


class AccountCheckFailed(Exception):
    """The NSG credentials could not be confirmed, with a message for the user."""


@sensitive_variables("password")
def nsg_account_save(*, owner, username: str, password: str) -> NsgAccount:
    """Check the credentials against NSG at once, then store them (password encrypted)."""
    if not settings.NSG_APP_KEY:
        raise AccountCheckFailed(
            "The site has no NSG application key (NSG_APP_KEY), so NSG cannot be used yet: "
            "ask the site's staff."
        )
    try:
        with nsg_client(username, password, interactive=True) as client:
            client.list_jobs()
    except AuthenticationError:
        raise AccountCheckFailed("NSG refused this user name and password.") from None
    except NsgError as error:
        raise AccountCheckFailed(
            f"NSG could not be reached to check the credentials ({error.display_message or type(error).__name__}). Try again later."
        ) from None
    account, _ = NsgAccount.objects.get_or_create(owner=owner, defaults={"username": username})
    account.username = username
    account.set_password(password)
    account.verified_at = timezone.now()
    account.next_poll_at = None
    account.poll_failures = 0
    account.last_error = ""
    account.save()
    return account


class SubmissionRefused(Exception):
    """NSG's own check refused a submission (or could not be made), with a message for the
    user and NSG's messages by parameter name (vparam names; empty when none named)."""

    def __init__(self, message: str, param_errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.param_errors = param_errors or {}


def nsg_submission_check(*, account: NsgAccount, package, **fields) -> None:
    """NSG's own check of a submission (validate), before any job is created: raises
    SubmissionRefused with what NSG said."""
    probe = Job(folder=package.run_name, **fields)
    try:
        with (
            nsg_client(account.username, account.password(), interactive=True) as client,
            default_storage.open(package.file, "rb") as handle,
        ):
            client.validate(
                fields["tool"],
                handle,
                input_filename=package.filename,
                **submission_fields(probe),
            )
    except ValidationError as error:
        raise SubmissionRefused(
            f"NSG refused the job: {error.display_message or error.message}",
            dict(error.param_errors),
        ) from None
    except NsgError as error:
        raise SubmissionRefused(
            f"NSG could not check the job ({error.display_message or type(error).__name__}); "
            "try again later."
        ) from None


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED) + 1


def _run_folder_taken(owner, folder: str) -> bool:
    if Job.objects.filter(owner=owner, folder=folder).exists():
        return True
    username = owner.get_username()
    return any(
        folder_used(f"BluePyOptOne/{area}/{username}/{folder}")
        for area in ("resultsNSG", "resultsLocal")
    )


def runs_create(create, *, seeds: int = 1, seed: int | None = None, **fields) -> list[Job]:
    """``seeds`` runs of one package, made by ``create`` (job_create_nsg or
    job_create_local), each with a seed of its own: ``seed`` and the next ones when it is
    given, else fresh distinct ones. Several share a ``launch`` so that they are shown
    together, the best marked. All are created or none."""
    if seeds <= 1:
        return [create(seed=seed, **fields)]
    if seed is not None:
        chosen = [seed + offset for offset in range(seeds)]
    else:
        fresh: set[int] = set()
        while len(fresh) < seeds:
            fresh.add(new_seed())
        chosen = sorted(fresh)
    launch = uuid.uuid4().hex
    with transaction.atomic():
        return [create(seed=one, launch=launch, **fields) for one in chosen]


@dataclass(frozen=True)
class SeedRun:
    """One of the runs started together: its job, its latest finished analysis, and
    whether that analysis found the best (lowest) fitness of them all."""

    job: Job
    analysis: object | None  # analysis_app's Analysis
    fitness: float | None  # the best individual's recomputed fitness
    best: bool


def seed_runs(job: Job) -> list[SeedRun]:
    """The runs started together with ``job`` (itself included), by seed, each with the
    fitness of its latest done analysis, the best marked; [] for a run started alone."""
    from analysis_app.models import Analysis

    if not job.launch:
        return []
    jobs = list(Job.objects.filter(owner=job.owner, launch=job.launch).order_by("seed", "pk"))
    latest: dict[int, Analysis] = {}
    for analysis in Analysis.objects.filter(job__in=jobs, status=Analysis.Status.DONE).order_by(
        "finished_at", "pk"
    ):
        latest[analysis.job_id] = analysis
    fitness = {
        pk: analysis.fitness.get("recomputed")
        for pk, analysis in latest.items()
        if isinstance(analysis.fitness.get("recomputed"), int | float)
    }
    best = min(fitness, key=fitness.get) if fitness else None
    return [SeedRun(run, latest.get(run.pk), fitness.get(run.pk), run.pk == best) for run in jobs]


def _job_create(*, owner, package, seed: int | None, **fields) -> Job:
    """A new run of ``package``: a results folder of its own and a seed of its own.

    The folder is the optimisation's name with the current date-time (the use case's
    rule); a run started in the same second as another of the user's, or whose folder
    already holds something in storage, takes the next free second, so every run's name
    still reads as a date-time. The unique constraint settles two creations racing.
    """
    moment: datetime = timezone.localtime().replace(microsecond=0)
    for _ in range(1000):
        folder = new_run_name(package.run_name, moment)
        moment += timedelta(seconds=1)
        if _run_folder_taken(owner, folder):
            continue
        try:
            with transaction.atomic():
                job = Job.objects.create(
                    owner=owner,
                    package=package,
                    folder=folder,
                    seed=seed if seed is not None else new_seed(),
                    **fields,
                )
        except IntegrityError:
            continue  # another request took this name a moment ago
        job_enqueue_start(job)
        return job
    raise RuntimeError(f"no free run name for {package.run_name}")


def job_create_nsg(
    *,
    owner,
    package,
    tool: str,
    nodes: int,
    cores_per_node: int,
    runtime_hours: float,
    seed: int | None = None,
    launch: str = "",
) -> Job:
    return _job_create(
        owner=owner,
        package=package,
        seed=seed,
        launch=launch,
        backend=Job.Backend.NSG,
        tool=tool,
        nodes=nodes,
        cores_per_node=cores_per_node,
        runtime_hours=runtime_hours,
    )


def job_create_local(
    *,
    owner,
    package,
    cores_per_node: int,
    runtime_hours: float,
    seed: int | None = None,
    launch: str = "",
) -> Job:
    return _job_create(
        owner=owner,
        package=package,
        seed=seed,
        launch=launch,
        backend=Job.Backend.LOCAL,
        cores_per_node=cores_per_node,
        runtime_hours=runtime_hours,
    )


def job_enqueue_start(job: Job) -> None:
    """Queue the job's start once the transaction commits: NSG submissions on the default
    queue, local runs (hours long) on the runs queue with a worker of their own."""
    from nsg_app.tasks import run_local_job, submit_job

    task = run_local_job if job.backend == Job.Backend.LOCAL else submit_job
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now())
    transaction.on_commit(lambda: task.delay(job.pk))


# What starting or following a job ended with (the tasks' return values).
STARTED = "started"
ADOPTED = "adopted"
NOT_CLAIMED = "not claimed"


def _stale() -> datetime:
    return timezone.now() - timedelta(seconds=settings.COLLECT_STALE_SECONDS)


def job_start(job_id: int) -> str:
    """The start task: submit a job waiting to start, or follow again a local run whose
    task is gone. Each step is claimed by a conditional update on the job's heartbeat, so
    a message delivered twice, or queued again by the sweep, never starts a run twice."""
    job = Job.objects.select_related("package", "owner").filter(pk=job_id).first()
    if job is None:
        return NOT_CLAIMED  # deleted meanwhile: nothing to start
    alive = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_stale())
    claim = Job.objects.filter(pk=job_id).filter(alive)
    if job.state == Job.State.SUBMITTING:
        retry = job.heartbeat_at is not None  # an earlier attempt may have got far
        if not claim.filter(state=Job.State.SUBMITTING, cancel_requested_at__isnull=True).update(
            heartbeat_at=timezone.now()
        ):
            return NOT_CLAIMED
        job.refresh_from_db()

        def submit() -> None:
            first_status = backend_for(job).submit(job, retry=retry)
            if first_status is not None:
                job_apply_status(job, first_status)

        _run_failing_loudly(job, submit)
        finished_jobs_collect(pk=job_id)
        return STARTED
    if job.state == Job.State.ACTIVE and job.backend == Job.Backend.LOCAL:
        if not claim.filter(state=Job.State.ACTIVE).update(heartbeat_at=timezone.now()):
            return NOT_CLAIMED
        job.refresh_from_db()
        _run_failing_loudly(job, lambda: backend_for(job).adopt(job))
        finished_jobs_collect(pk=job_id)
        return ADOPTED
    return NOT_CLAIMED


def _run_failing_loudly(job: Job, step) -> None:
    """The one failure policy of job tasks: an unexpected error marks the job failed, with
    the reason and the time in its stage history, and is raised again for Celery to record.
    Never leave a job "running" that nothing follows."""
    try:
        step()
    except Exception as error:
        logger.exception("job %s failed in its task", job.pk)
        reason = f"The job stopped on an internal error: {type(error).__name__}: {error}"
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.FAILED, error=reason, heartbeat_at=None
        )
        stage_record(job, "FAILED", message=reason)
        raise


def finished_jobs_collect(**which) -> int:
    """Queue the copy into storage of the completed jobs of ours among ``which`` (filters,
    e.g. pk=... or owner=...) that no task was queued for since they ended."""
    from nsg_app.tasks import collect_job

    now = timezone.now()
    finished = Job.objects.filter(
        state=Job.State.COMPLETED, external=False, collected_at__isnull=True, **which
    ).filter(Q(queued_at__isnull=True) | Q(queued_at__lt=F("updated_at")))
    queued = 0
    for job_id, queued_at in finished.values_list("pk", "queued_at"):
        if Job.objects.filter(pk=job_id, queued_at=queued_at).update(queued_at=now):
            transaction.on_commit(lambda job_id=job_id: collect_job.delay(job_id))
            queued += 1
    return queued


def account_poll_run(account_id: int, *, force: bool = False) -> str:
    """The poll task: one request to NSG for the account, then the copies it finished."""
    outcome = account_poll(account_id, force=force)
    owner = NsgAccount.objects.filter(pk=account_id).values_list("owner", flat=True).first()
    if owner is not None:
        finished_jobs_collect(owner=owner, backend=Job.Backend.NSG)
    return outcome


def account_poll_request(account: NsgAccount, *, force: bool = False) -> None:
    """'Check NSG simulation' / 'Refresh from NSG': poll once the request commits."""
    from nsg_app.tasks import poll_account

    transaction.on_commit(lambda: poll_account.delay(account.pk, force=force))


# What a collection ended with (the task's return value, and the admin's message).
COLLECTED = "collected"
COLLECT_FAILED = "failed"


def job_collect(job_id: int) -> str:
    """Copy the job's results into storage, unless another worker is doing it right now.

    Only a finished job not yet stored is claimed (or one whose copy stopped reporting):
    a stored job's copy is final, and nothing here ever changes it.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.COLLECT_STALE_SECONDS)
    claimed = (
        Job.objects.filter(pk=job_id, collected_at__isnull=True)
        .filter(
            Q(state=Job.State.COMPLETED)
            | Q(state=Job.State.COLLECTING, collect_heartbeat_at__lt=stale)
        )
        .update(state=Job.State.COLLECTING, collect_heartbeat_at=now)
    )
    if not claimed:
        return NOT_CLAIMED  # not finished, stored, gone, or another worker copies it now
    job = Job.objects.select_related("owner").get(pk=job_id)

    def heartbeat() -> None:
        Job.objects.filter(pk=job_id, state=Job.State.COLLECTING).update(
            collect_heartbeat_at=timezone.now()
        )

    try:
        store_results(job, backend_for(job).result_sources(job), heartbeat=heartbeat)
    except Exception as error:
        # Back to COMPLETED: the results are still at the backend and can be copied again;
        # nothing stored by another job was touched.
        Job.objects.filter(pk=job_id, state=Job.State.COLLECTING).update(
            state=Job.State.COMPLETED,
            collect_heartbeat_at=None,
            error=f"Copying the results failed: {_collect_failure(error)} It can be tried again.",
        )
        if isinstance(
            error, CollectError | NsgError | OSError | UntrustedFileError | NsgAccount.DoesNotExist
        ):
            logger.warning("collecting job %s failed: %s", job_id, error)
            return COLLECT_FAILED
        raise  # a bug: Celery records it too
    return COLLECTED


def _collect_failure(error: Exception) -> str:
    if isinstance(error, NsgAccount.DoesNotExist):
        return "no NSG credentials are stored; log in to NSG again, then copy."
    if isinstance(error, NsgError):
        return f"NSG answered {error.display_message or type(error).__name__}."
    return f"{error}."


def job_copy_to_storage(job: Job) -> tuple[bool, str]:
    """'Copy to storage': queue the copy of a finished job, or check a stored one's copy.

    Returns (queued, message for the user). A stored job is never copied again: its files
    are checked against its manifest and left as they are.
    """
    if job.state == Job.State.COLLECTED:
        missing = [
            result.name
            for result in job.result_files.all()
            if not _stored_with_size(result.storage_name, result.size)
        ]
        if not default_storage.exists(f"{job.results_prefix}/{MANIFEST}"):
            missing.append(MANIFEST)
        if missing:
            return False, (
                f"Already in storage under {job.results_prefix}/, but {', '.join(missing)} "
                "cannot be found there; nothing was changed."
            )
        return False, (
            f"Already in storage under {job.results_prefix}/: its {job.result_files.count()} "
            "files match the manifest. Nothing was copied again."
        )
    reason = job.collect_blocked_reason()
    if reason:
        return False, f"Cannot copy to storage: {reason}"
    from nsg_app.tasks import collect_job

    transaction.on_commit(lambda: collect_job.delay(job.pk))
    return True, "Copying the results to storage."


def _stored_with_size(name: str, size: int) -> bool:
    try:
        return default_storage.exists(name) and default_storage.size(name) == size
    except OSError:
        return False


def sweep() -> dict[str, int]:
    """The periodic sweep (beat): the database is the queue.

    Every row not at its end is found here and its next step queued again when nothing has
    reported on it for a while: jobs waiting to start, local runs nobody follows (after a
    killed worker or a restart), finished jobs not yet in storage, copies whose worker
    stopped, analyses and saves. The tasks claim their row with a conditional update, so a
    step queued twice runs once; the sweep claims each re-queue the same way (queued_at).
    """
    from analysis_app.services import analyses_sweep
    from nsg_app.retention import analysis_folders_prune, work_folders_prune
    from nsg_app.tasks import collect_job, poll_account, run_local_job, submit_job

    now = timezone.now()
    redrive_after = timedelta(seconds=settings.REDRIVE_AFTER_SECONDS)
    stale = _stale()
    accounts = list(accounts_due().values_list("pk", flat=True))
    for account_id in accounts:
        transaction.on_commit(lambda account_id=account_id: poll_account.delay(account_id))
    not_lately = Q(queued_at__isnull=True) | Q(queued_at__lt=now - redrive_after)
    unwatched = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale)
    to_start = Job.objects.filter(not_lately, unwatched).filter(
        Q(state=Job.State.SUBMITTING, cancel_requested_at__isnull=True)
        | Q(state=Job.State.ACTIVE, backend=Job.Backend.LOCAL)
    )
    to_collect = Job.objects.filter(not_lately, collected_at__isnull=True).filter(
        Q(state=Job.State.COMPLETED, external=False)
        | Q(state=Job.State.COLLECTING, collect_heartbeat_at__lt=stale)
    )
    counts = {"accounts": len(accounts), "restarted_jobs": 0, "restarted_collections": 0}
    for key, rows in (("restarted_jobs", to_start), ("restarted_collections", to_collect)):
        for job in rows.select_related("owner"):
            if not Job.objects.filter(pk=job.pk, queued_at=job.queued_at).update(queued_at=now):
                continue  # another sweep queued it a moment ago
            if key == "restarted_jobs":
                task = run_local_job if job.backend == Job.Backend.LOCAL else submit_job
            else:
                task = collect_job
            transaction.on_commit(lambda task=task, job_id=job.pk: task.delay(job_id))
            counts[key] += 1
    counts.update(analyses_sweep(redrive_after=redrive_after))
    counts["work_folders_removed"] = work_folders_prune() + analysis_folders_prune()
    return counts


def job_cancel(job: Job) -> None:
    backend_for(job).cancel(job)


# ----------------------------------------------------------------------------- cost


@dataclass(frozen=True)
class MeasuredEvaluation:
    """One evaluation's time on one core, and where it was measured."""

    seconds: float
    source: str


def evaluation_measured(*, owner, optimisation) -> MeasuredEvaluation | None:
    """The newest time per evaluation of ``optimisation`` measured by ``owner``'s own runs
    here (their progress: seconds inside the maps, over the cores) or analyses (the best
    individual's protocols). None before either exists."""
    from analysis_app.models import Analysis

    found: list[tuple[datetime, MeasuredEvaluation]] = []
    jobs = Job.objects.filter(
        owner=owner, backend=Job.Backend.LOCAL, package__optimisation=optimisation
    ).order_by("-created_at")
    for job in jobs[:MEASURED_JOBS_SEARCHED]:
        seconds = _seconds_per_evaluation(job)
        if seconds is not None:
            found.append((job.created_at, MeasuredEvaluation(seconds, f"the run {job.folder}")))
            break
    analysis = (
        Analysis.objects.filter(
            Q(optimisation=optimisation) | Q(job__package__optimisation=optimisation),
            owner=owner,
            status=Analysis.Status.DONE,
            evaluation_seconds__gt=0,
        )
        .order_by("-finished_at")
        .first()
    )
    if analysis is not None:
        found.append(
            (
                analysis.finished_at or analysis.created_at,
                MeasuredEvaluation(
                    analysis.evaluation_seconds, f"the analysis {analysis.folder or analysis.pk}"
                ),
            )
        )
    return max(found, key=lambda pair: pair[0])[1] if found else None


MEASURED_JOBS_SEARCHED = 20


def _seconds_per_evaluation(job: Job) -> float | None:
    progress = job.progress or {}
    evaluations, seconds = progress.get("evaluations"), progress.get("evaluation_seconds")
    cores = progress.get("cores") or job.cores_per_node
    if not all(isinstance(value, int | float) and value > 0 for value in (evaluations, seconds)):
        return None
    if not isinstance(cores, int) or cores < 1:
        return None
    # The maps ran min(cores, offspring) evaluations at once.
    offspring = progress.get("offspring_size")
    workers = min(cores, offspring) if isinstance(offspring, int) and offspring > 0 else cores
    return seconds * workers / evaluations


@dataclass(frozen=True)
class ClusterState:
    """This site's ipyparallel cluster as a page shows it: its engines now, or what is wrong."""

    engines: int | None
    problem: str = ""


# A page asks the controller at most this often; a silent one costs the page this long.
CLUSTER_STATE_SECONDS = 30
CLUSTER_ANSWER_SECONDS = 2.0


def local_cluster() -> ClusterState | None:
    """The cluster local runs evaluate on (None without one), as it was at most 30 s ago."""
    if settings.LOCAL_CLUSTER is None:
        return None
    key = f"local-cluster:{settings.LOCAL_CLUSTER}"
    state = cache.get(key)
    if state is None:
        try:
            state = ClusterState(
                count_engines(settings.LOCAL_CLUSTER, timeout=CLUSTER_ANSWER_SECONDS)
            )
        except ClusterError as error:
            state = ClusterState(None, " ".join(error.problems))
        cache.set(key, state, CLUSTER_STATE_SECONDS)
    return state


def package_run_cost(
    *, package, owner, nodes: int, cores_per_node: int, runtime_hours: float
) -> tuple[RunCost | None, MeasuredEvaluation | None]:
    """The expected cost of running ``package`` so, from ``owner``'s measurements of its
    model; (None, None) when there are none yet."""
    measured = evaluation_measured(owner=owner, optimisation=package.optimisation)
    if measured is None:
        return None, None
    cost = run_cost(
        seconds_per_evaluation=measured.seconds,
        offspring_size=package.offspring_size,
        max_ngen=package.max_ngen,
        nodes=nodes,
        cores_per_node=cores_per_node,
        runtime_hours=runtime_hours,
        continued_from_generation=(package.continued_from or {}).get("generation") or 0,
    )
    return cost, measured
