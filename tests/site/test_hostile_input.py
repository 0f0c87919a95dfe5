"""No request answers with a server error, whatever it carries; a refused one writes nothing.

Every page, form and JSON endpoint of the site's own URL confs (rebuild_site, models_app,
nsg_app, analysis_app; Django's admin is left to Django) receives a table of hostile
values, in each of its fields and query parameters and in its path, from a logged-in user
who owns the objects and from staff. None may answer 5xx, and a request that is refused
(4xx) must leave the database's rows and the stored files as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from analysis_app.models import Analysis, SavedComparison
from models_app.bpo.parameters import bound_field, parameter_table
from models_app.demo_model import ensure_demo_model
from models_app.models import Optimisation, ParameterSet, RepositoryRefresh, RunPackage
from models_app.services import package_create
from nsg_app.models import Job, NsgAccount, ResultFile
from tests.fixtures.emulator import USERS

pytestmark = pytest.mark.django_db

HOSTILE = {
    "empty": "",
    "5,000 digits": "9" * 5000,
    "past 64 bits": "1" + "0" * 25,
    "negative": "-1",
    "NaN": "NaN",
    "infinity": "inf",
    "superscript digit": "²",
    "Arabic-Indic digits": "١٢٣",
    "NUL": "1\x00",
    "100,000 characters": "x" * 100_000,
    "markup": "<script>alert(1)</script>",
    "parent folders": "../../etc/passwd",
    "outside Latin-1": "zoë✓€😀",
    "JSON": '{"a": [1, {"b": null}]}',
}


@dataclass(frozen=True)
class Endpoint:
    """How a URL is used: its methods, the fields it reads, and what its <int:...> names."""

    methods: tuple[str, ...]
    fields: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    target: str = ""
    # The health page answers 503 by design while a service is down (no worker here).
    reports_outages: bool = False


# Every named URL of the four URL confs. A new URL fails
# test_every_endpoint_is_in_the_table until it is described here.
ENDPOINTS = {
    "home": Endpoint(("GET",)),
    "login": Endpoint(("GET", "POST"), ("username", "password")),
    "logout": Endpoint(("POST",)),
    "health": Endpoint(("GET",), reports_outages=True),
    "models_app:catalogue": Endpoint(("GET",), ("cell_type", "etype", "q")),
    "models_app:upload": Endpoint(("POST",), files=("archive",)),
    "models_app:refresh": Endpoint(("POST",)),
    "models_app:refresh_status": Endpoint(("GET",), target="refresh"),
    "models_app:detail": Endpoint(("GET", "POST"), ("version", "tab", "package"), target="model"),
    "models_app:publish": Endpoint(("POST",), ("published",), target="model"),
    "models_app:delete": Endpoint(("GET", "POST"), ("confirm",), target="model"),
    # The bound fields are added from the model's parameters (see _fields).
    "models_app:save_parameters": Endpoint(("POST",), ("version",), target="model"),
    "models_app:create_package": Endpoint(
        ("POST",), ("offspring_size", "max_ngen", "version"), target="model"
    ),
    "models_app:source": Endpoint(
        ("GET",), ("offspring_size", "max_ngen", "package"), target="model"
    ),
    "models_app:package_download": Endpoint(("GET",), target="package"),
    "models_app:continue": Endpoint(("GET", "POST"), ("max_ngen", "backend"), target="model"),
    "models_app:continue_job": Endpoint(("GET", "POST"), ("max_ngen", "backend"), target="job"),
    "nsg_app:jobs": Endpoint(("GET",)),
    "nsg_app:jobs_status": Endpoint(("GET",)),
    "nsg_app:refresh": Endpoint(("POST",)),
    "nsg_app:account": Endpoint(("GET", "POST"), ("username", "password")),
    "nsg_app:account_forget": Endpoint(("POST",)),
    "nsg_app:submit_nsg": Endpoint(
        ("GET", "POST"),
        ("tool", "nodes", "cores_per_node", "runtime_hours", "seeds", "seed"),
        target="package",
    ),
    "nsg_app:submit_local": Endpoint(
        ("GET", "POST"), ("cores_per_node", "runtime_hours", "seeds", "seed"), target="package"
    ),
    "nsg_app:run_cost": Endpoint(
        ("GET",), ("nodes", "cores_per_node", "runtime_hours"), target="package"
    ),
    "nsg_app:job": Endpoint(("GET",), target="job"),
    "nsg_app:job_status": Endpoint(("GET",), target="job"),
    "nsg_app:check": Endpoint(("POST",), target="job"),
    "nsg_app:collect": Endpoint(("POST",), target="job"),
    "nsg_app:cancel": Endpoint(("POST",), target="job"),
    "nsg_app:file": Endpoint(("GET",), target="job"),
    "nsg_app:delete": Endpoint(("GET", "POST"), ("confirm",), target="job"),
    "analysis_app:analyses": Endpoint(
        ("GET", "POST"),
        ("source", "job", "optimisation", "top"),
        files=("output", "stdout", "stderr", "results_zip"),
    ),
    "analysis_app:analysis": Endpoint(("GET",), target="analysis"),
    "analysis_app:status": Endpoint(("GET",), target="analysis"),
    "analysis_app:figures": Endpoint(("GET",), ("individual",), target="analysis"),
    "analysis_app:figure_download": Endpoint(("GET",), ("individual",), target="analysis"),
    "analysis_app:file": Endpoint(("GET",), target="analysis"),
    "analysis_app:traces": Endpoint(("GET",), target="analysis"),
    "analysis_app:save": Endpoint(("POST",), ("folder",), target="analysis"),
    "analysis_app:delete": Endpoint(("GET", "POST"), ("confirm",), target="analysis"),
    "analysis_app:compare": Endpoint(("GET",), ("analysis",)),
    "analysis_app:compare_figures": Endpoint(("GET",), ("analysis",)),
    "analysis_app:compare_save": Endpoint(("POST",), ("analysis", "folder")),
    "analysis_app:comparison_status": Endpoint(("GET",), target="comparison"),
    "analysis_app:comparison_file": Endpoint(("GET",), target="comparison"),
    "analysis_app:comparison_delete": Endpoint(("GET", "POST"), ("confirm",), target="comparison"),
}

# A sane value for each <str:...>/<path:...> part, replaced in turn by each hostile value.
PATH_DEFAULTS = {"name": "STDOUT", "kind": "png", "label": "best"}
SITE_CONFS = ("models_app.urls", "nsg_app.urls", "analysis_app.urls")
SITE_CONF_MODULES = [import_module(name) for name in SITE_CONFS]


def _site_patterns() -> dict[str, URLPattern]:
    """The named URLs of rebuild_site/urls.py and of the apps it includes, by full name."""
    found: dict[str, URLPattern] = {}
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLPattern) and entry.name:
            found[entry.name] = entry
        elif isinstance(entry, URLResolver) and entry.urlconf_name in SITE_CONF_MODULES:
            for pattern in entry.url_patterns:
                found[f"{entry.namespace}:{pattern.name}"] = pattern
    return found


def test_every_endpoint_is_in_the_table():
    assert set(_site_patterns()) == set(ENDPOINTS)


@pytest.fixture
def site_objects(alice):
    """One of everything a URL can name, owned by alice."""
    ensure_demo_model()
    model = Optimisation.objects.get(source=Optimisation.Source.DEMO)
    package = package_create(optimisation=model, owner=alice, offspring_size=2, max_ngen=2)
    ParameterSet.objects.create(
        optimisation=model, owner=alice, version=1, parameters={model.key: model.parameters}
    )
    account = NsgAccount.objects.create(owner=alice, username="alice")
    account.set_password(USERS["alice"])
    account.save()
    common = {"owner": alice, "package": package}
    jobs = [  # each run has a results folder of its own
        Job.objects.create(
            backend="nsg", tool="BLUEPYOPT_EXPANSE", folder=f"{package.run_name}-1", **common
        ),
        Job.objects.create(
            backend="nsg",
            tool="BLUEPYOPT_EXPANSE",
            handle="NGBW-JOB-BLUEPYOPT_EXPANSE-" + "C" * 32,
            state=Job.State.ACTIVE,
            folder=f"{package.run_name}-2",
            **common,
        ),
        Job.objects.create(
            backend="local", state=Job.State.COLLECTED, folder=package.run_name, **common
        ),
    ]
    ResultFile.objects.create(
        job=jobs[2], name="STDOUT", storage_name="nowhere/STDOUT", size=1, sha256="0" * 64
    )
    analysis = Analysis.objects.create(
        owner=alice,
        source_kind=Analysis.Source.JOB,
        job=jobs[2],
        folder=package.run_name,
        status=Analysis.Status.DONE,
    )
    comparison = SavedComparison.objects.create(
        owner=alice,
        compared=[{"id": analysis.pk, "name": str(analysis), "folder": analysis.folder}],
        saved_to=f"BluePyOptAnalysis/alice/compare-{package.run_name}",
        status=SavedComparison.Status.SAVED,
        files=["comparison.json"],
    )
    comparison.analyses.set([analysis])
    refresh = RepositoryRefresh.objects.create(source_url="http://127.0.0.1:9/none")
    return {
        "comparison": [comparison.pk],
        "model": [model.pk],
        "package": [package.pk],
        "job": [job.pk for job in jobs],
        "analysis": [analysis.pk],
        "refresh": [refresh.pk],
    }


def _fields(name: str, endpoint: Endpoint) -> tuple[str, ...]:
    if name != "models_app:save_parameters":
        return endpoint.fields
    model = Optimisation.objects.get(source=Optimisation.Source.DEMO)
    bounds = [
        bound_field(row.section, row.name, bound)
        for row in parameter_table(model.parameters).optimised
        for bound in ("lower", "upper")
    ]
    return (*endpoint.fields, *bounds)


def _urls(name: str, endpoint: Endpoint, objects: dict) -> tuple[list[str], list[str]]:
    """The URL with real objects; and with hostile values in each part of its path."""
    pattern = _site_patterns()[name]
    converters = pattern.pattern.converters
    ids = objects.get(endpoint.target, [])
    int_parts = [part for part, c in converters.items() if type(c).__name__ == "IntConverter"]
    text_parts = [part for part in converters if part not in int_parts]
    base = {part: PATH_DEFAULTS[part] for part in text_parts}
    real, hostile = [], []
    for pk in ids or [None]:
        kwargs = dict(base)
        if int_parts:
            kwargs[int_parts[0]] = pk
        real.append(reverse(name, kwargs=kwargs or None))
        for part in text_parts:
            for value in HOSTILE.values():
                if value and "/" not in value:
                    hostile.append(reverse(name, kwargs={**kwargs, part: value}))
    if int_parts:
        placeholder = reverse(name, kwargs={**base, int_parts[0]: 987654321})
        for digits in ("0", "1" + "0" * 25, "9" * 5000):
            hostile.append(placeholder.replace("987654321", digits))
    return real, hostile


def _stored(prefix: str = "") -> list[str]:
    folders, files = default_storage.listdir(prefix) if default_storage.exists(prefix) else ([], [])
    found = [f"{prefix}{name}" for name in files]
    for folder in folders:
        found += _stored(f"{prefix}{folder}/")
    return found


def _written() -> tuple:
    counted = (
        Optimisation,
        ParameterSet,
        RunPackage,
        Job,
        ResultFile,
        Analysis,
        SavedComparison,
        NsgAccount,
    )
    return {model.__name__: model.objects.count() for model in counted}, sorted(_stored())


def _requests(name: str, endpoint: Endpoint) -> list[tuple[str, str, dict]]:
    """(method, label, data) for each hostile value in every field, all at once."""
    fields = _fields(name, endpoint)
    sent = []
    for method in endpoint.methods:
        if not fields and not endpoint.files:
            # Nothing is read: one request carrying every value under names it ignores.
            junk = {f"extra{i}": value for i, value in enumerate(HOSTILE.values())}
            sent.append((method, "unexpected fields", junk))
            continue
        for label, value in HOSTILE.items():
            data: dict = {field: value for field in fields}
            if method == "POST":
                for field in endpoint.files:
                    data[field] = SimpleUploadedFile("x.zip", value.encode("utf-8"))
            sent.append((method, label, data))
        # Wrong types: a list where one value is expected, text where a file is expected,
        # a file where text is expected.
        sent.append((method, "a list", {field: ["1", "2"] for field in fields}))
        if method == "POST":
            wrong = {field: "text" for field in endpoint.files}
            wrong.update({field: SimpleUploadedFile("a.txt", b"1") for field in fields})
            sent.append((method, "wrong types", wrong))
    return sent


def _hit_everything(client: Client, user, objects: dict) -> list[str]:
    problems = []
    for name, endpoint in ENDPOINTS.items():
        real, hostile = _urls(name, endpoint, objects)
        sent = [(url, request) for url in real for request in _requests(name, endpoint)]
        sent += [
            (url, (method, "a hostile path", {})) for url in hostile for method in endpoint.methods
        ]
        for url, (method, label, data) in sent:
            # Logout and "forget" act on the session and the account: start afresh.
            client.force_login(user)
            before = _written()
            if method == "GET":
                response = client.get(url, data)
            else:
                response = client.post(url, data)
            status = response.status_code
            if status >= 500 and not (endpoint.reports_outages and status == 503):
                problems.append(f"{method} {name} {url[:80]} with {label}: {status}")
            elif status >= 400 and _written() != before:
                problems.append(f"{method} {name} {url[:80]} with {label}: wrote on {status}")
    return problems


@pytest.mark.parametrize("role", ["owner", "staff"])
def test_no_hostile_value_gets_a_server_error_or_leaves_anything_behind(
    role, alice, staff, site_objects
):
    client = Client(raise_request_exception=False)
    user = alice if role == "owner" else staff

    problems = _hit_everything(client, user, site_objects)

    assert problems == []


def test_the_login_form_refuses_hostile_values_plainly(alice):
    client = Client(raise_request_exception=False)
    for label, value in HOSTILE.items():
        response = client.post("/login/", {"username": value, "password": value})

        assert response.status_code == 200, label
        assert "_auth_user_id" not in client.session, label
