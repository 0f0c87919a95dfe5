"""Import by each route: upload, the command, a URL, and "Refresh from repository"."""

import time

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from models_app.models import Optimisation, RepositoryRefresh
from tests.catalogue.conftest import demo_meta, zip_folder

pytestmark = pytest.mark.postgres


def _upload(client, name: str, data: bytes):
    return client.post(
        "/catalogue/upload/", {"archive": SimpleUploadedFile(name, data, "application/zip")}
    )


@pytest.mark.django_db
def test_uploaded_model_is_private_to_its_owner_until_published(
    client, alice, bob, staff, demo_copy
):
    folder = demo_copy("CA1_pyr_cACpyr_mine_20240101120000")
    client.force_login(alice)

    response = _upload(client, "mine.zip", zip_folder(folder, top=folder.name))

    model = Optimisation.objects.get(name="CA1_pyr_cACpyr_mine_20240101120000")
    assert response.status_code == 302 and response["Location"] == f"/catalogue/{model.pk}/"
    assert model.owner == alice and not model.published
    assert model.cell_type == "pyramidal" and model.etype == "cACpyr" and model.morphology == "mine"
    assert default_storage.exists(model.archive)
    assert "CA1_pyr_cACpyr_mine_20240101120000" in client.get("/catalogue/").content.decode()

    client.force_login(bob)
    assert "CA1_pyr_cACpyr_mine_20240101120000" not in client.get("/catalogue/").content.decode()
    assert client.get(f"/catalogue/{model.pk}/").status_code == 404

    client.force_login(staff)
    assert client.get(f"/catalogue/{model.pk}/").status_code == 200
    client.post(f"/catalogue/{model.pk}/publish/", {"published": "1"})
    client.force_login(bob)
    assert client.get(f"/catalogue/{model.pk}/").status_code == 200


@pytest.mark.django_db
def test_upload_with_files_at_the_zip_root_is_named_after_the_zip(client, alice, demo_copy):
    folder = demo_copy()
    client.force_login(alice)

    _upload(client, "CA1_pyr_cACpyr_flat_20240202020202.zip", zip_folder(folder))

    assert Optimisation.objects.filter(
        name="CA1_pyr_cACpyr_flat_20240202020202", owner=alice
    ).exists()


@pytest.mark.django_db
def test_model_page_header_names_cell_type_and_etype_only_when_known(client, alice, demo_copy):
    """HBP folders like W_20230711100058 name no cell type: the header leaves both out."""
    client.force_login(alice)
    named = demo_copy("CA1_pyr_cACpyr_mine_20240101120000")
    bare = demo_copy("W_20240303030303")
    _upload(client, "named.zip", zip_folder(named, top=named.name))
    _upload(client, "bare.zip", zip_folder(bare, top=bare.name))

    def header(name: str) -> str:
        model = Optimisation.objects.get(name=name)
        page = client.get(f"/catalogue/{model.pk}/").content.decode()
        line = page.split('<p class="text-muted mb-2">', 1)[1].split("</p>", 1)[0]
        return " ".join(line.split()), model

    line, model = header("CA1_pyr_cACpyr_mine_20240101120000")
    assert line.startswith("pyramidal · e-type cACpyr · morphology mine")
    line, model = header("W_20240303030303")
    assert model.cell_type == "" and model.etype == ""
    assert line.startswith(f"morphology {model.morphology}")
    assert "?" not in line and "e-type" not in line


@pytest.mark.django_db
def test_uploading_the_same_name_twice_is_refused(client, alice, demo_copy):
    folder = demo_copy()
    client.force_login(alice)
    _upload(client, "a.zip", zip_folder(folder, top=folder.name))

    response = _upload(client, "a.zip", zip_folder(folder, top=folder.name))

    assert response.status_code == 400
    assert "already in your catalogue" in response.content.decode()
    assert Optimisation.objects.filter(owner=alice).count() == 1


@pytest.mark.django_db
def test_command_imports_a_folder_a_zip_and_a_url(tmp_path, demo_copy, github, capsys):
    folder = demo_copy("CA1_pyr_cACpyr_one_20230101000000")
    call_command("import_model", str(folder))
    assert capsys.readouterr().out.strip() == "CA1_pyr_cACpyr_one_20230101000000"

    other = demo_copy("CA1_pyr_cACpyr_two_20230101000000")
    zip_path = tmp_path / "CA1_pyr_cACpyr_two_20230101000000.zip"
    zip_path.write_bytes(zip_folder(other, top=other.name))
    call_command("import_model", str(zip_path))
    assert capsys.readouterr().out.strip() == "CA1_pyr_cACpyr_two_20230101000000"

    third = demo_copy("CA1_int_cNAC_three_20230101000000")
    url = github.publish(
        third,
        meta={**demo_meta(), "cell_type": "interneuron", "e-type": "cNAC", "species": "Mouse"},
    )
    call_command("import_model", url)
    assert capsys.readouterr().out.strip() == "CA1_int_cNAC_three_20230101000000"
    model = Optimisation.objects.get(name="CA1_int_cNAC_three_20230101000000")
    assert model.source_url == url and model.species == "Mouse" and model.etype == "cNAC"
    assert model.published and model.owner is None


@pytest.mark.django_db
def test_command_reports_every_problem_and_stores_nothing(tmp_path):
    (tmp_path / "broken").mkdir()
    with pytest.raises(CommandError) as error:
        call_command("import_model", str(tmp_path / "broken"))
    assert "config/features.json" in str(error.value)
    assert "opt_neuron.py" in str(error.value)
    assert Optimisation.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_staff_refresh_from_repository_imports_then_finds_nothing_new(
    client, staff, github, demo_copy, running_worker
):
    for name in ("CA1_pyr_cACpyr_alpha_20240101000000", "CA1_int_bAC_beta_20240101000000"):
        github.publish(demo_copy(name), meta={**demo_meta(), "contributors": "Test Lab"})
    broken = demo_copy("CA1_int_bAC_broken_20240101000000")
    (broken / "config" / "morph.json").write_text('{"CA1_PC_demo": "missing.swc"}')
    github.publish(broken)
    client.force_login(staff)

    refresh = _refresh_and_wait(client)

    assert refresh.status == "done" and refresh.total == 3 and refresh.done == 3
    assert sorted(refresh.imported) == [
        "CA1_int_bAC_beta_20240101000000",
        "CA1_pyr_cACpyr_alpha_20240101000000",
    ]
    assert [name for name, _ in refresh.problems] == ["CA1_int_bAC_broken_20240101000000"]
    assert "missing.swc" in refresh.problems[0][1]
    page = client.get("/catalogue/").content.decode()
    assert "CA1_pyr_cACpyr_alpha_20240101000000" in page and "Test Lab" in page
    assert not Optimisation.objects.filter(name="CA1_int_bAC_broken_20240101000000").exists()
    assert "missing.swc" in page  # the problem is shown to staff beside the progress

    again = _refresh_and_wait(client)
    assert again.imported == [] and sorted(again.unchanged) == sorted(refresh.imported)


def _refresh_and_wait(client) -> RepositoryRefresh:
    response = client.post("/catalogue/refresh/")
    assert response.status_code == 302
    refresh = RepositoryRefresh.objects.first()
    # The refresh may wait in the queue behind the compiles of the models just imported
    # (nrnivmodl takes from seconds to a minute on a busy 2-core machine).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = client.get(f"/catalogue/refresh/{refresh.pk}/").json()
        if not state["active"]:
            break
        time.sleep(0.2)
    refresh.refresh_from_db()
    return refresh


@pytest.mark.django_db
def test_refresh_is_for_staff_only(client, alice):
    client.force_login(alice)
    assert client.post("/catalogue/refresh/").status_code == 403
    assert RepositoryRefresh.objects.count() == 0


@pytest.mark.django_db
def test_catalogue_filters_by_cell_type_and_etype_and_searches(client, alice, demo_copy):
    from models_app.services import optimisation_import

    for name in (
        "CA1_pyr_cACpyr_aaa_20240101000000",
        "CA1_int_bAC_bbb_20240101000000",
        "CA1_int_cNAC_ccc_20240101000000",
    ):
        optimisation_import(source=demo_copy(name), kind="command", published=True)
    client.force_login(alice)

    def names(query: str) -> set[str]:
        page = client.get(f"/catalogue/?{query}").content.decode()
        return {n for n in ("aaa", "bbb", "ccc") if f"_{n}_" in page}

    assert names("") == {"aaa", "bbb", "ccc"}
    assert names("cell_type=interneuron") == {"bbb", "ccc"}
    assert names("cell_type=interneuron&etype=bAC") == {"bbb"}
    assert names("q=ccc") == {"ccc"}
