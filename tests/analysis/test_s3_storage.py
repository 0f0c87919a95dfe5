"""The same analysis and save with S3 storage (a moto server on loopback)."""

from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.test import override_settings
from django.urls import reverse

from analysis_app import services

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(s3_server, settings):
    default = s3_server.new_bucket_storage("analyses")
    with override_settings(STORAGES={**settings.STORAGES, "default": default}):
        yield default["OPTIONS"]["bucket_name"]


def test_analyse_and_save_on_s3(s3, client, alice, django_capture_on_commit_callbacks):
    from models_app.demo_model import ensure_demo_model
    from models_app.models import Optimisation

    ensure_demo_model()  # its archive goes to the bucket too
    demo = Optimisation.objects.get(source="demo")
    analysis = services.analysis_create(owner=alice, source_kind="catalogue", optimisation=demo)
    services.analysis_run(analysis_id=analysis.pk)
    analysis.refresh_from_db()
    assert analysis.status == "done", analysis.error_message
    assert type(default_storage._wrapped).__name__ == "S3Storage"
    assert default_storage.exists(f"{analysis.result_prefix}/analysis.json")

    client.force_login(alice)
    figures = client.get(reverse("analysis_app:figures", args=[analysis.pk])).json()["figures"]
    assert len(figures["objectives"]["data"][0]["y"]) == 8
    hoc = client.get(reverse("analysis_app:file", args=[analysis.pk, "cell_best.hoc"]))
    assert b"begintemplate" in b"".join(hoc.streaming_content)

    with mock.patch(
        "analysis_app.tasks.save_analysis.delay",
        side_effect=lambda pk: services.analysis_save_write(analysis_id=pk),
    ):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("analysis_app:save", args=[analysis.pk]))
        analysis.refresh_from_db()
        assert analysis.save_status == "saved", analysis.save_error
        prefix = analysis.saved_to
        assert default_storage.exists(f"{prefix}/figures/traces.png")
        assert default_storage.exists(f"{prefix}/analysis.json")

        again = services.analysis_create(owner=alice, source_kind="catalogue", optimisation=demo)
        services.analysis_run(analysis_id=again.pk)
        again.refresh_from_db()
        with pytest.raises(services.SaveRefused, match="already exists"):
            services.analysis_save_start(analysis=again)
