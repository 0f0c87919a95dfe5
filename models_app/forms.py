from django import forms
from django.conf import settings

from models_app.bpo.package import (
    DEFAULT_MAX_NGEN,
    DEFAULT_OFFSPRING_SIZE,
    MAX_NGEN,
    MAX_OFFSPRING_SIZE,
)


class UploadForm(forms.Form):
    archive = forms.FileField(
        label="Optimisation zip",
        help_text="A zip of one optimisation folder (config/, model/, morphology/, mechanisms/, opt_neuron.py).",
    )

    def clean_archive(self):
        upload = self.cleaned_data["archive"]
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError("Upload a .zip file.")
        if upload.size > settings.UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; at most {settings.UPLOAD_MAX_BYTES:,} are accepted."
            )
        return upload


class RunSettingsForm(forms.Form):
    offspring_size = forms.IntegerField(
        label="Offspring size",
        min_value=1,
        max_value=MAX_OFFSPRING_SIZE,
        initial=DEFAULT_OFFSPRING_SIZE,
        help_text="Individuals evaluated per generation.",
    )
    max_ngen = forms.IntegerField(
        label="Maximum generations",
        min_value=1,
        max_value=MAX_NGEN,
        initial=DEFAULT_MAX_NGEN,
        help_text="Below 2 generations no checkpoint is written.",
    )
    version = forms.IntegerField(required=False, widget=forms.HiddenInput)


class ContinueForm(forms.Form):
    """ "Continue": more generations from a checkpoint, with its own offspring size."""

    BACKENDS = (("local", "Run here"), ("nsg", "Run NSG simulation"))

    max_ngen = forms.IntegerField(
        label="Maximum generations",
        min_value=1,
        max_value=MAX_NGEN,
        help_text="The new total, counted from the first generation of the run continued.",
    )
    backend = forms.ChoiceField(
        label="Where", choices=BACKENDS, initial="local", widget=forms.RadioSelect
    )

    def __init__(self, *args, stored_generation: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_generation = stored_generation
        self.fields["max_ngen"].initial = stored_generation + DEFAULT_MAX_NGEN

    def clean_max_ngen(self):
        from models_app.bpo.continuation import generations_problem

        value = self.cleaned_data["max_ngen"]
        problem = generations_problem(value, self.stored_generation)
        if problem:
            raise forms.ValidationError(problem)
        return value
