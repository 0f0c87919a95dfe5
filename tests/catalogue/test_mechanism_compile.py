"""A model's mechanisms compile in the background on import (a real worker and nrnivmodl).

A model whose .mod files do not compile is marked with nrnivmodl's own error line before
anyone runs it, and Run here / Run NSG simulation refuse it with that message.
"""

import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from models_app import services
from models_app.models import Optimisation
from models_app.services import mechanisms_requeue_stale, package_create
from nsg_app.models import Job
from tests.catalogue.conftest import zip_folder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BROKEN_MOD = """NEURON {
    SUFFIX broken
    RANGE g
}
PARAMETER { g = 0.001 }
BREAKPOINT {
    g = g +* 2
}
"""
NRNIVMODL_LINE = "Error: Illegal block at line 7 in file broken.mod"


def _wait_for_mechanisms(model: Optimisation, *, timeout: float = 120) -> Optimisation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model.refresh_from_db()
        if not model.mechanisms_pending:
            return model
        time.sleep(0.5)
    pytest.fail(f"{model.name}'s mechanisms were still {model.mechanisms_status} after {timeout} s")


def _upload(client, folder) -> Optimisation:
    response = client.post(
        "/catalogue/upload/",
        {
            "archive": SimpleUploadedFile(
                "model.zip", zip_folder(folder, top=folder.name), "application/zip"
            )
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    return Optimisation.objects.get(name=folder.name)


def test_a_model_whose_mod_file_does_not_compile_is_marked_and_cannot_run(
    client, alice, demo_copy, running_worker
):
    folder = demo_copy("CA1_pyr_cACpyr_brokenmod_20240101120000")
    (folder / "mechanisms" / "broken.mod").write_text(BROKEN_MOD)
    client.force_login(alice)

    model = _upload(client, folder)
    assert "compiling mechanisms..." in client.get(model.get_absolute_url()).content.decode()
    model = _wait_for_mechanisms(model)

    assert model.mechanisms_status == Optimisation.Mechanisms.FAILED
    assert NRNIVMODL_LINE in model.mechanisms_errors.splitlines()
    page = client.get(model.get_absolute_url()).content.decode()
    assert "mechanisms did not compile" in page and NRNIVMODL_LINE in page

    package = package_create(optimisation=model, owner=alice, offspring_size=2, max_ngen=2)
    for url, data in (
        (f"/jobs/run-here/{package.pk}/", {"cores_per_node": "1", "runtime_hours": "1"}),
        (
            f"/jobs/run-nsg/{package.pk}/",
            {
                "tool": "BLUEPYOPT_EXPANSE",
                "nodes": "1",
                "cores_per_node": "2",
                "runtime_hours": "1",
            },
        ),
    ):
        shown = client.get(url).content.decode()
        assert "did not compile, so it cannot run" in shown and NRNIVMODL_LINE in shown
        response = client.post(url, data)
        assert response.status_code == 400
        assert NRNIVMODL_LINE in response.content.decode()
    assert not Job.objects.exists()


def test_the_demo_models_mechanisms_compile_after_import(client, alice, demo_copy, running_worker):
    folder = demo_copy("CA1_pyr_cACpyr_goodmod_20240101120000")
    client.force_login(alice)

    model = _wait_for_mechanisms(_upload(client, folder))

    assert model.mechanisms_status == Optimisation.Mechanisms.COMPILED
    assert model.mechanisms_errors == ""
    assert "mechanisms compiled" in client.get(model.get_absolute_url()).content.decode()


def test_a_compile_whose_task_was_lost_is_queued_again_by_the_sweep(
    demo_copy, running_worker, monkeypatch
):
    lost = []
    monkeypatch.setattr(services, "_queue_compile", lost.append)  # the message never arrives
    folder = demo_copy("CA1_pyr_cACpyr_lostmod_20240101120000")
    model = services.optimisation_import(
        source=folder, kind=Optimisation.Source.COMMAND
    ).optimisation
    monkeypatch.undo()
    assert lost == [model.pk]

    assert mechanisms_requeue_stale() == []  # only just imported: not stale yet
    time.sleep(2)
    model.refresh_from_db()
    assert model.mechanisms_status == Optimisation.Mechanisms.PENDING

    later = timezone.now() + timedelta(minutes=6)
    assert mechanisms_requeue_stale(now=later) == [model.pk]
    assert mechanisms_requeue_stale(now=later) == []  # queued once per sweep interval

    assert _wait_for_mechanisms(model).mechanisms_status == Optimisation.Mechanisms.COMPILED
