import json

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from analysis_app.engine.sources import NSG_OUTPUT_NAME as NSG_OUTPUT
from models_app.bpo.package import MAX_SEED
from models_app.models import RunPackage
from nsg_app import services
from nsg_app.forms import MAX_NODES, VPARAM_FIELDS, LocalRunForm, NsgLoginForm, NsgSubmitForm
from nsg_app.models import Job, NsgAccount, ResultFile
from nsg_app.nsg import NsgError
from nsg_app.retention import job_delete as job_delete_service
from rebuild_site.query import query_int
from rebuild_site.timezones import shown
from rebuild_site.views import confirm_delete


def _get_job(request, pk) -> Job:
    return get_object_or_404(
        Job.objects.visible_to(request.user).select_related("owner", "package"), pk=pk
    )


def _account(user) -> NsgAccount | None:
    return NsgAccount.objects.filter(owner=user).first()


# ----------------------------------------------------------------------------- account


# The password must never reach an error report or the DEBUG page.
@sensitive_post_parameters("password")
def account(request):
    existing = _account(request.user)
    form = NsgLoginForm(
        request.POST or None, initial={"username": existing.username if existing else ""}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.nsg_account_save(
                owner=request.user,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
            )
        except services.AccountCheckFailed as error:
            form.add_error(None, str(error))
        else:
            messages.success(
                request,
                f"Logged in to NSG as {form.cleaned_data['username']}. The password is stored encrypted.",
            )
            return redirect("nsg_app:account")
    return render(
        request,
        "nsg_app/account.html",
        {"form": form, "account": existing},
        status=400 if form.errors else 200,
    )


@require_POST
def account_forget(request):
    deleted, _ = NsgAccount.objects.filter(owner=request.user).delete()
    messages.info(
        request,
        "Your NSG credentials were deleted." if deleted else "No NSG credentials were stored.",
    )
    return redirect("nsg_app:account")


# ----------------------------------------------------------------------------- jobs


def jobs(request):
    rows = list(
        Job.objects.visible_to(request.user).select_related("owner", "package")[:JOBS_LISTED]
    )
    return render(
        request,
        "nsg_app/jobs.html",
        {"jobs": rows, "account": _account(request.user), "signature": _signature(rows)},
    )


JOBS_LISTED = 500


def _signature(rows) -> str:
    """The jobs' ids, states and flags as the list page's script compares them."""
    return json.dumps([[job.pk, job.state, job.flag] for job in rows], separators=(",", ":"))


@require_POST
def jobs_refresh(request):
    existing = _account(request.user)
    if existing is None:
        messages.error(request, "Log in to NSG first.")
        return redirect("nsg_app:account")
    services.account_poll_request(existing, force=True)
    messages.info(request, "Asking NSG for your jobs; the list updates by itself.")
    return redirect("nsg_app:jobs")


def job(request, pk):
    job = _get_job(request, pk)
    files = job.result_files.all()
    # "Continue" needs the run's checkpoint, which travels in its stored output.tar.gz.
    continuable = (
        job.owner == request.user
        and job.package is not None
        and any(file.name == NSG_OUTPUT for file in files)
    )
    return render(
        request,
        "nsg_app/job.html",
        {
            "job": job,
            "stages": job.stages.all(),
            "files": files,
            "continuable": continuable,
            "seed_runs": services.seed_runs(job),
        },
    )


@require_GET
def job_status(request, pk):
    job = _get_job(request, pk)
    return JsonResponse(_job_state(job))


@require_GET
def jobs_status(request):
    rows = Job.objects.visible_to(request.user).select_related("owner", "package")[:JOBS_LISTED]
    return JsonResponse({"jobs": [_job_state(job, history=False) for job in rows]})


def _job_state(job: Job, *, history: bool = True) -> dict:
    state = {
        "id": job.pk,
        "state": job.state,
        "state_label": job.get_state_display(),
        "stage": job.stage,
        "handle": job.handle,
        "active": job.is_active,
        "error": job.error,
        "flag": job.get_flag_display() if job.flag else "",
        "flag_code": job.flag,
        "flag_detail": job.flag_detail,
        "can_collect": job.can_collect,
        "collect_blocked": job.collect_blocked_reason(),
        "progress": job.progress,
        "updated_at": job.updated_at.isoformat(),
    }
    if history:
        state["stages"] = [
            {
                "stage": s.stage,
                "at": s.at.isoformat(),
                "at_shown": shown(s.at),
                "message": s.message,
            }
            for s in job.stages.all()
        ]
        state["files"] = [{"name": f.name, "size": f.size} for f in job.result_files.all()]
    return state


@require_POST
def job_check(request, pk):
    """'Check NSG simulation': poll the account now (still no faster than NSG allows)."""
    job = _get_job(request, pk)
    if job.backend != Job.Backend.NSG:
        raise Http404("Only NSG jobs are checked with NSG.")
    account = NsgAccount.objects.filter(owner=job.owner).first()
    if account is None:
        messages.error(request, "No NSG account is stored for this job's owner.")
        return redirect(job)
    wait = 0.0
    if account.last_polled_at:
        wait = (
            account.poll_interval_seconds
            - (timezone.now() - account.last_polled_at).total_seconds()
        )
    if wait > 0:
        messages.info(
            request,
            f"NSG asks not to be polled more often than every {account.poll_interval_seconds:.0f} s: the next check runs in {wait:.0f} s.",
        )
    else:
        services.account_poll_request(account, force=True)
        messages.info(request, "Checking with NSG; the page updates by itself.")
    return redirect(job)


@require_POST
def job_collect(request, pk):
    job = _get_job(request, pk)
    queued, message = services.job_copy_to_storage(job)
    if queued or job.state == Job.State.COLLECTED:
        messages.info(request, message)
    else:
        messages.error(request, message)
    return redirect(job)


@require_POST
def job_cancel(request, pk):
    job = _get_job(request, pk)
    if not job.can_cancel:
        messages.error(request, "This job can no longer be cancelled.")
        return redirect(job)
    try:
        services.job_cancel(job)
    except NsgError as error:
        messages.error(request, f"NSG did not cancel the job: {error.display_message or error}")
        return redirect(job)
    if job.backend == Job.Backend.LOCAL:
        done = "Cancelling: the run and all its processes are being stopped."
    elif job.handle:
        done = "The job was cancelled and deleted at NSG."
    else:
        done = "The job was cancelled before NSG accepted it."
    messages.success(request, done)
    return redirect(job)


def job_delete(request, pk):
    """Delete a job with its stored files, after a confirmation page."""
    job = _get_job(request, pk)
    return confirm_delete(
        request,
        job,
        delete=lambda: job_delete_service(job),
        label=job.folder,
        done="nsg_app:jobs",
        template="nsg_app/delete.html",
        context={"job": job, "files": job.result_files.all(), "analyses": job.analyses.count()},
    )


@require_GET
def job_file(request, pk, name):
    job = _get_job(request, pk)
    result = get_object_or_404(ResultFile, job=job, name=name)
    try:
        handle = default_storage.open(result.storage_name, "rb")
    except OSError:
        raise Http404(f"{result.name} is no longer in storage.") from None
    return FileResponse(handle, as_attachment=True, filename=result.name)


# ----------------------------------------------------------------------------- submit


def _seed_asked(request) -> dict:
    """'Run again with this seed' links here with ?seed=N: the form starts with it."""
    seed = query_int(request.GET.get("seed"), maximum=MAX_SEED)
    return {} if seed is None else {"seed": seed}


def submit_nsg(request, package_pk):
    """'Run NSG simulation' for a run package."""
    package = get_object_or_404(
        RunPackage.objects.visible_to(request.user).select_related("optimisation"), pk=package_pk
    )
    if package.owner != request.user:
        raise Http404("Only the package's owner runs it.")
    account = _account(request.user)
    form = NsgSubmitForm(request.POST or None, initial=_seed_asked(request))
    refusal = package.optimisation.run_refusal()
    if refusal:
        return _refused(request, "nsg_app/submit.html", form, package, refusal, account=account)
    if request.method == "POST" and account is None:
        messages.error(request, "Log in to NSG first.")
        return redirect("nsg_app:account")
    if request.method == "POST" and form.is_valid():
        if _nsg_accepts(form, package, account):
            jobs = services.runs_create(
                services.job_create_nsg, owner=request.user, package=package, **form.cleaned_data
            )
            messages.success(request, f"Submitting {_runs_named(package, jobs)} to NSG.")
            _warn_over_limit(request, package, form.cleaned_data)
            return _to_runs(jobs)
    return render(
        request,
        "nsg_app/submit.html",
        {"form": form, "package": package, "account": account, **_cost(request, package, form)},
        status=400 if form.errors else 200,
    )


def _runs_named(package, jobs: list[Job]) -> str:
    if len(jobs) == 1:
        # The job page's title is the run's folder; the package's name is a date-time too,
        # seconds apart, so the message names both and says which is which.
        return f"{jobs[0].folder}, a run of package {package.run_name},"
    seeds = ", ".join(str(job.seed) for job in jobs)
    return f"{len(jobs)} runs of {package.run_name} (seeds {seeds})"


def _to_runs(jobs: list[Job]):
    """One run: its page; several: the first one's, which lists them all."""
    return redirect(jobs[0])


def _nsg_accepts(form: NsgSubmitForm, package, account: NsgAccount) -> bool:
    """NSG's own check of the submission, its errors put next to our fields."""
    fields = {name: value for name, value in form.cleaned_data.items() if name != "seeds"}
    try:
        services.nsg_submission_check(account=account, package=package, **fields)
    except services.SubmissionRefused as refused:
        for param, message in refused.param_errors.items():
            form.add_error(VPARAM_FIELDS.get(param), f"NSG: {message}")
        if not refused.param_errors:
            form.add_error(None, str(refused))
        return False
    return True


def submit_local(request, package_pk):
    """'Run here': the package on this machine, in the background."""
    package = get_object_or_404(
        RunPackage.objects.filter(owner=request.user).select_related("optimisation"), pk=package_pk
    )
    form = LocalRunForm(request.POST or None, initial=_seed_asked(request))
    refusal = package.optimisation.run_refusal()
    cluster = services.local_cluster()
    if refusal:
        return _refused(
            request, "nsg_app/submit_local.html", form, package, refusal, cluster=cluster
        )
    if request.method == "POST" and form.is_valid():
        jobs = services.runs_create(
            services.job_create_local, owner=request.user, package=package, **form.cleaned_data
        )
        messages.success(request, f"Running {_runs_named(package, jobs)} on this machine.")
        _warn_over_limit(request, package, _run_here_values(form.cleaned_data, cluster))
        return _to_runs(jobs)
    return render(
        request,
        "nsg_app/submit_local.html",
        {
            "form": form,
            "package": package,
            "cluster": cluster,
            "cost": _estimate(request, package, _run_here_values(_form_values(form), cluster)),
        },
        status=400 if form.errors else 200,
    )


def _run_here_values(values, cluster: services.ClusterState | None) -> dict:
    """The run's shape for the forecast: on a cluster, every engine evaluates at once,
    whatever the Cores field says (the runner does not use it)."""
    shape = {name: values[name] for name in COST_FIELDS if name in values}
    if cluster is not None and cluster.engines:
        shape["cores_per_node"] = cluster.engines
    return shape


def _refused(request, template: str, form, package, refusal: str, **context):
    """The submit page with the reason the package cannot run, and its button disabled."""
    return render(
        request,
        template,
        {"form": form, "package": package, "refusal": refusal, **context},
        status=400 if request.method == "POST" else 200,
    )


# ----------------------------------------------------------------------------- cost


def _run_shape(values) -> tuple[int, int, float] | None:
    """(nodes, cores per node, runtime hours) from form or query values; None if unusable."""
    nodes = query_int(values.get("nodes", "1"), minimum=1, maximum=MAX_NODES)
    cores = query_int(values.get("cores_per_node"), minimum=1, maximum=MAX_CORES_ESTIMATED)
    try:
        runtime = float(values.get("runtime_hours"))
    except (TypeError, ValueError):
        return None
    if nodes is None or cores is None or not 0 < runtime < float("inf"):
        return None
    return nodes, cores, runtime


MAX_CORES_ESTIMATED = 10_000


def _estimate(request, package, values) -> dict:
    shape = _run_shape(values)
    if shape is None:
        return {"summary": "", "warning": "", "measured": ""}
    cost, measured = services.package_run_cost(
        package=package,
        owner=request.user,
        nodes=shape[0],
        cores_per_node=shape[1],
        runtime_hours=shape[2],
    )
    if cost is None:
        return {
            "summary": "",
            "warning": "",
            "measured": "No time per evaluation of this model is measured yet: run it here "
            "once, or analyse a run of it, to see the expected wall time and core-hours.",
        }
    return {
        "summary": cost.summary,
        "warning": cost.warning,
        "measured": f"From {measured.seconds:.1f} s per evaluation on one core, measured by "
        f"{measured.source} on this machine.",
    }


COST_FIELDS = ("nodes", "cores_per_node", "runtime_hours")


def _form_values(form) -> dict:
    """The run's shape as the form stands (its initial values before anything is typed)."""
    return {name: form[name].value() for name in COST_FIELDS if name in form.fields}


def _cost(request, package, form) -> dict:
    return {"cost": _estimate(request, package, _form_values(form))}


def _warn_over_limit(request, package, values) -> None:
    warning = _estimate(request, package, values)["warning"]
    if warning:
        messages.warning(request, f"Expected to take too long. {warning}")


@require_GET
def run_cost(request, package_pk):
    """The expected cost for the submit pages, as their fields change."""
    package = get_object_or_404(
        RunPackage.objects.filter(owner=request.user).select_related("optimisation"),
        pk=package_pk,
    )
    values = request.GET
    if values.get("where") == "here":
        values = _run_here_values(values, services.local_cluster())
    return JsonResponse(_estimate(request, package, values))
