from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from rebuild_site.access import staff_required
from rebuild_site.deletion import DeleteRefused
from rebuild_site.health import run_checks


def home(request):
    return redirect("models_app:catalogue")


@staff_required
def health(request):
    checks = run_checks()
    status = 200 if all(check.ok for check in checks) else 503
    return render(request, "health.html", {"checks": checks}, status=status)


def confirm_delete(
    request: HttpRequest,
    target: Any,
    *,
    delete: Callable[[], int],
    label: str,
    done: str,
    template: str,
    context: dict[str, Any],
) -> HttpResponse:
    """GET (or a POST without the confirmation) shows ``template``, which says what a
    delete removes; a confirmed POST calls ``delete`` (it returns the number of stored
    files removed, or raises DeleteRefused) and goes to ``done`` (a URL name), or back to
    ``target``'s page with the refusal. ``label`` names the target in the message: once it
    is deleted, the row no longer can."""
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            removed = delete()
        except DeleteRefused as error:
            messages.error(request, f"Not deleted: {error}")
            return redirect(target)
        messages.success(request, f"{label} was deleted, with its {removed} stored file(s).")
        return redirect(done)
    return render(request, template, context, status=400 if request.method == "POST" else 200)
