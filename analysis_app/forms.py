"""Choosing what to analyse: a stored result, an uploaded NSG result, or a catalogue model."""

from __future__ import annotations

import tarfile
import zipfile

from django import forms
from django.conf import settings

from analysis_app.models import Analysis
from models_app.models import Optimisation
from nsg_app.models import Job
from rebuild_site.timezones import shown

MAX_TOP = 10
NSG_OUTPUT = "output.tar.gz"


class AnalysisSourceForm(forms.Form):
    source = forms.ChoiceField(
        label="What to analyse",
        choices=Analysis.Source.choices,
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
        initial=Analysis.Source.JOB,
    )
    job = forms.ModelChoiceField(
        label="Stored result",
        queryset=Job.objects.none(),
        required=False,
        empty_label="Choose a job…",
        help_text="Your NSG and local jobs whose results are in storage.",
    )
    output = forms.FileField(
        label="output.tar.gz",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".gz,.tgz,.tar"}),
    )
    # NSG's STDERR is often empty, and so may STDOUT be.
    stdout = forms.FileField(label="STDOUT (optional)", required=False, allow_empty_file=True)
    stderr = forms.FileField(label="STDERR (optional)", required=False, allow_empty_file=True)
    results_zip = forms.FileField(
        label="…or one zip of the three",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".zip"}),
    )
    optimisation = forms.ModelChoiceField(
        label="Catalogue model",
        queryset=Optimisation.objects.none(),
        required=False,
        empty_label="Choose a model…",
        help_text="The model's own best run, as published (the notebook's GitHub source).",
    )
    checkpoint = forms.ChoiceField(
        label="Checkpoint",
        required=False,
        help_text="One per seed in the published catalogue, with the fitness its best "
        "individual stored; the model's best run is chosen unless you choose another.",
    )
    top = forms.IntegerField(
        label="Best individuals to simulate",
        min_value=1,
        max_value=MAX_TOP,
        initial=1,
        help_text="From the hall of fame, best first.",
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["job"].queryset = (
            Job.objects.visible_to(user)
            .filter(state=Job.State.COLLECTED)
            .select_related("owner")
            .order_by("-collected_at", "-pk")
        )
        self.fields["job"].label_from_instance = lambda job: _job_label(job, user)
        self.fields["optimisation"].queryset = (
            Optimisation.objects.visible_to(user).exclude(best_checkpoint="").order_by("name")
        )
        self.fields["optimisation"].label_from_instance = lambda model: (
            f"{model.name} ({model.best_checkpoint})"
        )
        self._checkpoints = {
            model.pk: catalogue_checkpoints(model) for model in self.fields["optimisation"].queryset
        }
        self.fields["checkpoint"].choices = [("", "The model's best run")] + [
            (model.name, [(row["value"], row["label"]) for row in self._checkpoints[model.pk]])
            for model in self.fields["optimisation"].queryset
        ]
        self.fields["checkpoint"].widget = CheckpointSelect(
            choices=self.fields["checkpoint"].choices,
            option_attrs={
                row["value"]: {"data-model": str(pk), **({"data-best": ""} if row["best"] else {})}
                for pk, rows in self._checkpoints.items()
                for row in rows
            },
        )
        for name, field in self.fields.items():
            if name != "source":
                kind = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
                field.widget.attrs["class"] = kind

    def full_clean(self) -> None:
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs["class"] += " is-invalid"

    def clean(self):
        cleaned = super().clean()
        source = cleaned.get("source")
        if source == Analysis.Source.JOB:
            job = cleaned.get("job")
            if job is None:
                self.add_error("job", "Choose a stored result.")
            elif not job.result_files.filter(name=NSG_OUTPUT).exists():
                self.add_error("job", f"The stored result of {job.folder} holds no {NSG_OUTPUT}.")
        elif source == Analysis.Source.CATALOGUE:
            optimisation = cleaned.get("optimisation")
            if optimisation is None:
                self.add_error("optimisation", "Choose a catalogue model.")
            else:
                self._clean_checkpoint(cleaned, optimisation)
        elif source == Analysis.Source.UPLOAD:
            self._clean_upload(cleaned)
        return cleaned

    def _clean_checkpoint(self, cleaned, optimisation) -> None:
        """``<model id>:<file name>`` of the chosen model, or "" for its best run; the file name."""
        value = cleaned.get("checkpoint") or ""
        rows = self._checkpoints.get(optimisation.pk, [])
        if not value:
            cleaned["checkpoint"] = optimisation.best_checkpoint
            return
        chosen = next((row for row in rows if row["value"] == value), None)
        if chosen is None:
            self.add_error("checkpoint", f"Choose one of the checkpoints of {optimisation.name}.")
        else:
            cleaned["checkpoint"] = chosen["name"]

    def _clean_upload(self, cleaned) -> None:
        output, results_zip = cleaned.get("output"), cleaned.get("results_zip")
        uploads = [cleaned.get(name) for name in ("output", "stdout", "stderr", "results_zip")]
        total = sum(upload.size for upload in uploads if upload is not None)
        if total > settings.UPLOAD_MAX_BYTES:
            self.add_error(
                None,
                f"The files add up to {total:,} bytes; at most {settings.UPLOAD_MAX_BYTES:,} "
                "are accepted.",
            )
            return
        if output is not None and results_zip is not None:
            self.add_error(None, "Give either the three files or one zip of them, not both.")
        elif results_zip is not None:
            problem = _zip_problem(results_zip)
            if problem:
                self.add_error("results_zip", problem)
        elif output is not None:
            if not _is_tar(output):
                self.add_error(
                    "output",
                    f"{output.name} is not a tar archive: NSG's {NSG_OUTPUT} is a "
                    "gzip-compressed tar of the job's folder.",
                )
        else:
            self.add_error("output", f"Choose NSG's {NSG_OUTPUT}, or one zip of the results.")

    def uploaded(self) -> dict:
        """The files to store, by the name they keep in storage."""
        data = self.cleaned_data
        if data.get("results_zip") is not None:
            return {_zip_name(data["results_zip"].name): data["results_zip"]}
        files = {NSG_OUTPUT: data["output"]}
        for field, name in (("stdout", "STDOUT"), ("stderr", "STDERR")):
            if data.get(field) is not None:
                files[name] = data[field]
        return files


class CheckpointSelect(forms.Select):
    """A select whose options carry attributes of their own (their model, the best one)."""

    def __init__(self, *args, option_attrs: dict[str, dict[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.option_attrs = option_attrs

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        option["attrs"].update(self.option_attrs.get(str(value), {}))
        return option


def catalogue_checkpoints(optimisation: Optimisation) -> list[dict]:
    """The model's checkpoints as the picker lists them: value, label, name, best.

    From what the import read (seed and stored fitness); a model imported before that was
    read lists its best run alone.
    """
    rows = optimisation.checkpoints or (
        [{"name": optimisation.best_checkpoint}] if optimisation.best_checkpoint else []
    )
    listed = []
    for row in rows:
        name = row["name"]
        parts = [name]
        if row.get("seed") is not None:
            parts.append(f"seed {row['seed']}")
        if row.get("fitness") is not None:
            parts.append(f"stored fitness {row['fitness']:.4f}")
        elif row.get("error"):
            parts.append("stored fitness unreadable")
        best = name == optimisation.best_checkpoint
        if best:
            parts.append("best run")
        listed.append(
            {
                "value": f"{optimisation.pk}:{name}",
                "label": " · ".join(parts),
                "name": name,
                "best": best,
            }
        )
    return listed


def _job_label(job: Job, user) -> str:
    # Two runs of one package differ only by these: the job number, when each was
    # submitted (in the user's zone, as every page shows times) and the seed.
    parts = [f"Job {job.pk}", job.folder, job.get_backend_display()]
    parts.append(f"submitted {shown(job.date_submitted or job.created_at)}")
    parts.append(f"seed {job.seed}" if job.seed is not None else "seed not known")
    if job.flag:
        parts.append(job.get_flag_display().lower())
    if job.owner_id != user.pk:
        parts.append(job.owner.get_username())
    return " · ".join(parts)


def _is_tar(upload) -> bool:
    upload.seek(0)
    try:
        return tarfile.is_tarfile(upload)
    except (OSError, ValueError, EOFError):
        return False
    finally:
        upload.seek(0)


def _zip_problem(upload) -> str:
    if not upload.name.lower().endswith(".zip"):
        return "Upload a .zip file (or the three files above)."
    upload.seek(0)
    try:
        with zipfile.ZipFile(upload) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return f"{upload.name} is not a valid zip file."
    finally:
        upload.seek(0)
    inside = [name for name in names if name.rstrip("/").rsplit("/", 1)[-1] == NSG_OUTPUT]
    if not any(name.count("/") <= 1 for name in inside):
        return (
            f"{upload.name} holds no {NSG_OUTPUT} (at its top or in one folder): zip NSG's "
            "STDOUT, STDERR and output.tar.gz together."
        )
    return ""


def _zip_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base if base.lower().endswith(".zip") else "results.zip"
