import json

import plotly.graph_objects as go
import plotly.io as pio
from django.contrib import messages
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from models_app import services
from models_app.bpo.continuation import RESUME_NOTE, CannotContinue
from models_app.bpo.features import feature_rows
from models_app.bpo.package import InvalidPackageRequest, init_script, max_ngen_warning
from models_app.bpo.parameters import (
    InvalidBounds,
    bound_field,
    parameter_table,
    unphysical_bounds,
    validate_bounds,
)
from models_app.bpo.protocols import stimulus_traces
from models_app.bpo.source import source_files
from models_app.forms import ContinueForm, RunSettingsForm, UploadForm
from models_app.highlight import highlighted, stylesheet
from models_app.models import Optimisation, ParameterSet, RepositoryRefresh, RunPackage
from rebuild_site.access import staff_required
from rebuild_site.query import query_int, query_text
from rebuild_site.views import confirm_delete


def _get_optimisation(request, pk) -> Optimisation:
    return get_object_or_404(Optimisation.objects.visible_to(request.user), pk=pk)


def _get_version(request, optimisation, number) -> ParameterSet | None:
    if number in (None, ""):
        return None
    number = query_int(number, minimum=1)
    if number is None:
        raise Http404("No such parameter version.")
    return get_object_or_404(
        ParameterSet.objects.filter(optimisation=optimisation, owner=request.user), version=number
    )


# ----------------------------------------------------------------------------- catalogue


def catalogue(request, upload_form=None, status=200):
    visible = Optimisation.objects.visible_to(request.user).select_related("owner")
    models = visible
    cell_type = query_text(request.GET.get("cell_type"))
    etype = query_text(request.GET.get("etype"))
    query = query_text(request.GET.get("q"))
    if cell_type:
        models = models.filter(cell_type=cell_type)
    if etype:
        models = models.filter(etype=etype)
    if query:
        models = models.filter(
            Q(name__icontains=query)
            | Q(morphology__icontains=query)
            | Q(contributors__icontains=query)
            | Q(etype__icontains=query)
            | Q(species__icontains=query)
        )
    context = {
        "models": models,
        "cell_types": sorted(
            set(visible.exclude(cell_type="").values_list("cell_type", flat=True))
        ),
        "etypes": sorted(set(visible.exclude(etype="").values_list("etype", flat=True))),
        "selected": {"cell_type": cell_type, "etype": etype, "q": query},
        "upload_form": upload_form or UploadForm(),
        "refresh": RepositoryRefresh.objects.first() if request.user.is_staff else None,
    }
    return render(request, "models_app/catalogue.html", context, status=status)


@require_POST
def upload(request):
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return catalogue(request, upload_form=form, status=400)
    try:
        outcome = services.optimisation_import(
            source=form.cleaned_data["archive"], kind=Optimisation.Source.UPLOAD, owner=request.user
        )
    except services.ImportFailed as error:
        form.add_error("archive", error.summary + ".")
        for problem in error.problems:
            form.add_error("archive", problem)
        return catalogue(request, upload_form=form, status=400)
    messages.success(
        request,
        f"Imported {outcome.optimisation.name}. It is visible to you only until staff publish it.",
    )
    return redirect(outcome.optimisation)


@require_POST
@staff_required
def refresh(request):
    if RepositoryRefresh.objects.filter(status__in=["queued", "running"]).exists():
        messages.info(request, "A refresh from the repository is already running.")
        return redirect("models_app:catalogue")
    services.repository_refresh_request(started_by=request.user)
    messages.info(request, "Refreshing from the repository; progress shows below.")
    return redirect("models_app:catalogue")


@require_GET
@staff_required
def refresh_status(request, pk):
    refresh = get_object_or_404(RepositoryRefresh, pk=pk)
    return JsonResponse(
        {
            "status": refresh.status,
            "done": refresh.done,
            "total": refresh.total,
            "percent": refresh.percent,
            "imported": refresh.imported,
            "unchanged": refresh.unchanged,
            "problems": refresh.problems,
            "error": refresh.error,
            "active": refresh.active,
        }
    )


@require_POST
@staff_required
def publish(request, pk):
    optimisation = get_object_or_404(Optimisation, pk=pk)
    optimisation.published = request.POST.get("published") == "1"
    optimisation.save(update_fields=["published", "updated_at"])
    messages.success(
        request,
        f"{optimisation.name} is now {'published' if optimisation.published else 'private'}.",
    )
    return redirect(optimisation)


# ----------------------------------------------------------------------------- detail


def _stimulus_figures(optimisation) -> list[dict]:
    figures = []
    for trace in stimulus_traces(optimisation.protocols):
        figure = go.Figure(
            go.Scatter(
                x=trace.time, y=trace.current, mode="lines", name=trace.protocol, line={"width": 2}
            )
        )
        figure.update_layout(
            title={"text": trace.protocol, "font": {"size": 14}},
            height=220,
            margin={"l": 50, "r": 10, "t": 35, "b": 40},
            xaxis_title="time (ms)",
            yaxis_title="current (nA)",
            template="plotly_white",
        )
        figures.append({"protocol": trace.protocol, "spec": json.loads(pio.to_json(figure))})
    return figures


def detail(
    request, pk, *, bound_errors=None, bound_values=None, settings_form=None, tab=None, status=200
):
    optimisation = _get_optimisation(request, pk)
    version = _get_version(
        request, optimisation, request.GET.get("version") or request.POST.get("version")
    )
    parameters = version.parameters[optimisation.key] if version else optimisation.parameters
    table = parameter_table(parameters)
    bound_errors = bound_errors or {}
    bound_values = bound_values or {}
    rows = []
    for parameter in table.optimised:
        lower_field = bound_field(parameter.section, parameter.name, "lower")
        upper_field = bound_field(parameter.section, parameter.name, "upper")
        rows.append(
            {
                "parameter": parameter,
                "lower_field": lower_field,
                "upper_field": upper_field,
                "lower": bound_values.get(lower_field, parameter.lower),
                "upper": bound_values.get(upper_field, parameter.upper),
                "lower_error": bound_errors.get(lower_field),
                "upper_error": bound_errors.get(upper_field),
                "row_error": bound_errors.get(f"{parameter.section}.{parameter.name}"),
                "unit": parameter.unit,
            }
        )
    versions = ParameterSet.objects.filter(optimisation=optimisation, owner=request.user)
    # Staff see every user's versions of this model, with what each changed.
    users_versions = (
        ParameterSet.objects.filter(optimisation=optimisation)
        .exclude(owner=request.user)
        .select_related("owner")
        .order_by("owner__username", "version")
        if request.user.is_staff
        else ParameterSet.objects.none()
    )
    packages = (
        RunPackage.objects.visible_to(request.user)
        .filter(optimisation=optimisation)
        .select_related("parameter_set", "owner")
    )
    built = _built_package(request, optimisation)
    initial = {"version": version.version if version else None}
    if built is not None:  # the settings keep what the user just built
        initial.update(offspring_size=built.offspring_size, max_ngen=built.max_ngen)
    form = settings_form or RunSettingsForm(initial=initial)
    context = {
        "optimisation": optimisation,
        "version": version,
        "versions": versions,
        "users_versions": users_versions,
        "features": feature_rows(optimisation.features),
        "stimulus_figures": _stimulus_figures(optimisation),
        "rows": rows,
        "fixed": table.fixed,
        "distributions": table.distributions,
        "mechanisms": sorted(parameters.get("mechanisms", {}).items()),
        "bound_errors": bound_errors,
        "settings_form": form,
        "packages": packages,
        "built_package": built,
        "tab": tab or request.GET.get("tab", "features"),
    }
    return render(request, "models_app/detail.html", context, status=status)


@require_POST
def save_parameters(request, pk):
    optimisation = _get_optimisation(request, pk)
    base = _get_version(request, optimisation, request.POST.get("version"))
    table = parameter_table(base.parameters[optimisation.key] if base else optimisation.parameters)
    submitted = []
    values = {}
    for parameter in table.optimised:
        lower_field = bound_field(parameter.section, parameter.name, "lower")
        upper_field = bound_field(parameter.section, parameter.name, "upper")
        lower = request.POST.get(lower_field, "")
        upper = request.POST.get(upper_field, "")
        values[lower_field], values[upper_field] = lower, upper
        submitted.append((parameter.section, parameter.name, lower, upper))
    errors = validate_bounds(submitted)
    if not errors:
        try:
            saved = services.parameter_set_save(
                optimisation=optimisation, owner=request.user, bounds=submitted, base=base
            )
        except InvalidBounds as error:
            errors = error.errors
        except services.NothingChanged as unchanged:
            messages.info(
                request,
                f"Nothing was saved: these bounds are those of {unchanged.base_label}.",
            )
            return redirect(
                f"{reverse('models_app:detail', args=[pk])}?tab=parameters"
                + (f"&version={base.version}" if base else "")
            )
    if errors:
        messages.error(request, "The parameters were not saved: correct the fields marked below.")
        return detail(
            request, pk, bound_errors=errors, bound_values=values, tab="parameters", status=400
        )
    changed = len(saved.changes)
    messages.success(
        request,
        f"Saved parameters version {saved.version} ({changed} bound{'s' if changed != 1 else ''} changed from the original).",
    )
    for warning in unphysical_bounds(submitted):
        messages.warning(request, warning)
    return redirect(
        f"{reverse('models_app:detail', args=[pk])}?version={saved.version}&tab=parameters"
    )


@require_POST
def create_package(request, pk):
    optimisation = _get_optimisation(request, pk)
    form = RunSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The zip file was not created: correct the optimisation settings.")
        return detail(request, pk, settings_form=form, tab="optimisation", status=400)
    version = _get_version(request, optimisation, form.cleaned_data.get("version"))
    try:
        package = services.package_create(
            optimisation=optimisation,
            owner=request.user,
            parameter_set=version,
            offspring_size=form.cleaned_data["offspring_size"],
            max_ngen=form.cleaned_data["max_ngen"],
        )
    except InvalidPackageRequest as error:
        for problem in error.problems:
            form.add_error(None, problem)
        return detail(request, pk, settings_form=form, tab="optimisation", status=400)
    messages.success(request, f"Created {package.filename}.")
    warning = max_ngen_warning(package.max_ngen)
    if warning:
        messages.warning(request, warning)
    return redirect(
        f"{reverse('models_app:detail', args=[pk])}?tab=optimisation&package={package.pk}"
        + (f"&version={version.version}" if version else "")
    )


def continue_published(request, pk):
    """ "Continue" the catalogue model's own published run (its best checkpoint)."""
    return _continue(request, _get_optimisation(request, pk), job=None)


def continue_job(request, job_pk):
    """ "Continue" a run of the user's own, from the checkpoint in its stored results."""
    from nsg_app.models import Job

    job = get_object_or_404(
        Job.objects.filter(owner=request.user, package__isnull=False).select_related(
            "package__optimisation"
        ),
        pk=job_pk,
    )
    return _continue(request, job.package.optimisation, job=job)


def _continue(request, optimisation, *, job):
    context = {"optimisation": optimisation, "job": job, "resume_note": RESUME_NOTE}
    try:
        found = services.continuation_read(optimisation=optimisation, job=job)
    except CannotContinue as error:
        context["refusal"] = error.problems
        status = 400 if request.method == "POST" else 200
        return render(request, "models_app/continue.html", context, status=status)
    form = ContinueForm(request.POST or None, stored_generation=found.generation)
    context.update(form=form, found=found)
    if request.method == "POST" and form.is_valid():
        try:
            package = services.package_continue_create(
                optimisation=optimisation,
                owner=request.user,
                max_ngen=form.cleaned_data["max_ngen"],
                job=job,
            )
        except (CannotContinue, InvalidPackageRequest) as error:
            for problem in error.problems:
                form.add_error(None, problem)
        else:
            messages.success(
                request,
                f"Created {package.filename}: it continues {found.source} from generation "
                f"{found.generation} up to generation {package.max_ngen}.",
            )
            backend = form.cleaned_data["backend"]
            return redirect(
                "nsg_app:submit_nsg" if backend == "nsg" else "nsg_app:submit_local", package.pk
            )
    status = 400 if form.errors else 200
    return render(request, "models_app/continue.html", context, status=status)


def _built_package(request, optimisation) -> RunPackage | None:
    """The package named by ?package= (the one just built), if the user may see it."""
    number = query_int(request.GET.get("package"), minimum=1)
    if number is None:
        return None
    return (
        RunPackage.objects.visible_to(request.user)
        .filter(optimisation=optimisation, pk=number)
        .first()
    )


@require_GET
def package_download(request, pk):
    package = get_object_or_404(RunPackage.objects.visible_to(request.user), pk=pk)
    try:
        handle = default_storage.open(package.file, "rb")
    except OSError:
        raise Http404(f"{package.filename} is no longer in storage.") from None
    return FileResponse(
        handle, as_attachment=True, filename=package.filename, content_type="application/zip"
    )


@require_GET
def source(request, pk):
    """The package's source files, highlighted (loaded when the panel is first opened)."""
    optimisation = _get_optimisation(request, pk)
    built = _built_package(request, optimisation)
    if built is not None:  # the package just built, exactly as it is stored
        with services.package_folder(built) as root:
            files = _highlighted_files(root)
        return render(
            request,
            "models_app/source.html",
            {"files": files, "stylesheet": stylesheet(), "package": built},
        )
    form = RunSettingsForm(request.GET)
    offspring, generations = 10, 2
    if form.is_valid():
        offspring, generations = form.cleaned_data["offspring_size"], form.cleaned_data["max_ngen"]
    files = [
        {
            "path": "init.py",
            "html": highlighted(
                init_script(offspring_size=offspring, max_ngen=generations), "python"
            ),
            "truncated": False,
        }
    ]
    with services.optimisation_folder(optimisation) as root:
        files += [file for file in _highlighted_files(root) if file["path"] != "init.py"]
    return render(request, "models_app/source.html", {"files": files, "stylesheet": stylesheet()})


def _highlighted_files(root) -> list[dict]:
    return [
        {
            "path": source_file.path,
            "html": highlighted(source_file.text, source_file.language),
            "truncated": source_file.truncated,
        }
        for source_file in source_files(root)
    ]


# ----------------------------------------------------------------------------- delete


def upload_delete(request, pk):
    """Delete the user's own upload with its stored files, after a confirmation page."""
    uploads = Optimisation.objects.filter(source=Optimisation.Source.UPLOAD, owner__isnull=False)
    if not request.user.is_staff:
        uploads = uploads.filter(owner=request.user)
    optimisation = get_object_or_404(uploads.select_related("owner"), pk=pk)
    return confirm_delete(
        request,
        optimisation,
        delete=lambda: services.upload_delete(optimisation),
        label=optimisation.name,
        done="models_app:catalogue",
        template="models_app/delete.html",
        context={
            "optimisation": optimisation,
            "files": services.upload_stored_files(optimisation),
            "packages": optimisation.packages.count(),
            "versions": optimisation.parameter_sets.count(),
            "analyses": optimisation.analyses.count(),
            "refusal": services.upload_delete_refusal(optimisation),
        },
    )
