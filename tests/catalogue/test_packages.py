"""Create zip file: the run package's layout, naming, bounds, fixes, determinism and access."""

import io
import json
import zipfile
from datetime import UTC, datetime

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from models_app.models import RunPackage
from models_app.services import package_create, parameter_set_save

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _download(client, package) -> zipfile.ZipFile:
    response = client.get(package.get_download_url())
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{package.filename}"'
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_create_zip_file_stores_a_package_with_the_chosen_settings(client, alice, demo_model):
    client.force_login(alice)

    response = client.post(
        f"/catalogue/{demo_model.pk}/package/", {"offspring_size": "4", "max_ngen": "3"}
    )

    assert response.status_code == 302
    package = RunPackage.objects.get(owner=alice)
    assert (
        package.run_name.startswith("CA1_pyr_cACpyr_ballstick3_")
        and package.run_name != demo_model.name
    )
    assert len(package.run_name.rsplit("_", 1)[1]) == 14
    archive = _download(client, package)
    names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {package.run_name}
    top = package.run_name
    for expected in (
        "init.py",
        "opt_neuron.py",
        "config/parameters.json",
        "model/template.py",
        "mechanisms/hd.mod",
        "morphology/ballstick3.swc",
        "checkpoints/",
        "figures/",
        "rebuild_manifest.json",
    ):
        assert f"{top}/{expected}" in names
    assert not any("seed1.pkl" in name or ".hoc" in name for name in names)
    init = archive.read(f"{top}/init.py").decode()
    assert (
        '"--offspring_size=4"' in init
        and '"--max_ngen=3"' in init
        and "./checkpoints/checkpoint.pkl" in init
    )
    assert "**kwargs" in archive.read(f"{top}/model/template.py").decode()
    manifest = json.loads(archive.read(f"{top}/rebuild_manifest.json"))
    assert [fix["id"] for fix in manifest["fixes"]] == ["replace-axon-kwargs"]
    page = client.get(f"/catalogue/{demo_model.pk}/?tab=optimisation").content.decode()
    assert package.filename in page and "replace_axon" in page


def test_package_carries_the_chosen_parameter_version(client, alice, demo_model):
    version = parameter_set_save(
        optimisation=demo_model, owner=alice, bounds=[("somatic", "gkbar_hh", "0.02", "0.03")]
    )
    client.force_login(alice)

    client.post(
        f"/catalogue/{demo_model.pk}/package/",
        {"offspring_size": "2", "max_ngen": "2", "version": str(version.version)},
    )

    package = RunPackage.objects.get(owner=alice)
    assert package.parameter_set == version
    archive = _download(client, package)
    parameters = json.loads(archive.read(f"{package.run_name}/config/parameters.json"))
    assert ["gkbar_hh", 0.02, 0.03, "uniform"] in parameters["CA1_PC_demo"]["optimized"]["somatic"]


def test_same_inputs_give_the_same_bytes_and_other_bounds_do_not(alice, demo_model):
    moment = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    first = package_create(
        optimisation=demo_model, owner=alice, offspring_size=2, max_ngen=2, now=moment
    )
    second = package_create(
        optimisation=demo_model, owner=alice, offspring_size=2, max_ngen=2, now=moment
    )
    version = parameter_set_save(
        optimisation=demo_model, owner=alice, bounds=[("somatic", "gkbar_hh", "0.02", "0.03")]
    )
    third = package_create(
        optimisation=demo_model,
        owner=alice,
        offspring_size=2,
        max_ngen=2,
        now=moment,
        parameter_set=version,
    )

    def content(package):
        with default_storage.open(package.file, "rb") as handle:
            return handle.read()

    assert first.sha256 == second.sha256 and content(first) == content(second)
    assert third.sha256 != first.sha256
    assert first.run_name == "CA1_pyr_cACpyr_ballstick3_20261125100000"


def test_one_generation_warns_that_no_checkpoint_will_be_written(client, alice, demo_model):
    client.force_login(alice)

    response = client.post(
        f"/catalogue/{demo_model.pk}/package/",
        {"offspring_size": "2", "max_ngen": "1"},
        follow=True,
    )

    assert "writes no checkpoint" in response.content.decode()


@pytest.mark.parametrize(
    ("offspring", "generations"),
    [("0", "2"), ("2", "0"), ("2.5", "2"), ("2", "x"), ("100000", "2")],
)
def test_bad_settings_are_refused_next_to_their_field(
    client, alice, demo_model, offspring, generations
):
    client.force_login(alice)

    response = client.post(
        f"/catalogue/{demo_model.pk}/package/",
        {"offspring_size": offspring, "max_ngen": generations},
    )

    assert response.status_code == 400
    assert "invalid-feedback" in response.content.decode()
    assert not RunPackage.objects.exists()


def test_other_users_cannot_download_a_package(client, alice, bob, demo_model):
    package = package_create(optimisation=demo_model, owner=alice, offspring_size=2, max_ngen=2)
    client.force_login(bob)

    assert client.get(package.get_download_url()).status_code == 404
    assert (
        package.filename
        not in client.get(f"/catalogue/{demo_model.pk}/?tab=optimisation").content.decode()
    )


def test_build_package_command_uses_the_same_code(tmp_path, alice, demo_model, capsys):
    version = parameter_set_save(
        optimisation=demo_model, owner=alice, bounds=[("somatic", "gkbar_hh", "0.02", "0.03")]
    )
    out = tmp_path / "run.zip"

    call_command(
        "build_package",
        demo_model.name,
        "--parameters",
        str(version.pk),
        "--offspring",
        "3",
        "--generations",
        "2",
        "-o",
        str(out),
    )

    archive = zipfile.ZipFile(out)
    top = archive.namelist()[0].split("/")[0]
    assert '"--offspring_size=3"' in archive.read(f"{top}/init.py").decode()
    assert ["gkbar_hh", 0.02, 0.03, "uniform"] in json.loads(
        archive.read(f"{top}/config/parameters.json")
    )["CA1_PC_demo"]["optimized"]["somatic"]
    assert "Fixed model/template.py" in capsys.readouterr().out


def test_source_code_panel_shows_the_package_files(client, alice, demo_model):
    client.force_login(alice)

    page = client.get(
        f"/catalogue/{demo_model.pk}/source/?offspring_size=6&max_ngen=3"
    ).content.decode()

    for path in (
        "init.py",
        "opt_neuron.py",
        "model/evaluator.py",
        "model/template.py",
        "mechanisms/hd.mod",
    ):
        assert f"<code>{path}</code>" in page
    assert "--offspring_size=6" in page
    assert 'class="highlight"' in page


def test_after_create_zip_file_the_settings_and_source_show_the_package_built(
    client, alice, demo_model
):
    client.force_login(alice)

    response = client.post(
        f"/catalogue/{demo_model.pk}/package/", {"offspring_size": "7", "max_ngen": "5"}
    )

    package = RunPackage.objects.get(owner=alice)
    page = client.get(response["Location"]).content.decode()
    assert 'name="offspring_size" id="id_offspring_size" value="7"' in page
    assert 'name="max_ngen" id="id_max_ngen" value="5"' in page
    assert f'data-package="{package.pk}"' in page
    source = client.get(f"/catalogue/{demo_model.pk}/source/?package={package.pk}").content.decode()
    assert f"The files of <code>{package.filename}</code>, as built." in source
    assert "--offspring_size=7" in source and "--max_ngen=5" in source
