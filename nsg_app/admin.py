from django.contrib import admin, messages

from nsg_app.models import Job, JobStageChange, NsgAccount, ResultFile
from nsg_app.services import account_poll_request


class JobStageChangeInline(admin.TabularInline):
    model = JobStageChange
    extra = 0
    can_delete = False
    readonly_fields = ("at", "stage", "message")


class ResultFileInline(admin.TabularInline):
    model = ResultFile
    extra = 0
    can_delete = False
    readonly_fields = ("name", "size", "sha256", "storage_name")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only apart from its actions: a job's fields are what NSG and the runner
    reported, and an edit here would contradict them. Deleting goes through the same
    service as the site's Delete, so stored files and the NSG job go with the row."""

    # Fits a laptop's width: the run's folder names the job (an NSG handle is 50
    # characters of little meaning; it is on the job's page and searchable).
    list_display = ("folder", "owner", "backend", "state", "stage", "flag", "created_at")
    list_display_links = ("folder",)
    list_filter = ("state", "stage", "backend", "flag", "external", "owner")
    search_fields = ("handle", "folder", "owner__username")
    readonly_fields = (
        "created_at",
        "updated_at",
        "collected_at",
        "collect_heartbeat_at",
        "progress",
    )
    inlines = [JobStageChangeInline, ResultFileInline]
    actions = ["poll_now", "collect_now", "cancel_now", "delete_with_files"]

    def has_add_permission(self, request):
        return False  # jobs are made by submitting a package, never by hand

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Django's own delete (and its "delete selected") would leave the stored files.
        return False

    @admin.action(description="Delete the selected jobs with their stored files (and at NSG)")
    def delete_with_files(self, request, queryset):
        from nsg_app.retention import job_delete
        from rebuild_site.deletion import DeleteRefused

        deleted = 0
        for job in queryset.select_related("owner"):
            try:
                job_delete(job)
                deleted += 1
            except DeleteRefused as refused:
                self.message_user(request, f"{job}: {refused}", level=messages.ERROR)
        self.message_user(request, f"Deleted {deleted} job(s) with their stored files.")

    @admin.action(description="Poll NSG now for the owners of the selected jobs")
    def poll_now(self, request, queryset):
        accounts = NsgAccount.objects.filter(
            owner__in=queryset.filter(backend=Job.Backend.NSG).values("owner")
        )
        for account in accounts:
            account_poll_request(account, force=True)
        self.message_user(request, f"Polling {len(accounts)} NSG account(s).")

    @admin.action(description="Copy the results of the selected jobs to storage")
    def collect_now(self, request, queryset):
        from nsg_app.services import job_copy_to_storage

        queued = 0
        for job in queryset.select_related("owner"):
            started, message = job_copy_to_storage(job)
            queued += started
            if not started:
                self.message_user(request, f"{job}: {message}", level=messages.WARNING)
        self.message_user(request, f"Copying {queued} job(s).")

    @admin.action(description="Cancel the selected jobs")
    def cancel_now(self, request, queryset):
        from nsg_app.services import job_cancel

        done = 0
        for job in queryset:
            if job.can_cancel:
                try:
                    job_cancel(job)
                    done += 1
                except Exception as error:  # report each failure, go on with the others
                    self.message_user(request, f"{job}: {error}", level=messages.ERROR)
        self.message_user(request, f"Cancelled {done} job(s).")


@admin.register(NsgAccount)
class NsgAccountAdmin(admin.ModelAdmin):
    list_display = (
        "username",
        "owner",
        "verified_at",
        "last_polled_at",
        "poll_failures",
        "next_poll_at",
        "last_error",
    )
    search_fields = ("username", "owner__username")
    # The password token is never shown nor editable here.
    fields = (
        "owner",
        "username",
        "verified_at",
        "poll_interval_seconds",
        "next_poll_at",
        "last_polled_at",
        "poll_failures",
        "last_error",
    )
    readonly_fields = ("verified_at", "last_polled_at", "poll_failures", "last_error")
