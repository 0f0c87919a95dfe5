"""The catalogue: optimisations, users' parameter versions and the run packages built from them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from rebuild_site.access import OwnedQuerySet


class OptimisationQuerySet(models.QuerySet):
    def visible_to(self, user) -> OptimisationQuerySet:
        """Published models, the user's own uploads; staff see everything."""
        if user.is_staff:
            return self
        return self.filter(Q(published=True) | Q(owner=user))


class Optimisation(models.Model):
    """One BluePyOpt optimisation folder: its files in storage, its configs parsed here."""

    class Source(models.TextChoices):
        REPOSITORY = "repository", "HBP repository"
        UPLOAD = "upload", "Upload"
        COMMAND = "command", "Command line"
        DEMO = "demo", "Demo model"

    class Mechanisms(models.TextChoices):
        """Whether the model's .mod files compile (nrnivmodl, in the background after import)."""

        PENDING = "pending", "Waiting to compile"
        COMPILING = "compiling", "Compiling"
        COMPILED = "compiled", "Compiled"
        FAILED = "failed", "Did not compile"

    name = models.CharField(max_length=200)
    key = models.CharField(max_length=200, help_text="The configs' top-level key.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="optimisations",
        help_text="Empty for models imported by staff.",
    )
    published = models.BooleanField(default=False, help_text="Visible to every user.")
    source = models.CharField(max_length=20, choices=Source.choices)
    source_url = models.CharField(max_length=500, blank=True)
    region = models.CharField(max_length=50, blank=True)
    cell_type = models.CharField(max_length=50, blank=True)
    etype = models.CharField("e-type", max_length=50, blank=True)
    morphology = models.CharField(max_length=200, blank=True)
    species = models.CharField(max_length=100, blank=True)
    contributors = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    meta = models.JSONField(default=dict, blank=True)
    # The configs' content under the key (the key itself is in `key`).
    features = models.JSONField()
    parameters = models.JSONField()
    protocols = models.JSONField()
    morphology_file = models.CharField(max_length=255)
    archive = models.CharField(max_length=500, help_text="Storage name of the folder's zip.")
    archive_sha256 = models.CharField(max_length=64)
    best_checkpoint = models.CharField(max_length=255, blank=True)
    checkpoints = models.JSONField(
        default=list,
        blank=True,
        help_text="[{name, seed, hoc, fitness, error}]: the folder's checkpoints, read at import.",
    )
    mechanisms_status = models.CharField(
        max_length=10, choices=Mechanisms.choices, default=Mechanisms.PENDING
    )
    mechanisms_errors = models.TextField(blank=True, help_text="nrnivmodl's error lines.")
    mechanisms_status_at = models.DateTimeField(
        default=timezone.now, help_text="When the mechanisms' status last changed."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OptimisationQuerySet.as_manager()

    class Meta:
        ordering = ["cell_type", "etype", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=Q(owner__isnull=True), name="unique_shared_name"
            ),
            models.UniqueConstraint(fields=["owner", "name"], name="unique_name_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("models_app:detail", args=[self.pk])

    def parameters_document(self) -> dict:
        """parameters.json as in the folder: the content under its key."""
        return {self.key: self.parameters}

    @property
    def mechanisms_pending(self) -> bool:
        return self.mechanisms_status in (self.Mechanisms.PENDING, self.Mechanisms.COMPILING)

    def run_refusal(self) -> str:
        """Why the model cannot run (its mechanisms did not compile), or "" when it can."""
        if self.mechanisms_status != self.Mechanisms.FAILED:
            return ""
        return (
            f"The mechanisms of {self.name} did not compile, so it cannot run. nrnivmodl said: "
            + " / ".join(self.mechanisms_errors.splitlines()[:4])
        )


class ParameterSet(models.Model):
    """A user's saved version of an optimisation's parameters.json (new bounds)."""

    optimisation = models.ForeignKey(
        Optimisation, on_delete=models.CASCADE, related_name="parameter_sets"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="parameter_sets"
    )
    version = models.PositiveIntegerField()
    parameters = models.JSONField(help_text="The whole parameters.json content.")
    changes = models.JSONField(
        default=list, help_text="[section, name, old lower, old upper, lower, upper]"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        ordering = ["optimisation", "owner", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["optimisation", "owner", "version"], name="unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.optimisation.name} v{self.version} ({self.owner})"


class RunPackage(models.Model):
    """A zip ready to run: one top folder, init.py, the configs with the chosen bounds."""

    optimisation = models.ForeignKey(
        Optimisation, on_delete=models.CASCADE, related_name="packages"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="packages"
    )
    parameter_set = models.ForeignKey(
        ParameterSet, null=True, blank=True, on_delete=models.SET_NULL
    )
    run_name = models.CharField(max_length=200)
    offspring_size = models.PositiveIntegerField()
    max_ngen = models.PositiveIntegerField()
    file = models.CharField(max_length=500, help_text="Storage name of the zip.")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    fixes = models.JSONField(default=list, blank=True)
    continued_from = models.JSONField(
        default=dict,
        blank=True,
        help_text="{source, checkpoint, generation, offspring_size, resume_flag, job}: the "
        "checkpoint a continuing package resumes from; empty for a new optimisation.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.run_name

    @property
    def filename(self) -> str:
        return f"{self.run_name}.zip"

    def get_download_url(self) -> str:
        return reverse("models_app:package_download", args=[self.pk])


class RepositoryRefresh(models.Model):
    """One "Refresh from repository" run, with its progress for the catalogue page."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    source_url = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    imported = models.JSONField(default=list, blank=True)
    unchanged = models.JSONField(default=list, blank=True)
    problems = models.JSONField(default=list, blank=True, help_text="[name, message]")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "repository refreshes"

    @property
    def active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0
