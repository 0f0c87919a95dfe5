from django.contrib import admin

from models_app.models import Optimisation, ParameterSet, RepositoryRefresh, RunPackage


@admin.register(Optimisation)
class OptimisationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "cell_type",
        "etype",
        "morphology",
        "owner",
        "published",
        "source",
        "mechanisms_status",
        "created_at",
    )
    list_filter = ("published", "source", "mechanisms_status", "cell_type", "etype")
    search_fields = ("name", "morphology", "contributors")
    readonly_fields = (
        "key",
        "archive",
        "archive_sha256",
        "features",
        "parameters",
        "protocols",
        "meta",
        "mechanisms_status",
        "mechanisms_errors",
        "mechanisms_status_at",
    )


@admin.register(ParameterSet)
class ParameterSetAdmin(admin.ModelAdmin):
    list_display = ("optimisation", "owner", "version", "created_at")
    search_fields = ("optimisation__name", "owner__username")


@admin.register(RunPackage)
class RunPackageAdmin(admin.ModelAdmin):
    list_display = ("run_name", "owner", "offspring_size", "max_ngen", "size", "created_at")
    search_fields = ("run_name", "owner__username")


@admin.register(RepositoryRefresh)
class RepositoryRefreshAdmin(admin.ModelAdmin):
    list_display = ("created_at", "started_by", "status", "done", "total")
