"""A model whose protocols fail in NEURON: the analysis page and `manage.py analyse` say which
protocol failed and NEURON's own error, not only BluePyOpt's "Failed to run Neuron Sweep
Protocol"."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from analysis_app.models import Analysis
from tests.fixtures.demo import demo_missing_mechanism, protocol_failure_pattern

from .conftest import pack, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def failing_output(tmp_path) -> bytes:
    """An NSG-shaped output.tar.gz of the demo naming a mechanism no .mod file defines."""
    job = tmp_path / "job"
    demo_missing_mechanism(job)
    return pack(job, tmp_path / "output.tar.gz").read_bytes()


@pytest.mark.django_db(transaction=True)
def test_the_analysis_page_names_the_protocol_and_neuron_s_error(
    client, alice, failing_output, running_worker
):
    client.force_login(alice)
    client.post(
        reverse("analysis_app:analyses"),
        {
            "source": "upload",
            "top": 1,
            "output": SimpleUploadedFile("output.tar.gz", failing_output),
        },
    )
    analysis = wait_for(
        Analysis.objects.get(owner=alice), lambda row: not row.is_active, what="the failure"
    )

    assert analysis.status == "failed"
    status = client.get(reverse("analysis_app:status", args=[analysis.pk])).json()
    assert re.search(protocol_failure_pattern(), status["error"]["message"]), status
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert "The model&#x27;s code failed" in page
    shown = re.search(protocol_failure_pattern(), page)
    assert shown, analysis.error_message
    assert f"Protocol {analysis.error_details['protocol']} failed" in page


def test_manage_py_analyse_names_the_protocol_and_neuron_s_error(tmp_path, db):
    folder = demo_missing_mechanism(tmp_path / "model", isolate=False)

    with pytest.raises(CommandError) as caught:
        call_command(
            "analyse",
            str(folder),
            "-o",
            str(tmp_path / "out"),
            stdout=StringIO(),
            stderr=StringIO(),
        )

    assert str(caught.value).startswith("The analysis failed (model_error): Protocol ")
    assert re.search(protocol_failure_pattern(), str(caught.value)), str(caught.value)
    assert (tmp_path / "out" / "error.json").is_file()
