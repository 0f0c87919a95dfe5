"""Analyses of finished optimisations: what was analysed, how far it got, where it is stored."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from analysis_app.engine import errors
from rebuild_site.access import OwnedQuerySet

# Headings of the failure kinds the engine reports (analysis_app.engine.errors).
ERROR_TITLES = {
    errors.INVALID_SOURCE: "The result cannot be read",
    errors.UNSAFE_ARCHIVE: "The archive was refused",
    errors.CORRUPT_ARCHIVE: "The archive is damaged",
    errors.NO_RUN_FOLDER: "No optimisation folder in the result",
    errors.INVALID_OPTIMISATION: "The optimisation folder is not usable",
    errors.NO_CHECKPOINT: "No checkpoint to analyse",
    errors.CHECKPOINT_UNREADABLE: "The checkpoint cannot be read",
    errors.MECHANISMS: "A mechanism does not compile",
    errors.MODEL_ERROR: "The model's code failed",
    errors.TIMEOUT: "The analysis took too long",
    errors.INTERRUPTED: "The analysis was interrupted",
    errors.INTERNAL: "The analysis stopped unexpectedly",
}


class Analysis(models.Model):
    """One analysis: the best individuals of a run re-simulated and scored by the engine."""

    class Source(models.TextChoices):
        JOB = "job", "Stored result"
        UPLOAD = "upload", "Uploaded NSG result"
        CATALOGUE = "catalogue", "Catalogue model's best run"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class SaveStatus(models.TextChoices):
        NONE = "", "Not saved"
        SAVING = "saving", "Saving"
        SAVED = "saved", "Saved"
        FAILED = "failed", "Saving failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="analyses"
    )
    source_kind = models.CharField("source", max_length=20, choices=Source.choices)
    job = models.ForeignKey(
        "nsg_app.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="analyses"
    )
    optimisation = models.ForeignKey(
        "models_app.Optimisation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="analyses",
    )
    uploaded_files = models.JSONField(
        default=list, blank=True, help_text="Storage names of the uploaded result files."
    )
    folder = models.CharField(
        max_length=200, blank=True, help_text="The run's folder name: where it is saved."
    )
    checkpoint = models.CharField(
        max_length=255, blank=True, help_text="Checkpoint file to analyse (empty: the engine's)."
    )
    top = models.PositiveSmallIntegerField("individuals analysed", default=1)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    progress = models.JSONField(default=dict, blank=True)
    error_kind = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    error_details = models.JSONField(default=dict, blank=True)
    result_prefix = models.CharField(max_length=500, blank=True)
    result_files = models.JSONField(
        default=list, blank=True, help_text="Names of the stored files, under the prefix."
    )
    fitness = models.JSONField(
        default=dict, blank=True, help_text="The best individual's stored and recomputed fitness."
    )
    evaluation_seconds = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds the best individual's protocols took in all: one evaluation on one core.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The periodic sweep queues an analysis or a save again when nothing reports for a while.
    queued_at = models.DateTimeField(null=True, blank=True)
    save_heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    saved_to = models.CharField(max_length=500, blank=True)
    save_status = models.CharField(
        max_length=10, choices=SaveStatus.choices, blank=True, default=SaveStatus.NONE
    )
    save_error = models.TextField(blank=True)
    saved_at = models.DateTimeField(null=True, blank=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "analyses"
        constraints = [
            # One analysis per saved folder: two saves of the same folder cannot race.
            models.UniqueConstraint(
                fields=["saved_to"], condition=~Q(saved_to=""), name="unique_saved_folder"
            )
        ]

    def __str__(self) -> str:
        return f"{self.folder or 'analysis'} #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("analysis_app:analysis", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def is_saved(self) -> bool:
        return self.save_status == self.SaveStatus.SAVED

    @property
    def error_title(self) -> str:
        return ERROR_TITLES.get(self.error_kind, "The analysis failed")

    @property
    def source_short(self) -> str:
        return {"job": "Stored result", "upload": "Upload", "catalogue": "Catalogue"}.get(
            self.source_kind, self.source_kind
        )

    @property
    def source_description(self) -> str:
        if self.source_kind == self.Source.JOB:
            return f"job {self.job_id}" + (f" ({self.job.folder})" if self.job else " (deleted)")
        if self.source_kind == self.Source.CATALOGUE:
            name = self.optimisation.name if self.optimisation else "a deleted model"
            return f"{name}, {self.checkpoint or 'best run'}"
        names = [name.rsplit("/", 1)[-1] for name in self.uploaded_files]
        return "upload of " + ", ".join(names)

    def stored_prefix(self) -> str:
        """Where the analysis' files are read from: its saved folder once saved."""
        return self.saved_to if self.is_saved else self.result_prefix


class SavedComparison(models.Model):
    """A comparison of analyses saved under ``BluePyOptAnalysis/<user>/<folder>/``.

    The folder is claimed in the request and written by the task ``save_comparison``.
    ``compared`` keeps each analysis' id and name, in the order compared: an analysis deleted
    later leaves ``analyses`` without it, and the row still says what was compared.
    """

    class Status(models.TextChoices):
        SAVING = "saving", "Saving"
        SAVED = "saved", "Saved"
        FAILED = "failed", "Saving failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_comparisons"
    )
    analyses = models.ManyToManyField(Analysis, related_name="saved_comparisons", blank=True)
    compared = models.JSONField(
        default=list, help_text="The analyses compared, in order: id, name and folder of each."
    )
    saved_to = models.CharField(max_length=500)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.SAVING, db_index=True
    )
    error = models.TextField(blank=True)
    files = models.JSONField(
        default=list, blank=True, help_text="Names of the saved files, under the folder."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The periodic sweep queues the save again when nothing reports for a while; the
    # heartbeat is also the writer's claim (a writer whose beat was replaced stops).
    queued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    saved_at = models.DateTimeField(null=True, blank=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One comparison per saved folder; a failed save left nothing there and frees it
            # (its row still names the folder it tried).
            models.UniqueConstraint(
                fields=["saved_to"],
                condition=~Q(status="failed"),
                name="unique_saved_comparison_folder",
            )
        ]

    def __str__(self) -> str:
        return self.folder

    def get_absolute_url(self) -> str:
        # No page of its own: its row in the analyses page's "Saved comparisons".
        return f"{reverse('analysis_app:analyses')}#comparison-{self.pk}"

    @property
    def folder(self) -> str:
        return self.saved_to.rsplit("/", 1)[-1]

    @property
    def compared_ids(self) -> list[int]:
        return [entry["id"] for entry in self.compared]
