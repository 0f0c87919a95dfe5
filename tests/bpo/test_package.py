import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from models_app.bpo.archive import extract_zip
from models_app.bpo.optimisation import InvalidOptimisation, find_root, validate_optimisation
from models_app.bpo.package import (
    InvalidPackageRequest,
    build_package,
    init_script,
    max_ngen_warning,
    run_settings_errors,
    seed_package,
)
from models_app.bpo.parameters import apply_bounds

from .builders import KEY, NAME, TEMPLATE_PY, parameters_content

RUN = "CA1_pyr_cACpyr_testcell_20240305140709"


def build(root, **overrides) -> tuple[bytes, object]:
    options = {"run_name": RUN, "offspring_size": 10, "max_ngen": 2} | overrides
    buffer = io.BytesIO()
    result = build_package(root, out=buffer, **options)
    return buffer.getvalue(), result


def entries(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def read(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(f"{RUN}/{name}")


# --- layout ----------------------------------------------------------------------------


def test_package_holds_exactly_the_run_files_under_one_top_folder(optimisation_dir):
    data, result = build(optimisation_dir)

    assert entries(data) == [
        f"{RUN}/",
        f"{RUN}/__init__.py",
        f"{RUN}/checkpoints/",
        f"{RUN}/config/",
        f"{RUN}/config/features.json",
        f"{RUN}/config/morph.json",
        f"{RUN}/config/parameters.json",
        f"{RUN}/config/protocols.json",
        f"{RUN}/figures/",
        f"{RUN}/init.py",
        f"{RUN}/mechanisms/",
        f"{RUN}/mechanisms/leak.mod",
        f"{RUN}/model/",
        f"{RUN}/model/__init__.py",
        f"{RUN}/model/analysis.py",
        f"{RUN}/model/evaluator.py",
        f"{RUN}/model/template.py",
        f"{RUN}/morphology/",
        f"{RUN}/morphology/testcell.asc",
        f"{RUN}/opt_neuron.py",
        f"{RUN}/rebuild_manifest.json",
        f"{RUN}/zipfolder.py",
    ]
    assert result.entries == tuple(entries(data))
    assert result.size == len(data)


def test_checkpoints_and_figures_are_empty_folder_entries(optimisation_dir):
    data, _ = build(optimisation_dir)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for folder in ("checkpoints", "figures"):
            info = archive.getinfo(f"{RUN}/{folder}/")
            assert info.is_dir()
            assert info.file_size == 0
        assert not any(
            "/checkpoints/" in name and not name.endswith("/") for name in archive.namelist()
        )


def test_extracted_package_is_itself_a_valid_optimisation(optimisation_dir, tmp_path):
    data, _ = build(optimisation_dir)
    extracted = tmp_path / "extracted"

    extract_zip(io.BytesIO(data), extracted)

    root = find_root(extracted)
    assert root.name == RUN
    assert validate_optimisation(root) == []
    assert (root / "checkpoints").is_dir() and (root / "figures").is_dir()


def test_original_configs_are_copied_unchanged(optimisation_dir):
    data, _ = build(optimisation_dir)

    for kind in ("features", "parameters", "protocols", "morph"):
        original = (optimisation_dir / "config" / f"{kind}.json").read_bytes()
        assert read(data, f"config/{kind}.json") == original


# --- parameters ------------------------------------------------------------------------


def test_given_parameters_replace_parameters_json_with_four_space_indent(optimisation_dir):
    original = (optimisation_dir / "config" / "parameters.json").read_bytes()
    parameters = apply_bounds({KEY: parameters_content()}, KEY, [("axonal", "Ra", 60, 90)])

    data, result = build(optimisation_dir, parameters=parameters)

    packaged = read(data, "config/parameters.json").decode()
    assert json.loads(packaged) == parameters
    assert packaged == json.dumps(parameters, indent=4) + "\n"
    assert (optimisation_dir / "config" / "parameters.json").read_bytes() == original
    assert result.manifest["parameters"] == {
        "replaced": True,
        "changed_bounds": [
            {
                "section": "axonal",
                "name": "Ra",
                "lower": 60,
                "upper": 90,
                "original_lower": 50,
                "original_upper": 100,
            }
        ],
    }


def test_parameters_for_another_key_are_refused(optimisation_dir):
    with pytest.raises(InvalidPackageRequest) as caught:
        build(optimisation_dir, parameters={"OTHER": parameters_content()})

    assert caught.value.problems == [
        f"The new parameters must be a parameters.json document whose one key is '{KEY}'."
    ]


def test_parameters_with_unordered_bounds_are_refused(optimisation_dir):
    parameters = {KEY: parameters_content()}
    parameters[KEY]["optimized"]["axonal"][1] = ["Ra", 100, 50, "secvar"]

    with pytest.raises(InvalidPackageRequest) as caught:
        build(optimisation_dir, parameters=parameters)

    assert caught.value.problems == [
        "parameters.json: optimised parameter Ra (axonal): the lower bound 100 must be less "
        "than the upper bound 50."
    ]


# --- legacy fixes ----------------------------------------------------------------------


def test_legacy_replace_axon_is_fixed_in_the_package_only(optimisation_dir):
    data, result = build(optimisation_dir)

    packaged = read(data, "model/template.py").decode()
    assert "def replace_axon(sim=None, icell=None, **kwargs):" in packaged
    assert (optimisation_dir / "model" / "template.py").read_text() == TEMPLATE_PY
    assert [(fix.id, fix.file) for fix in result.fixes] == [
        ("replace-axon-kwargs", "model/template.py")
    ]


def test_manifest_records_source_settings_and_fixes(optimisation_dir):
    data, result = build(optimisation_dir, offspring_size=12, max_ngen=3)

    manifest = json.loads(read(data, "rebuild_manifest.json"))
    assert manifest == result.manifest
    assert manifest["source"] == {"name": NAME, "key": KEY}
    assert manifest["run"] == {
        "name": RUN,
        "offspring_size": 12,
        "max_ngen": 3,
        "entry": "init.py",
        "command": "python3 opt_neuron.py --max_ngen=3 --offspring_size=12 --start "
        "--checkpoint ./checkpoints/checkpoint.pkl",
    }
    assert manifest["parameters"] == {"replaced": False, "changed_bounds": []}
    assert manifest["fixes"] == [
        {
            "id": "replace-axon-kwargs",
            "file": "model/template.py",
            "description": result.fixes[0].description,
        }
    ]
    assert manifest["warnings"] == []


def test_source_name_can_be_given_for_the_manifest(optimisation_dir):
    _, result = build(optimisation_dir, source_name="W_20230711100058")

    assert result.manifest["source"]["name"] == "W_20230711100058"


# --- init.py ---------------------------------------------------------------------------


def test_init_script_runs_the_optimisation_from_its_folder_and_forwards_the_exit_code(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "init.py").write_text(init_script(offspring_size=7, max_ngen=3))
    (folder / "opt_neuron.py").write_text(
        "import os, sys\n"
        "open('arguments.txt', 'w').write(' '.join(sys.argv[1:]))\n"
        "sys.exit(3 if os.path.isdir('checkpoints') and os.path.isdir('figures') else 1)\n"
    )

    completed = subprocess.run([sys.executable, str(folder / "init.py")], cwd=tmp_path)

    assert completed.returncode == 3
    assert (folder / "arguments.txt").read_text() == (
        "--max_ngen=3 --offspring_size=7 --start --checkpoint ./checkpoints/checkpoint.pkl"
    )


_SEED_PROBE = "import os\nopen('seed.txt', 'w').write(os.environ['BLUEPYOPT_SEED'])\n"


def _seed_seen(tmp_path, init: str, env: dict) -> str:
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "init.py").write_text(init)
    (folder / "opt_neuron.py").write_text(_SEED_PROBE)
    completed = subprocess.run(
        [sys.executable, "init.py"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    seed = (folder / "seed.txt").read_text()
    assert f"BLUEPYOPT_SEED={seed}" in completed.stdout  # STDOUT says which seed ran
    return seed


def test_a_package_run_twice_draws_a_fresh_seed_unless_the_environment_names_one(tmp_path):
    init = init_script(offspring_size=2, max_ngen=2)
    env = {k: v for k, v in os.environ.items() if k != "BLUEPYOPT_SEED"}

    first, second = _seed_seen(tmp_path, init, env), _seed_seen(tmp_path, init, env)
    chosen = _seed_seen(tmp_path, init, {**env, "BLUEPYOPT_SEED": "77"})

    assert first != second and first.isdigit() and second.isdigit()
    assert chosen == "77"


def test_a_seeded_copy_runs_with_its_seed_and_changes_nothing_else(optimisation_dir, tmp_path):
    data, _ = build(optimisation_dir, offspring_size=6, max_ngen=3)
    seeded = io.BytesIO()

    assert seed_package(io.BytesIO(data), seeded, seed=4242) is True

    copy = seeded.getvalue()
    assert entries(copy) == entries(data)
    for name in entries(data):
        if not name.endswith(("/", "/init.py", "/rebuild_manifest.json")):
            assert read(copy, name.removeprefix(f"{RUN}/")) == read(
                data, name.removeprefix(f"{RUN}/")
            )
    init = read(copy, "init.py").decode()
    assert init == init_script(offspring_size=6, max_ngen=3, seed=4242)
    manifest = json.loads(read(copy, "rebuild_manifest.json"))
    assert manifest["run"]["seed"] == 4242 and manifest["run"]["max_ngen"] == 3
    # NSG passes no environment: the seed in init.py wins over any the job's machine has.
    env = {**os.environ, "BLUEPYOPT_SEED": "1"}
    assert _seed_seen(tmp_path, init, env) == "4242"


def test_a_package_not_built_here_is_copied_unchanged(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("job/init.py", "print('mine')\n")
    copy = io.BytesIO()

    assert seed_package(io.BytesIO(buffer.getvalue()), copy, seed=5) is False
    assert copy.getvalue() == buffer.getvalue()


@pytest.mark.parametrize("seed", [-1, 2**32, "12", True])
def test_a_bad_seed_is_refused(optimisation_dir, seed):
    data, _ = build(optimisation_dir)

    with pytest.raises(InvalidPackageRequest, match="seed must be a whole number"):
        seed_package(io.BytesIO(data), io.BytesIO(), seed=seed)


def test_packaged_init_script_carries_the_run_settings(optimisation_dir):
    data, _ = build(optimisation_dir, offspring_size=20, max_ngen=5)

    init = read(data, "init.py").decode()
    assert init == init_script(offspring_size=20, max_ngen=5)
    assert '"--max_ngen=5",' in init and '"--offspring_size=20",' in init
    compile(init, "init.py", "exec")


# --- run settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offspring_size", "max_ngen", "fields"),
    [
        (10, 2, set()),
        (1, 1, set()),
        (1000, 1000, set()),
        ("10", "2", set()),
        (0, 2, {"offspring_size"}),
        (1001, 2, {"offspring_size"}),
        (10, 0, {"max_ngen"}),
        (10, 1001, {"max_ngen"}),
        (2.5, 2, {"offspring_size"}),
        ("ten", None, {"offspring_size", "max_ngen"}),
        (True, 2, {"offspring_size"}),
    ],
)
def test_run_settings_must_be_whole_numbers_from_1_to_1000(offspring_size, max_ngen, fields):
    errors = run_settings_errors(offspring_size=offspring_size, max_ngen=max_ngen)

    assert set(errors) == fields


def test_run_settings_errors_say_what_is_allowed():
    assert run_settings_errors(offspring_size=0, max_ngen=2) == {
        "offspring_size": "The offspring size must be a whole number from 1 to 1000."
    }


def test_bad_run_settings_refuse_the_package(optimisation_dir):
    out = optimisation_dir.parent / "package.zip"

    with pytest.raises(InvalidPackageRequest) as caught:
        build_package(optimisation_dir, run_name=RUN, offspring_size=0, max_ngen=5000, out=out)

    assert len(caught.value.problems) == 2
    assert not out.exists()


def test_single_generation_is_allowed_with_a_warning(optimisation_dir):
    data, result = build(optimisation_dir, max_ngen=1)

    assert result.warnings == (max_ngen_warning(1),)
    assert "no checkpoint" in result.warnings[0]
    assert json.loads(read(data, "rebuild_manifest.json"))["warnings"] == list(result.warnings)
    assert max_ngen_warning(2) is None


@pytest.mark.parametrize("run_name", ["", "../escape", "two words", "a/b"])
def test_unsafe_run_names_are_refused(optimisation_dir, run_name):
    with pytest.raises(InvalidPackageRequest):
        build(optimisation_dir, run_name=run_name)


def test_invalid_optimisation_is_not_packaged(optimisation_dir):
    (optimisation_dir / "mechanisms" / "leak.mod").unlink()

    with pytest.raises(InvalidOptimisation):
        build(optimisation_dir)


# --- determinism -----------------------------------------------------------------------


def test_same_inputs_give_the_same_bytes(optimisation_dir, tmp_path):
    first, first_result = build(optimisation_dir)
    second, _ = build(optimisation_dir)
    on_disk = tmp_path / "package.zip"
    disk_result = build_package(
        optimisation_dir, run_name=RUN, offspring_size=10, max_ngen=2, out=on_disk
    )

    assert first == second == on_disk.read_bytes()
    assert first_result.sha256 == disk_result.sha256


def test_a_copy_of_the_folder_made_later_gives_the_same_bytes(optimisation_dir, tmp_path):
    copy = tmp_path / "copy" / optimisation_dir.name
    shutil.copytree(optimisation_dir, copy)
    for path in copy.rglob("*"):
        os.utime(path, (0, 1_700_000_000))
        path.chmod(0o700 if path.is_dir() else 0o600)

    assert build(copy)[0] == build(optimisation_dir)[0]


def test_different_run_name_or_bounds_give_different_bytes(optimisation_dir):
    base, _ = build(optimisation_dir)
    renamed, _ = build(optimisation_dir, run_name=RUN.replace("2024", "2025"))
    parameters = apply_bounds({KEY: parameters_content()}, KEY, [("axonal", "Ra", 60, 90)])
    rebounded, _ = build(optimisation_dir, parameters=parameters)
    regenerated, _ = build(optimisation_dir, max_ngen=3)

    assert len({base, renamed, rebounded, regenerated}) == 4


def test_zip_entries_carry_fixed_dates_permissions_and_no_extra_fields(optimisation_dir):
    data, _ = build(optimisation_dir)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.extra == b""
            assert info.create_system == 3
            mode = info.external_attr >> 16
            if info.is_dir():
                assert mode == 0o40755
            else:
                assert mode == 0o100644
                assert info.compress_type == zipfile.ZIP_DEFLATED


def test_writing_to_a_path_replaces_the_file_atomically(optimisation_dir, tmp_path):
    out = tmp_path / "package.zip"
    out.write_bytes(b"old package")

    build_package(optimisation_dir, run_name=RUN, offspring_size=10, max_ngen=2, out=out)

    assert zipfile.is_zipfile(out)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
