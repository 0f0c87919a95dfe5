from django.shortcuts import render


def analyses(request):
    return render(request, "analysis_app/analyses.html", {})
