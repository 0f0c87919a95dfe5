import json
from urllib.parse import urlencode

import plotly.io as pio
from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from analysis_app import services
from analysis_app.engine import compare
from analysis_app.engine.figures import FIGURE_NAMES, FigureExportError
from analysis_app.forms import AnalysisSourceForm
from analysis_app.models import Analysis, SavedComparison
from models_app.models import Optimisation
from nsg_app.models import Job
from nsg_app.services import seed_runs
from rebuild_site.query import query_int, query_text
from rebuild_site.views import confirm_delete

FIGURE_TITLES = {
    "morphology": "Morphology",
    "morphology_3d": "Morphology in 3D",
    "evolution": "Evolution",
    "objectives": "Objectives",
    "traces": "Traces",
    "parameters": "Parameters",
    "features": "Features",
}


_UNREADABLE = (
    "The stored analysis cannot be read: its analysis.json is missing from storage or damaged."
)


def _get_analysis(request, pk) -> Analysis:
    return get_object_or_404(
        Analysis.objects.visible_to(request.user).select_related("owner", "job", "optimisation"),
        pk=pk,
    )


def _get_done_analysis(request, pk) -> Analysis:
    analysis = _get_analysis(request, pk)
    if analysis.status != Analysis.Status.DONE:
        raise Http404("The analysis is not finished.")
    return analysis


def _individual(request) -> int:
    individual = query_int(request.GET.get("individual", "0"))
    if individual is None:
        raise Http404("No such individual.")
    return individual


# ----------------------------------------------------------------------------- choose


def analyses(request):
    """Choose what to analyse ("View analysis"); the user's analyses and saved analyses."""
    form = AnalysisSourceForm(
        request.POST or None,
        request.FILES or None,
        user=request.user,
        initial=_initial_choice(request),
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        analysis = services.analysis_create(
            owner=request.user,
            source_kind=data["source"],
            top=data["top"],
            job=data["job"],
            optimisation=data["optimisation"],
            checkpoint=data.get("checkpoint") or "",
            uploads=form.uploaded() if data["source"] == Analysis.Source.UPLOAD else None,
        )
        return redirect(analysis)
    rows = Analysis.objects.visible_to(request.user).select_related("owner", "job", "optimisation")
    comparisons = (
        SavedComparison.objects.visible_to(request.user)
        .select_related("owner")
        .prefetch_related("analyses")
    )
    return render(
        request,
        "analysis_app/analyses.html",
        {
            "form": form,
            "analyses": rows.exclude(save_status=Analysis.SaveStatus.SAVED)[:100],
            "saved": rows.filter(save_status=Analysis.SaveStatus.SAVED).order_by("-saved_at"),
            "comparisons": [_comparison_row(saved) for saved in comparisons],
            "upload_max": settings.UPLOAD_MAX_BYTES,
        },
        status=400 if form.errors else 200,
    )


def _initial_choice(request) -> dict:
    """``?job=<pk>`` (the jobs' "Analyse" button) preselects that job, when it is theirs."""
    job = query_int(request.GET.get("job"), minimum=1)
    if job is not None:
        return {"source": Analysis.Source.JOB, "job": job}
    model = query_int(request.GET.get("optimisation"), minimum=1)
    if model is not None:
        # The catalogue's "Analyse" link: that model, its best run preselected.
        found = Optimisation.objects.visible_to(request.user).filter(pk=model).first()
        if found is not None:
            return {
                "source": Analysis.Source.CATALOGUE,
                "optimisation": found.pk,
                "checkpoint": f"{found.pk}:{found.best_checkpoint}",
            }
    if not Job.objects.visible_to(request.user).filter(state=Job.State.COLLECTED).exists():
        return {"source": Analysis.Source.CATALOGUE}
    return {}


# ----------------------------------------------------------------------------- one analysis


def analysis(request, pk):
    analysis = _get_analysis(request, pk)
    context = {
        "analysis": analysis,
        "document": None,
        "seed_runs": seed_runs(analysis.job) if analysis.job else [],
    }
    if analysis.status == Analysis.Status.DONE:
        try:
            document = services.analysis_document(analysis=analysis)
        except (OSError, ValueError):
            context["unreadable"] = _UNREADABLE
            return render(request, "analysis_app/analysis.html", context)
        context.update(
            document=document,
            individuals=[_with_shown_difference(i) for i in document["individuals"]],
            save_parent=services.saved_folder(analysis).rsplit("/", 1)[0],
            # The name a refused save offered (checked again: it may be taken since).
            free_folder=services.free_saved_folder(
                analysis, query_text(request.GET.get("folder")) or None
            ),
            large_difference=any(i["fitness"]["large_difference"] for i in document["individuals"]),
            figures=[
                (name, FIGURE_TITLES[name])
                for name in FIGURE_NAMES
                if name not in ("morphology", "morphology_3d")
                or document["model"].get("morphology_file")
            ],
        )
    return render(request, "analysis_app/analysis.html", context)


def _with_shown_difference(individual: dict) -> dict:
    relative = individual["fitness"].get("relative_difference")
    shown = "" if relative is None else f"{relative:.2%}"
    return {**individual, "fitness": {**individual["fitness"], "relative_shown": shown}}


@require_GET
def analysis_status(request, pk):
    analysis = _get_analysis(request, pk)
    progress = analysis.progress or {}
    total = progress.get("protocols_total") or 0
    done = progress.get("protocols_done") or 0
    state = {
        "id": analysis.pk,
        "status": analysis.status,
        "status_label": analysis.get_status_display(),
        "active": analysis.is_active,
        "stage": progress.get("stage") or _DEFAULT_STAGES[analysis.status],
        "message": progress.get("message", ""),
        "protocols_done": done,
        "protocols_total": total,
        "percent": 100 if analysis.status == Analysis.Status.DONE else _percent(done, total),
        "save_status": analysis.save_status,
        "saved_to": analysis.saved_to,
        "save_error": analysis.save_error,
    }
    if analysis.status == Analysis.Status.FAILED:
        state["error"] = {
            "kind": analysis.error_kind,
            "title": analysis.error_title,
            "message": analysis.error_message,
        }
    return JsonResponse(state)


_DEFAULT_STAGES = {"queued": "queued", "running": "starting", "done": "done", "failed": "failed"}


def _percent(done: int, total: int) -> int:
    return int(100 * done / total) if total else 0


@require_GET
def analysis_figures(request, pk):
    """Every figure of the analysis as Plotly JSON, for the page to draw."""
    analysis = _get_done_analysis(request, pk)
    try:
        built = services.analysis_figures(analysis=analysis, individual=_individual(request))
    except KeyError:
        raise Http404("No such individual.") from None
    except (OSError, ValueError):
        raise Http404(_UNREADABLE) from None
    # Plotly serialises its figures (numpy arrays included) itself: joined, not re-parsed.
    parts = [f"{json.dumps(name)}: {pio.to_json(figure)}" for name, figure in built.items()]
    return HttpResponse('{"figures": {' + ", ".join(parts) + "}}", content_type="application/json")


@require_GET
def analysis_figure_download(request, pk, name, kind):
    analysis = _get_done_analysis(request, pk)
    individual = _individual(request)
    if name not in FIGURE_NAMES:
        raise Http404("No such figure.")
    try:
        content = services.analysis_figure_file(
            analysis=analysis, name=name, kind=kind, individual=individual
        )
    except KeyError:
        raise Http404("No such figure.") from None
    except (OSError, ValueError):
        raise Http404(_UNREADABLE) from None
    except FigureExportError as error:
        return HttpResponse(
            f"The figure could not be made as {kind.upper()}: {error}",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    suffix = "" if individual == 0 else f"_top{individual + 1}"
    response = HttpResponse(content, content_type="image/png" if kind == "png" else "text/html")
    filename = f"{analysis.folder or 'analysis'}_{name}{suffix}.{kind}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
def analysis_file(request, pk, name):
    analysis = _get_done_analysis(request, pk)
    try:
        handle = services.analysis_file_open(analysis=analysis, name=name)
    except (KeyError, OSError):
        raise Http404("No such file.") from None
    filename = name.rsplit("/", 1)[-1]
    if name.startswith("traces/"):
        filename = f"{name.split('/')[1]}_{filename}"
    return FileResponse(handle, as_attachment=True, filename=filename)


@require_GET
def analysis_traces(request, pk, label):
    analysis = _get_done_analysis(request, pk)
    try:
        archive = services.analysis_traces_zip(analysis=analysis, label=label)
    except (KeyError, OSError):
        raise Http404("No such traces.") from None
    return FileResponse(
        archive, as_attachment=True, filename=f"{analysis.folder or 'analysis'}_{label}_traces.zip"
    )


@require_POST
def analysis_save(request, pk):
    """ "Save analysis": a copy under BluePyOptAnalysis/<user>/<folder>/, never overwriting."""
    analysis = _get_analysis(request, pk)
    if analysis.owner_id != request.user.pk:
        messages.error(request, "Only the analysis' owner can save it (into their own folder).")
        return redirect(analysis)
    try:
        prefix = services.analysis_save_start(
            analysis=analysis, name=request.POST.get("folder", "")[:500]
        )
    except services.SaveRefused as error:
        messages.error(request, f"Not saved: {error}")
        if error.suggested:  # the page fills in the free name the message offers
            return redirect(
                f"{analysis.get_absolute_url()}?{urlencode({'folder': error.suggested})}"
            )
    else:
        messages.info(request, f"Saving the analysis to {prefix}/ (figures as HTML and PNG).")
    return redirect(analysis)


def analysis_delete(request, pk):
    """Delete an analysis with its stored files, after a confirmation page."""
    analysis = _get_analysis(request, pk)
    return confirm_delete(
        request,
        analysis,
        delete=lambda: services.analysis_delete(analysis),
        label=str(analysis),
        done="analysis_app:analyses",
        template="analysis_app/delete.html",
        context={
            "analysis": analysis,
            "files": services.analysis_stored_files(analysis),
            "refusal": services.analysis_delete_refusal(analysis),
        },
    )


# ----------------------------------------------------------------------------- compare

COMPARE_FIGURE_TITLES = {
    "objectives": "Objectives",
    "traces": "Traces",
    "parameters": "Parameters",
    "features": "Features",
}


def _compared(request, data) -> tuple[list[Analysis], list[compare.Compared], dict]:
    """The chosen analyses (``analysis=<id>`` repeated), their documents and comparison;
    CompareRefused says what is wrong with the choice."""
    ids = [query_int(raw, minimum=1) for raw in data.getlist("analysis")]
    chosen = services.comparison_analyses(user=request.user, ids=ids)
    entries = services.comparison_entries(chosen)
    return chosen, entries, compare.comparison(entries)


def _compare_query(chosen: list[Analysis], **extra: str) -> str:
    return urlencode([("analysis", analysis.pk) for analysis in chosen] + list(extra.items()))


@require_GET
def compare_analyses(request):
    """Two or more done analyses side by side (their best individuals)."""
    try:
        chosen, entries, compared = _compared(request, request.GET)
    except compare.CompareRefused as error:
        return render(request, "analysis_app/compare.html", {"refusal": str(error)}, status=400)
    rows = [
        {
            **row,
            "cells": [
                {"shown": shown, "best": row["best"] == index}
                for index, shown in enumerate(row["shown"])
            ],
        }
        for row in compared["objectives"]
    ]
    query = _compare_query(chosen)
    return render(
        request,
        "analysis_app/compare.html",
        {
            "saved_comparisons": services.saved_comparisons_of(user=request.user, analyses=chosen),
            "analyses": list(zip(chosen, compared["fitness"], compare.PALETTE, strict=False)),
            "compared": compared,
            "rows": rows,
            "query": query,
            "figures": list(COMPARE_FIGURE_TITLES.items()),
            "save_parent": f"{services.SAVED_PREFIX}/{request.user.get_username()}",
            "free_folder": services.free_comparison_folder(
                request.user, chosen, query_text(request.GET.get("folder")) or None
            ),
        },
    )


@require_GET
def compare_figures(request):
    """The comparison's figures as Plotly JSON, for the page to draw."""
    try:
        _, entries, compared = _compared(request, request.GET)
    except compare.CompareRefused as error:
        return JsonResponse({"error": str(error)}, status=400)
    built = compare.comparison_figures(entries, compared)
    parts = [f"{json.dumps(name)}: {pio.to_json(figure)}" for name, figure in built.items()]
    return HttpResponse('{"figures": {' + ", ".join(parts) + "}}", content_type="application/json")


@require_POST
def compare_save(request):
    """ "Save comparison": claims BluePyOptAnalysis/<user>/compare-<names>/ (never an existing
    folder) and queues its writing; the compare page then says where it is being saved."""
    try:
        chosen, _, _ = _compared(request, request.POST)
    except compare.CompareRefused as error:
        messages.error(request, f"Not saved: {error}")
        return redirect("analysis_app:analyses")
    page = reverse("analysis_app:compare")
    try:
        saved = services.comparison_save_start(
            owner=request.user, analyses=chosen, name=request.POST.get("folder", "")[:500]
        )
    except services.SaveRefused as error:
        messages.error(request, f"Not saved: {error}")
        extra = {"folder": error.suggested} if error.suggested else {}
        return redirect(f"{page}?{_compare_query(chosen, **extra)}")
    messages.info(
        request,
        f"Saving the comparison to {saved.saved_to}/ (comparison.json and the figures as "
        "HTML and PNG).",
    )
    return redirect(f"{page}?{_compare_query(chosen)}")


# ----------------------------------------------------------------------------- saved comparisons


def _get_comparison(request, pk) -> SavedComparison:
    return get_object_or_404(SavedComparison.objects.visible_to(request.user), pk=pk)


def _comparison_row(saved: SavedComparison) -> dict:
    """What the "Saved comparisons" table shows of one: each analysis compared (with its
    page while it exists), "Open" while they all exist and are done, and the files."""
    existing = {analysis.pk: analysis for analysis in saved.analyses.all()}
    compared = [{**entry, "analysis": existing.get(entry["id"])} for entry in saved.compared]
    openable = all(
        entry["analysis"] is not None and entry["analysis"].status == Analysis.Status.DONE
        for entry in compared
    )
    return {
        "saved": saved,
        "compared": compared,
        "open_url": (
            f"{reverse('analysis_app:compare')}?"
            + urlencode([("analysis", pk) for pk in saved.compared_ids])
            if openable
            else ""
        ),
        "files": _comparison_files(saved),
    }


def _comparison_files(saved: SavedComparison) -> list[tuple[str, list[tuple[str, str]]]]:
    """The saved files as (label, [(kind, name)]): comparison.json, then each figure's
    HTML and PNG."""
    files = set(saved.files)
    shown = []
    if services.COMPARISON_FILE in files:
        shown.append((services.COMPARISON_FILE, [("JSON", services.COMPARISON_FILE)]))
    for name, title in COMPARE_FIGURE_TITLES.items():
        kinds = [
            (kind.upper(), f"{services.FIGURES_DIR}/{name}.{kind}")
            for kind in ("html", "png")
            if f"{services.FIGURES_DIR}/{name}.{kind}" in files
        ]
        if kinds:
            shown.append((title, kinds))
    return shown


@require_GET
def comparison_status(request, pk):
    """Where a saved comparison stands, for the pages that wait for it."""
    saved = _get_comparison(request, pk)
    return JsonResponse(
        {
            "id": saved.pk,
            "status": saved.status,
            "status_label": saved.get_status_display(),
            "saved_to": saved.saved_to,
            "error": saved.error,
        }
    )


@require_GET
def comparison_file(request, pk, name):
    saved = _get_comparison(request, pk)
    try:
        handle = services.comparison_file_open(saved=saved, name=name)
    except (KeyError, OSError):
        raise Http404("No such file.") from None
    filename = f"{saved.folder}_{name.rsplit('/', 1)[-1]}"
    return FileResponse(handle, as_attachment=True, filename=filename)


def comparison_delete(request, pk):
    """Delete a saved comparison with its saved folder, after a confirmation page."""
    saved = _get_comparison(request, pk)
    return confirm_delete(
        request,
        saved,
        delete=lambda: services.comparison_delete(saved),
        label=f"The saved comparison {saved.saved_to}/",
        done="analysis_app:analyses",
        template="analysis_app/comparison_delete.html",
        context={
            "saved": saved,
            "files": services.comparison_stored_files(saved),
            "refusal": services.comparison_delete_refusal(saved),
        },
    )
