"""The same analysis and save with S3 storage (a moto server on loopback)."""

import subprocess
import sys
import time
from unittest import mock

import boto3
import pytest
from django.core.files.storage import default_storage
from django.test import override_settings
from django.urls import reverse

from analysis_app import services
from rebuild_site.services import free_port, wait_for_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, timeout=30, process=server)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)
    log.close()


@pytest.fixture
def s3(s3_endpoint, settings):
    bucket = f"analyses-{time.monotonic_ns()}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    default = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": s3_endpoint,
            "access_key": "testing",
            "secret_key": "testing",
            "region_name": "us-east-1",
            "default_acl": None,
            "file_overwrite": True,
        },
    }
    with override_settings(STORAGES={**settings.STORAGES, "default": default}):
        yield bucket


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
