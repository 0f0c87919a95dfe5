"""NSG accounts, jobs on NSG or on this machine, their stage history and collected results."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.urls import reverse

from rebuild_site.access import OwnedQuerySet


def _fernet() -> MultiFernet:
    # CREDENTIALS_KEY may list several keys, newest first: old tokens stay readable while
    # new ones are written with the first key (key rotation).
    keys = [key.strip() for key in settings.CREDENTIALS_KEY.split(",") if key.strip()]
    return MultiFernet([Fernet(key.encode()) for key in keys])


class NsgAccount(models.Model):
    """A user's NSG credentials, the password encrypted; the worker polls NSG with them."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="nsg_account"
    )
    username = models.CharField("NSG user name", max_length=150)
    password_token = models.TextField(editable=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Polling: never faster than NSG asks (minPollIntervalSeconds); errors back off.
    poll_interval_seconds = models.FloatField(default=60)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    poll_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "NSG account"

    def __str__(self) -> str:
        return f"{self.username} ({self.owner})"

    def set_password(self, raw: str) -> None:
        self.password_token = _fernet().encrypt(raw.encode()).decode()

    def password(self) -> str:
        try:
            return _fernet().decrypt(self.password_token.encode()).decode()
        except InvalidToken:
            raise RuntimeError(
                "The stored NSG password cannot be decrypted with CREDENTIALS_KEY "
                "(was the key changed without keeping the old one?)."
            ) from None


class JobQuerySet(OwnedQuerySet):
    def active(self) -> JobQuerySet:
        return self.filter(state__in=Job.ACTIVE_STATES)


class Job(models.Model):
    """One optimisation run on a backend: NSG (the real service or the emulator) or local."""

    class Backend(models.TextChoices):
        NSG = "nsg", "NSG"
        LOCAL = "local", "This machine"

    class State(models.TextChoices):
        SUBMITTING = "submitting", "Submitting"
        SUBMIT_FAILED = "submit_failed", "Submission failed"
        ACTIVE = "active", "Running"
        COMPLETED = "completed", "Completed"
        COLLECTING = "collecting", "Copying to storage"
        COLLECTED = "collected", "In storage"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Flag(models.TextChoices):
        NONE = "", "—"
        NO_CHECKPOINT = "no_checkpoint", "No checkpoint"
        SCRIPT_ERROR = "script_error", "Script error"
        TIME_LIMIT = "time_limit", "Runtime too short"

    ACTIVE_STATES = (State.SUBMITTING, State.ACTIVE)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    backend = models.CharField(max_length=10, choices=Backend.choices)
    package = models.ForeignKey(
        "models_app.RunPackage",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    folder = models.CharField(
        max_length=200,
        help_text="The run's name and results folder: the optimisation's name with the date-time "
        "the run was created, unique per user.",
    )
    seed = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="BLUEPYOPT_SEED of the run (None: not known)."
    )
    launch = models.CharField(
        max_length=32,
        blank=True,
        db_index=True,
        help_text="Shared by the runs of one package started together with several seeds.",
    )
    tool = models.CharField(max_length=50, blank=True)
    nodes = models.PositiveIntegerField(null=True, blank=True)
    cores_per_node = models.PositiveIntegerField(null=True, blank=True)
    runtime_hours = models.FloatField(null=True, blank=True)
    handle = models.CharField(
        max_length=120, blank=True, db_index=True, help_text="NSG's job handle."
    )
    external = models.BooleanField(
        default=False, help_text="Submitted elsewhere; found in the NSG account's job list."
    )
    stage = models.CharField(max_length=40, blank=True)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.SUBMITTING, db_index=True
    )
    error = models.TextField(
        blank=True, help_text="Why submission or the run failed, for the user."
    )
    param_errors = models.JSONField(default=dict, blank=True)
    date_submitted = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    results_prefix = models.CharField(max_length=500, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # The database is the queue: the periodic sweep finds every job in a non-terminal state
    # and queues its next step again when nothing has reported for a while.
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the task submitting or following it."
    )
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When a task was last queued for its current step."
    )
    runner_pid = models.PositiveIntegerField(null=True, blank=True)
    runner_start_ticks = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="The runner's start time (/proc/<pid>/stat), to tell it from a reused pid.",
    )
    collect_heartbeat_at = models.DateTimeField(null=True, blank=True)
    collected_at = models.DateTimeField(null=True, blank=True)
    flag = models.CharField(max_length=20, choices=Flag.choices, blank=True, default="")
    flag_detail = models.TextField(blank=True)
    stderr_tail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "handle"],
                condition=~models.Q(handle=""),
                name="unique_handle_per_backend",
            ),
            # One run, one folder: two runs never share their results.
            models.UniqueConstraint(fields=["owner", "folder"], name="unique_run_folder"),
            models.UniqueConstraint(
                fields=["results_prefix"],
                condition=~models.Q(results_prefix=""),
                name="unique_results_prefix",
            ),
        ]

    def __str__(self) -> str:
        return self.handle or f"{self.get_backend_display()} job {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("nsg_app:job", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def can_collect(self) -> bool:
        # On a stored job, "Copy to storage" checks the stored copy and changes nothing.
        return self.state in (self.State.COMPLETED, self.State.COLLECTED)

    def collect_blocked_reason(self) -> str:
        if self.state in (self.State.COMPLETED, self.State.COLLECTED):
            return ""
        if self.state == self.State.COLLECTING:
            return "Copying to storage now."
        if self.state in self.ACTIVE_STATES:
            return f"The job is not finished (stage {self.stage or 'submitting'})."
        return f"The job ended without results ({self.get_state_display().lower()})."

    @property
    def can_cancel(self) -> bool:
        return self.state in self.ACTIVE_STATES or (
            self.backend == self.Backend.NSG
            and self.handle
            and self.state in (self.State.COMPLETED, self.State.FAILED)
        )


class JobStageChange(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="stages")
    stage = models.CharField(max_length=40)
    at = models.DateTimeField()
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.stage} at {self.at}"


class ResultFile(models.Model):
    """One collected file in storage, with the size and SHA-256 written to the manifest."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="result_files")
    name = models.CharField(max_length=255)
    storage_name = models.CharField(max_length=700)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="unique_result_name")]

    def __str__(self) -> str:
        return self.name
