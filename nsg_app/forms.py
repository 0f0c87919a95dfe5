import os

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from models_app.bpo.package import MAX_SEED

MAX_NODES = 72
# Runs one Run may start, one seed each (the published HBP optimisations used 2 to 4).
MAX_SEEDS = 8
MAX_RUNTIME_HOURS = 48
MIN_RUNTIME_HOURS = 0.1


def seed_field() -> forms.IntegerField:
    return forms.IntegerField(
        label="Seed",
        required=False,
        min_value=0,
        max_value=MAX_SEED,
        help_text="BLUEPYOPT_SEED of the run. Leave it empty for a fresh one; the seed of an "
        "earlier run repeats that run.",
    )


def seeds_field() -> forms.IntegerField:
    return forms.IntegerField(
        label="Seeds",
        required=False,  # empty: one run
        min_value=1,
        max_value=MAX_SEEDS,
        initial=1,
        help_text=f"Runs to start, each with a seed of its own (1 to {MAX_SEEDS}): an "
        "optimisation's outcome depends on its seed, and the published ones used several. "
        "With a seed chosen below, the runs take it and the next ones. Each run costs what "
        "the forecast says.",
    )


def clean_seeds(form: forms.Form, cleaned: dict) -> None:
    """Empty means one run; a chosen seed must leave room for the next ones."""
    if "seeds" in cleaned and cleaned["seeds"] is None:
        cleaned["seeds"] = 1
    seed, seeds = cleaned.get("seed"), cleaned.get("seeds")
    if seed is not None and seeds and seed + seeds - 1 > MAX_SEED:
        form.add_error(
            "seed", f"With {seeds} seeds, the seed can be at most {MAX_SEED - seeds + 1}."
        )


class NsgLoginForm(forms.Form):
    username = forms.CharField(label="NSG user name", max_length=150)
    password = forms.CharField(
        label="NSG password", widget=forms.PasswordInput(render_value=False), strip=False
    )


class NsgSubmitForm(forms.Form):
    """What NSG checks for BluePyOpt tools, so most mistakes are caught before submission."""

    tool = forms.ChoiceField(label="Tool")
    nodes = forms.IntegerField(
        label="Number of nodes",
        min_value=1,
        max_value=MAX_NODES,
        initial=2,
        help_text="1 to 72; for more, contact nsghelp@sdsc.edu.",
    )
    cores_per_node = forms.IntegerField(label="Cores per node", min_value=1, initial=10)
    runtime_hours = forms.FloatField(
        label="Runtime (hours)",
        min_value=MIN_RUNTIME_HOURS,
        max_value=MAX_RUNTIME_HOURS,
        initial=0.5,
        help_text="At most 48 hours. Too short a runtime leaves no checkpoint.",
    )
    seeds = seeds_field()
    seed = seed_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tools = settings.NSG_TOOL_CORE_LIMITS
        self.fields["tool"].choices = [(tool, tool) for tool in tools]
        self.fields["tool"].initial = (
            "BLUEPYOPT_EXPANSE" if "BLUEPYOPT_EXPANSE" in tools else next(iter(tools))
        )
        self.fields["cores_per_node"].help_text = (
            "Cap per tool: " + ", ".join(f"{t} {c}" for t, c in tools.items()) + "."
        )

    def clean(self):
        cleaned = super().clean()
        tool, cores = cleaned.get("tool"), cleaned.get("cores_per_node")
        if tool and cores:
            cap = settings.NSG_TOOL_CORE_LIMITS[tool]
            if cores > cap:
                self.add_error("cores_per_node", f"{tool} allows at most {cap} cores per node.")
        clean_seeds(self, cleaned)
        return cleaned


# NSG's vparam names, to show its own parameter errors next to our fields.
VPARAM_FIELDS = {
    "number_nodes_": "nodes",
    "number_cores_": "cores_per_node",
    "runtime_": "runtime_hours",
    "tool": "tool",
}


class LocalRunForm(forms.Form):
    """'Run here': the same package on this machine."""

    cores_per_node = forms.IntegerField(label="Cores", min_value=1)
    runtime_hours = forms.FloatField(
        label="Runtime limit (hours)",
        min_value=0.01,
        initial=1,
        help_text="The run is stopped when it takes longer.",
    )
    seeds = seeds_field()
    seed = seed_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from nsg_app.backends.local import local_cores

        available = os.cpu_count() or 1
        cores = self.fields["cores_per_node"]
        cores.max_value = available
        cores.validators.append(MaxValueValidator(available))
        cores.initial = local_cores()
        if settings.LOCAL_CLUSTER is not None:
            # The runner evaluates on every engine the cluster has; this number is not used.
            cores.help_text = (
                "Not used here: this site's runs evaluate on the engines of its ipyparallel "
                "cluster, as many individuals at once as it has engines."
            )
        else:
            cores.help_text = (
                f"Processes evaluating individuals at once (this machine has {available})."
            )
        self.fields["runtime_hours"].max_value = settings.LOCAL_MAX_RUNTIME_HOURS
        self.fields["runtime_hours"].validators.append(
            MaxValueValidator(settings.LOCAL_MAX_RUNTIME_HOURS)
        )

    def clean(self):
        cleaned = super().clean()
        clean_seeds(self, cleaned)
        return cleaned
