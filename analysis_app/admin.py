from django.contrib import admin

from analysis_app.models import Analysis, SavedComparison


@admin.register(Analysis)
class AnalysisAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "owner",
        "source_kind",
        "status",
        "error_kind",
        "save_status",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "source_kind", "save_status", "error_kind")
    search_fields = ("folder", "owner__username", "saved_to")
    raw_id_fields = ("owner", "job", "optimisation")
    readonly_fields = (
        "progress",
        "error_details",
        "result_prefix",
        "result_files",
        "fitness",
        "uploaded_files",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "saved_at",
    )


@admin.register(SavedComparison)
class SavedComparisonAdmin(admin.ModelAdmin):
    list_display = ("saved_to", "owner", "status", "created_at", "saved_at")
    list_filter = ("status",)
    search_fields = ("saved_to", "owner__username")
    raw_id_fields = ("owner", "analyses")
    readonly_fields = ("compared", "files", "created_at", "queued_at", "heartbeat_at", "saved_at")
