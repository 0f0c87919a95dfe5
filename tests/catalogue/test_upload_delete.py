"""A user deletes their own upload: its zip, versions and packages go, unless runs need it."""

import pytest
from django.core.files.storage import default_storage

from analysis_app.models import Analysis
from models_app.models import Optimisation, ParameterSet, RunPackage
from models_app.services import optimisation_import, package_create
from nsg_app.models import Job

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def upload(alice, demo_copy):
    return optimisation_import(
        source=demo_copy(), kind=Optimisation.Source.UPLOAD, owner=alice
    ).optimisation


def _version(optimisation, owner) -> ParameterSet:
    return ParameterSet.objects.create(
        optimisation=optimisation,
        owner=owner,
        version=1,
        parameters={optimisation.key: optimisation.parameters},
    )


def test_an_upload_is_deleted_with_its_files_after_a_confirmation(client, alice, bob, upload):
    package = package_create(optimisation=upload, owner=alice, offspring_size=2, max_ngen=2)
    _version(upload, alice)
    files = [upload.archive, package.file]
    url = f"/catalogue/{upload.pk}/delete/"

    client.force_login(bob)
    assert client.get(url).status_code == 404
    assert client.post(url, {"confirm": "yes"}).status_code == 404
    assert Optimisation.objects.filter(pk=upload.pk).exists()

    client.force_login(alice)
    assert "Delete…" in client.get(upload.get_absolute_url()).content.decode()
    page = client.get(url).content.decode()
    assert upload.archive in page and "Its 1 run package" in page
    assert client.post(url).status_code == 400  # not confirmed: nothing deleted
    assert Optimisation.objects.filter(pk=upload.pk).exists()

    response = client.post(url, {"confirm": "yes"}, follow=True)

    assert "was deleted, with its 2 stored file(s)" in response.content.decode()
    assert not Optimisation.objects.filter(pk=upload.pk).exists()
    assert not RunPackage.objects.filter(pk=package.pk).exists()
    assert not ParameterSet.objects.filter(optimisation_id=upload.pk).exists()
    assert not any(default_storage.exists(name) for name in files)


def test_catalogue_models_cannot_be_deleted(client, alice, staff, demo_model):
    client.force_login(alice)
    assert "Delete…" not in client.get(demo_model.get_absolute_url()).content.decode()
    for user in (alice, staff):
        client.force_login(user)
        assert (
            client.post(f"/catalogue/{demo_model.pk}/delete/", {"confirm": "yes"}).status_code
            == 404
        )
    assert default_storage.exists(demo_model.archive)


def test_an_upload_that_runs_or_others_need_is_kept_whole(client, alice, bob, upload):
    package = package_create(optimisation=upload, owner=alice, offspring_size=2, max_ngen=2)
    job = Job.objects.create(
        owner=alice, backend="local", folder=package.run_name, package=package, state="collected"
    )
    url = f"/catalogue/{upload.pk}/delete/"
    client.force_login(alice)

    def refused(reason: str) -> None:
        assert reason in client.get(url).content.decode()
        page = client.post(url, {"confirm": "yes"}, follow=True).content.decode()
        assert "Not deleted: " in page and reason in page
        assert Optimisation.objects.filter(pk=upload.pk).exists()
        assert RunPackage.objects.filter(pk=package.pk).exists()
        assert default_storage.exists(upload.archive) and default_storage.exists(package.file)

    refused(f"1 job(s) were run from its run packages ({package.run_name}): delete them first")
    job.delete()
    analysis = Analysis.objects.create(
        owner=alice, source_kind="catalogue", optimisation=upload, status="running"
    )
    refused("1 analysis(es) of it are running")
    analysis.delete()
    _version(upload, bob)
    refused("Other users have 1 run package(s) or parameter version(s) of it")
    ParameterSet.objects.filter(owner=bob).delete()
    Optimisation.objects.filter(pk=upload.pk).update(mechanisms_status="compiling")
    refused("Its mechanisms are being compiled")


def test_finished_analyses_of_a_deleted_upload_keep_their_results(client, alice, upload):
    analysis = Analysis.objects.create(
        owner=alice,
        source_kind="catalogue",
        optimisation=upload,
        status="done",
        result_prefix="analyses/alice/kept",
    )
    client.force_login(alice)
    assert (
        "1 analysis of it keeps what it stored"
        in client.get(f"/catalogue/{upload.pk}/delete/").content.decode()
    )

    client.post(f"/catalogue/{upload.pk}/delete/", {"confirm": "yes"})

    analysis.refresh_from_db()
    assert analysis.optimisation is None and analysis.result_prefix == "analyses/alice/kept"


def test_staff_may_delete_a_users_upload(client, staff, upload):
    client.force_login(staff)

    client.post(f"/catalogue/{upload.pk}/delete/", {"confirm": "yes"})

    assert not Optimisation.objects.filter(pk=upload.pk).exists()
    assert not default_storage.exists(upload.archive)
