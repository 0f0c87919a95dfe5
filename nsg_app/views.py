from django.shortcuts import render


def jobs(request):
    return render(request, "nsg_app/jobs.html", {})


def account(request):
    return render(request, "nsg_app/account.html", {})
