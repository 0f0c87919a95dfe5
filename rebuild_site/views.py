from django.shortcuts import redirect, render

from rebuild_site.access import staff_required
from rebuild_site.health import run_checks


def home(request):
    return redirect("models_app:catalogue")


@staff_required
def health(request):
    checks = run_checks()
    status = 200 if all(check.ok for check in checks) else 503
    return render(request, "health.html", {"checks": checks}, status=status)
