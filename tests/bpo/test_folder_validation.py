import io
import json
import shutil
from typing import NamedTuple

import pytest

from models_app.bpo import config as config_module
from models_app.bpo.archive import extract_zip
from models_app.bpo.optimisation import (
    InvalidOptimisation,
    find_root,
    load_optimisation,
    validate_optimisation,
)

from .builders import KEY, MORPHOLOGY, NAME, write_json, zip_bytes, zip_folder


class Replacement(NamedTuple):
    value: object


def replaced_by(value):
    return lambda content: Replacement(value)


def edit_config(root, kind, change):
    """Let ``change`` edit the content under the key of config/<kind>.json in place, or
    replace it by returning a ``Replacement``."""
    path = root / "config" / f"{kind}.json"
    document = json.loads(path.read_text())
    outcome = change(document[KEY])
    if isinstance(outcome, Replacement):
        document[KEY] = outcome.value
    write_json(path, document)


# --- a valid folder --------------------------------------------------------------------


def test_valid_folder_has_no_problems(optimisation_dir):
    assert validate_optimisation(optimisation_dir) == []


def test_loaded_optimisation_describes_the_folder(optimisation_dir):
    optimisation = load_optimisation(optimisation_dir)

    assert optimisation.name == NAME
    assert optimisation.key == KEY
    assert optimisation.morphology == MORPHOLOGY
    assert optimisation.morphology_path.is_file()
    assert optimisation.mechanisms == ("leak.mod",)
    assert set(optimisation.protocols) == {"bAP", "step_-0.8", "step_0.2"}
    assert optimisation.features["bAP"]["dend150"]["AP1_amp"] == [61.6, 20]
    assert optimisation.parameters_document() == {KEY: optimisation.parameters}
    assert optimisation.parsed_name.e_type == "cACpyr"


def test_name_can_be_given_when_the_folder_name_means_nothing(optimisation_dir):
    optimisation = load_optimisation(optimisation_dir, name="CA1_int_bAC_x_20180101000000")

    assert optimisation.name == "CA1_int_bAC_x_20180101000000"


def test_uploaded_zip_round_trip_gives_a_valid_optimisation(optimisation_dir, tmp_path):
    extracted = tmp_path / "extracted"
    extract_zip(io.BytesIO(zip_folder(optimisation_dir)), extracted)

    root = find_root(extracted)

    assert root.name == NAME
    assert validate_optimisation(root) == []


# --- finding the folder in an extracted archive ----------------------------------------


def test_root_is_the_single_top_folder_ignoring_macos_litter(optimisation_dir, tmp_path):
    extracted = tmp_path / "extracted"
    entries = [
        (f"{NAME}/opt_neuron.py", b"x"),
        ("__MACOSX/._opt_neuron.py", b""),
        (".DS_Store", b""),
    ]
    extract_zip(io.BytesIO(zip_bytes(entries)), extracted)

    assert find_root(extracted) == extracted / NAME


def test_root_is_the_archive_top_when_the_files_are_there(optimisation_dir, tmp_path):
    extracted = tmp_path / "extracted"
    extract_zip(io.BytesIO(zip_folder(optimisation_dir, prefix="")), extracted)

    assert find_root(extracted) == extracted


def test_two_top_folders_are_refused(tmp_path):
    extracted = tmp_path / "extracted"
    (extracted / "first").mkdir(parents=True)
    (extracted / "second").mkdir()

    with pytest.raises(InvalidOptimisation) as caught:
        find_root(extracted)

    assert "holds 2 entries (first/, second/)" in caught.value.problems[0]
    assert "exactly one optimisation folder" in caught.value.problems[0]


def test_empty_archive_is_refused(tmp_path):
    (tmp_path / "__MACOSX").mkdir()

    with pytest.raises(InvalidOptimisation) as caught:
        find_root(tmp_path)

    assert caught.value.problems == ["The archive is empty."]


# --- config files ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["features", "parameters", "protocols", "morph"])
def test_missing_config_file_is_named(optimisation_dir, kind):
    (optimisation_dir / "config" / f"{kind}.json").unlink()

    assert f"config/{kind}.json is missing." in validate_optimisation(optimisation_dir)


def test_config_that_is_not_utf8_is_reported(optimisation_dir):
    (optimisation_dir / "config" / "features.json").write_bytes(b'{"\xff": 1}')

    assert validate_optimisation(optimisation_dir) == [
        "config/features.json is not UTF-8 text (unreadable byte at position 2)."
    ]


def test_config_that_is_not_json_is_reported_with_its_position(optimisation_dir):
    (optimisation_dir / "config" / "protocols.json").write_text('{"key": [1, 2,\n}')

    problems = validate_optimisation(optimisation_dir)

    assert problems == [
        "config/protocols.json is not valid JSON: Expecting value (line 2, column 1)."
    ]


def test_config_that_is_not_an_object_is_reported(optimisation_dir):
    write_json(optimisation_dir / "config" / "morph.json", [MORPHOLOGY])

    assert validate_optimisation(optimisation_dir) == [
        "config/morph.json must hold a JSON object {...} whose one key is the optimisation "
        "key; it holds a list."
    ]


def test_config_with_two_keys_is_reported(optimisation_dir):
    write_json(optimisation_dir / "config" / "morph.json", {KEY: MORPHOLOGY, "other": "x.asc"})

    assert validate_optimisation(optimisation_dir) == [
        "config/morph.json must have exactly one top-level key, the optimisation key; "
        f"it has 2: '{KEY}', 'other'."
    ]


def test_empty_config_object_is_reported(optimisation_dir):
    write_json(optimisation_dir / "config" / "morph.json", {})

    assert validate_optimisation(optimisation_dir) == [
        "config/morph.json is empty; it must have one key, the optimisation key."
    ]


def test_repeated_key_in_config_is_reported(optimisation_dir):
    path = optimisation_dir / "config" / "morph.json"
    path.write_text(f'{{"{KEY}": "a.asc", "{KEY}": "{MORPHOLOGY}"}}')

    assert validate_optimisation(optimisation_dir) == [
        f"config/morph.json repeats the key '{KEY}'; only its last value would be used."
    ]


def test_oversized_config_is_not_read(optimisation_dir, monkeypatch):
    monkeypatch.setattr(config_module, "MAX_CONFIG_BYTES", 1024 * 1024)
    (optimisation_dir / "config" / "features.json").write_bytes(b" " * (3 * 1024 * 1024))

    assert validate_optimisation(optimisation_dir) == [
        "config/features.json is 3 MB; a configuration file is a few kilobytes."
    ]


def test_key_mismatch_between_configs_is_reported(optimisation_dir):
    write_json(optimisation_dir / "config" / "morph.json", {"W_20230711100058": MORPHOLOGY})

    assert validate_optimisation(optimisation_dir) == [
        "The config files do not share one optimisation key (features.json has "
        f"'{KEY}', parameters.json has '{KEY}', protocols.json has '{KEY}', morph.json "
        "has 'W_20230711100058'); all four must use the same key."
    ]


# --- opt_neuron.py ---------------------------------------------------------------------


def test_key_only_in_a_comment_of_opt_neuron_is_not_enough(optimisation_dir):
    script = optimisation_dir / "opt_neuron.py"
    script.write_text(f"# evaluator = model.evaluator.create('{KEY}')\nprint('nothing')\n")

    assert validate_optimisation(optimisation_dir) == [
        f"opt_neuron.py does not call evaluator.create('{KEY}', ...), so the optimisation "
        "would not find its configuration."
    ]


def test_opt_neuron_using_another_key_is_reported(optimisation_dir):
    (optimisation_dir / "opt_neuron.py").write_text(
        "evaluator = model.evaluator.create('CA1PC', cvode_active=True)\n"
    )

    assert validate_optimisation(optimisation_dir) == [
        "opt_neuron.py creates the evaluator with 'CA1PC', but the config files use the key "
        f"'{KEY}'; they must match."
    ]


def test_missing_opt_neuron_is_reported(optimisation_dir):
    (optimisation_dir / "opt_neuron.py").unlink()

    assert validate_optimisation(optimisation_dir) == [
        "opt_neuron.py is missing; it is the script that runs the optimisation."
    ]


@pytest.mark.parametrize(
    "source",
    [
        f"evaluator = model.evaluator.create('{KEY}', cvode_active=True)",
        f'evaluator = model.evaluator.create(etype="{KEY}")',
        f"e = evaluator.create(\n    '{KEY}',\n    dt=0.025)",
        f"if True:\n    evaluator = model.evaluator.create('{KEY}')",
    ],
)
def test_the_key_is_read_from_the_evaluator_create_call(optimisation_dir, source):
    (optimisation_dir / "opt_neuron.py").write_text(source)

    assert validate_optimisation(optimisation_dir) == []


def test_opt_neuron_that_is_not_python_3_is_refused_with_the_line(optimisation_dir):
    (optimisation_dir / "opt_neuron.py").write_text(
        f"import model\nprint 'python 2'\nevaluator = model.evaluator.create('{KEY}')\n"
    )

    assert validate_optimisation(optimisation_dir) == [
        "opt_neuron.py cannot be parsed as Python 3 (line 2: Missing parentheses in call to "
        "'print'. Did you mean print(...)?), so the key it passes to evaluator.create(...) "
        "cannot be read, and it would not run."
    ]


def test_opt_neuron_without_a_literal_key_is_refused(optimisation_dir):
    (optimisation_dir / "opt_neuron.py").write_text(
        "emodel = 'x'\nevaluator = setup.evaluator.create(etype='%s' % emodel)\n"
    )

    assert validate_optimisation(optimisation_dir) == [
        "opt_neuron.py calls evaluator.create(...) without a literal key, so it cannot be "
        f"checked against the config files' key '{KEY}'; write evaluator.create('{KEY}', ...)."
    ]


# --- model, mechanisms, morphology -----------------------------------------------------


def test_missing_morphology_is_named_with_what_is_there(optimisation_dir):
    (optimisation_dir / "morphology" / MORPHOLOGY).rename(
        optimisation_dir / "morphology" / "other.swc"
    )

    assert validate_optimisation(optimisation_dir) == [
        f"The morphology '{MORPHOLOGY}' named in config/morph.json is not in morphology/ "
        "(it holds: other.swc)."
    ]


def test_morphology_that_is_not_a_file_name_is_refused(optimisation_dir):
    write_json(optimisation_dir / "config" / "morph.json", {KEY: [MORPHOLOGY]})

    assert validate_optimisation(optimisation_dir) == [
        "config/morph.json must map the key to the morphology's file name (a text), not a list."
    ]


def test_morphology_name_leaving_its_folder_is_refused(optimisation_dir):
    write_json(optimisation_dir / "config" / "morph.json", {KEY: "../config/morph.json"})

    assert validate_optimisation(optimisation_dir) == [
        "config/morph.json must name a file directly inside morphology/ (such as cell.asc), "
        "not '../config/morph.json'."
    ]


def test_folder_without_mod_files_is_reported(optimisation_dir):
    (optimisation_dir / "mechanisms" / "leak.mod").unlink()

    assert validate_optimisation(optimisation_dir) == [
        "mechanisms/ holds no .mod file; NEURON needs the channel models to compile."
    ]


def test_missing_mechanisms_folder_is_reported(optimisation_dir):
    shutil.rmtree(optimisation_dir / "mechanisms")

    assert validate_optimisation(optimisation_dir) == [
        "The mechanisms/ folder is missing; it must hold the channel models (.mod files)."
    ]


def test_missing_model_folder_is_reported(optimisation_dir):
    shutil.rmtree(optimisation_dir / "model")

    assert validate_optimisation(optimisation_dir) == [
        "The model/ folder is missing; it holds the model's evaluator and template."
    ]


def test_missing_evaluator_is_reported(optimisation_dir):
    (optimisation_dir / "model" / "evaluator.py").unlink()

    assert validate_optimisation(optimisation_dir) == ["model/evaluator.py is missing."]


def test_every_problem_is_listed_and_loading_refuses(optimisation_dir):
    (optimisation_dir / "config" / "features.json").unlink()
    (optimisation_dir / "mechanisms" / "leak.mod").unlink()
    (optimisation_dir / "morphology" / MORPHOLOGY).unlink()

    with pytest.raises(InvalidOptimisation) as caught:
        load_optimisation(optimisation_dir)

    assert len(caught.value.problems) == 3
    assert "config/features.json is missing." in str(caught.value)


def test_a_file_is_not_an_optimisation_folder(tmp_path):
    path = tmp_path / "file.zip"
    path.write_bytes(b"")

    assert validate_optimisation(path) == [f"{path} is not a folder."]


# --- parameters.json -------------------------------------------------------------------


def set_optimised(section, position, entry):
    def change(content):
        content["optimized"][section][position] = entry

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            set_optimised("axonal", 0, ["gbar_nax", 0.4, 0.1, "uniform"]),
            "parameters.json: optimised parameter gbar_nax (axonal): the lower bound 0.4 must "
            "be less than the upper bound 0.1.",
        ),
        (
            set_optimised("axonal", 0, ["gbar_nax", 0.1, 0.1, "uniform"]),
            "parameters.json: optimised parameter gbar_nax (axonal): the lower bound 0.1 must "
            "be less than the upper bound 0.1.",
        ),
        (
            set_optimised("axonal", 0, ["gbar_nax", "low", 0.4, "uniform"]),
            "parameters.json: optimised parameter gbar_nax (axonal): the lower bound is not a "
            "number ('low').",
        ),
        (
            set_optimised("axonal", 0, ["gbar_nax", 0.1, float("nan"), "uniform"]),
            "parameters.json: optimised parameter gbar_nax (axonal): the upper bound is not a "
            "number (NaN).",
        ),
        (
            set_optimised("axonal", 0, ["gbar_nax", float("-inf"), 0.4, "uniform"]),
            "parameters.json: optimised parameter gbar_nax (axonal): the lower bound is infinite.",
        ),
        (
            set_optimised("axonal", 0, ["gbar_nax", 0.1, 0.4, "exponential"]),
            "parameters.json: optimised parameter gbar_nax (axonal): distribution "
            "'exponential' is not defined (use 'uniform', 'secvar' or one of linear_hd_apic).",
        ),
        (
            set_optimised("axonal", 0, ["gbar_nax", 0.1, 0.4]),
            "parameters.json: optimised entry 1 of 'axonal' must be [name, lower, upper, "
            "distribution]; found ['gbar_nax', 0.1, 0.4].",
        ),
        (
            set_optimised("axonal", 1, ["gbar_nax", 0.1, 0.4, "uniform"]),
            "parameters.json: optimised parameter gbar_nax (axonal) appears more than once.",
        ),
        (
            lambda content: content["optimized"].update(dendrites=[["g", 1, 2, "uniform"]]),
            "parameters.json: section list 'dendrites' in 'optimized' is not one the models "
            "know (all, allnoaxon, somadend, somatic, axonal, myelinated, alldend, apical, "
            "basal).",
        ),
        (
            lambda content: content.update(optimized={}),
            "parameters.json has no optimised parameter: there is nothing to optimise.",
        ),
        (
            lambda content: content.pop("fixed"),
            "parameters.json has no 'fixed' entry.",
        ),
        (
            lambda content: content["fixed"]["global"].append(["v_init"]),
            "parameters.json: fixed entry 3 of 'global' must be [name, value]; found ['v_init'].",
        ),
        (
            lambda content: content["fixed"]["all"].append(["ek", "minus ninety", "secvar"]),
            "parameters.json: fixed parameter ek (all): its value is not a number "
            "('minus ninety').",
        ),
        (
            lambda content: content["fixed"]["all"].append(["ek", -90, "weird"]),
            "parameters.json: fixed parameter ek (all): distribution 'weird' is not defined "
            "(use 'uniform', 'secvar' or one of linear_hd_apic).",
        ),
        (
            lambda content: content["distributions"].update(bad="{value} * {soma_distance}"),
            "parameters.json: distribution 'bad' uses {soma_distance}; only {value} and "
            "{distance} are available.",
        ),
        (
            lambda content: content["mechanisms"].update(somatic="hd"),
            "parameters.json: mechanisms of 'somatic' must be a list of mechanism names.",
        ),
        (
            replaced_by(["not", "an", "object"]),
            "parameters.json: the value under the key must be an object with mechanisms, "
            "distributions, fixed and optimized; it is a list.",
        ),
        (
            lambda content: content.update(mechanisms=["pas"]),
            "parameters.json: 'mechanisms' must be an object, not a list.",
        ),
        (
            lambda content: content["mechanisms"].update(axon=["pas"]),
            "parameters.json: section list 'axon' in 'mechanisms' is not one the models know "
            "(all, allnoaxon, somadend, somatic, axonal, myelinated, alldend, apical, basal).",
        ),
        (
            lambda content: content["distributions"].update(bad=3),
            "parameters.json: distribution 'bad' must be a text expression.",
        ),
        (
            lambda content: content["distributions"].update(bad="{value"),
            "parameters.json: distribution 'bad' has unbalanced braces.",
        ),
        (
            lambda content: content.update(distributions=[]),
            "parameters.json: 'distributions' must be an object, not a list.",
        ),
        (
            lambda content: content.update(fixed=[]),
            "parameters.json: 'fixed' must be an object, not a list.",
        ),
        (
            lambda content: content["fixed"].update(all="cm"),
            "parameters.json: fixed parameters of 'all' must be a list.",
        ),
        (
            lambda content: content.update(optimized=[]),
            "parameters.json: 'optimized' must be an object, not a list.",
        ),
        (
            lambda content: content["optimized"].update(axonal="gbar_nax"),
            "parameters.json: optimised parameters of 'axonal' must be a list.",
        ),
    ],
)
def test_malformed_parameters_are_explained(optimisation_dir, change, message):
    edit_config(optimisation_dir, "parameters", change)

    assert validate_optimisation(optimisation_dir) == [message]


# --- features.json ---------------------------------------------------------------------


def set_feature(protocol, location, feature, values):
    def change(content):
        content[protocol][location][feature] = values

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            set_feature("step_0.2", "soma", "Spikecount", [1.5, -2.0]),
            "features.json: Spikecount of 'step_0.2' at 'soma': the standard deviation -2.0 "
            "must not be negative.",
        ),
        (
            set_feature("step_0.2", "soma", "Spikecount", [float("nan"), 2.0]),
            "features.json: Spikecount of 'step_0.2' at 'soma': the mean is not a number (NaN).",
        ),
        (
            set_feature("step_0.2", "soma", "Spikecount", [1.5]),
            "features.json: Spikecount of 'step_0.2' at 'soma' must be [mean, std]; found [1.5].",
        ),
        (
            set_feature("step_0.2", "soma", "Spikecount", [1.5, "wide"]),
            "features.json: Spikecount of 'step_0.2' at 'soma': the standard deviation is not a "
            "number ('wide').",
        ),
        (
            lambda content: content.update({"step_3.0": {"soma": {"Spikecount": [9, 1]}}}),
            "features.json uses the protocol 'step_3.0', which protocols.json does not define.",
        ),
        (
            lambda content: content["bAP"].update({"dend400": {"AP1_amp": [50, 20]}}),
            "features.json: 'bAP' has features at 'dend400', which is neither 'soma' nor an "
            "extra recording of 'bAP' in protocols.json.",
        ),
        (
            lambda content: content.update({"bAP": {"soma": []}}),
            "features.json: 'bAP' at 'soma' must map feature names to [mean, std].",
        ),
        (
            replaced_by({}),
            "features.json defines no feature: there is nothing to fit the model to.",
        ),
        (
            lambda content: content.update(bAP=[]),
            "features.json: protocol 'bAP' must map locations (such as 'soma') to features.",
        ),
        (
            replaced_by([]),
            "features.json: the value under the key must be an object mapping protocols to "
            "locations to features; it is a list.",
        ),
    ],
)
def test_malformed_features_are_explained(optimisation_dir, change, message):
    edit_config(optimisation_dir, "features", change)

    assert validate_optimisation(optimisation_dir) == [message]


def test_zero_standard_deviation_is_accepted(optimisation_dir):
    edit_config(optimisation_dir, "features", set_feature("step_0.2", "soma", "Spikecount", [1, 0]))

    assert validate_optimisation(optimisation_dir) == []


# --- protocols.json --------------------------------------------------------------------


def set_stimulus(protocol, field, value):
    def change(content):
        if value is None:
            del content[protocol]["stimuli"][0][field]
        else:
            content[protocol]["stimuli"][0][field] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            set_stimulus("step_0.2", "amp", "0.2 nA"),
            "protocols.json: protocol 'step_0.2', stimulus 1: 'amp' is not a number ('0.2 nA').",
        ),
        (
            set_stimulus("step_0.2", "delay", None),
            "protocols.json: protocol 'step_0.2', stimulus 1 has no 'delay'.",
        ),
        (
            set_stimulus("step_0.2", "duration", -400.0),
            "protocols.json: protocol 'step_0.2', stimulus 1: 'duration' must not be negative.",
        ),
        (
            set_stimulus("bAP", "totduration", 0),
            "protocols.json: protocol 'bAP', stimulus 1: 'totduration' must be positive.",
        ),
        (
            lambda content: content["step_0.2"].update(stimuli=[]),
            "protocols.json: protocol 'step_0.2' must have a non-empty 'stimuli' list.",
        ),
        (
            lambda content: content["bAP"].update(extra_recordings=[{"var": "v"}]),
            "protocols.json: protocol 'bAP', extra recording 1 must be an object with a 'name'.",
        ),
        (
            lambda content: content["bAP"].update(extra_recordings={"name": "dend150"}),
            "protocols.json: protocol 'bAP': 'extra_recordings' must be a list.",
        ),
        (
            lambda content: content["step_0.2"].update(stimuli=[0.2]),
            "protocols.json: protocol 'step_0.2', stimulus 1 must be an object with delay, amp, "
            "duration, totduration.",
        ),
        (
            lambda content: content.update(bAP="pulse"),
            "protocols.json: protocol 'bAP' must be an object with a 'stimuli' list.",
        ),
        (replaced_by({}), "protocols.json defines no protocol."),
        (
            replaced_by([]),
            "protocols.json: the value under the key must be an object mapping protocol names "
            "to their stimuli; it is a list.",
        ),
    ],
)
def test_malformed_protocols_are_explained(optimisation_dir, change, message):
    edit_config(optimisation_dir, "protocols", change)

    problems = validate_optimisation(optimisation_dir)

    assert problems[0] == message


def test_features_without_their_protocol_are_reported_once_per_protocol(optimisation_dir):
    edit_config(optimisation_dir, "protocols", lambda content: content.pop("bAP"))

    assert validate_optimisation(optimisation_dir) == [
        "features.json uses the protocol 'bAP', which protocols.json does not define."
    ]
