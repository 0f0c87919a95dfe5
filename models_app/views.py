from django.shortcuts import render


def catalogue(request):
    return render(request, "models_app/catalogue.html", {"models": []})
