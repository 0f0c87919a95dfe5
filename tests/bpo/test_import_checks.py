"""Import checks what a run needs: mechanisms, a morphology NEURON reads, the key, the protocols.

Each problem alone, then all at once; NEURON itself answers in child processes.
"""

import json
import shutil

import pytest

from models_app.bpo.neuron_checks import built_in_mechanisms
from models_app.bpo.nmodl import defined_mechanisms
from models_app.bpo.optimisation import (
    InvalidOptimisation,
    load_optimisation,
    validate_optimisation,
)

from .builders import KEY, MORPHOLOGY, write_json, write_runnable_optimisation

UNDEFINED_HD = "parameters.json uses mechanisms that no .mod file defines: hd (in somatic, alldend)"
UNREADABLE_MORPHOLOGY = (
    f"NEURON could not read the morphology '{MORPHOLOGY}': parse error / itok=3 on line 1 "
    "token=leftpar x=0 s= / line 1: (((( not a cell."
)
WRONG_KEY = (
    "opt_neuron.py creates the evaluator with 'CA1PC', but the config files use the key "
    f"'{KEY}'; they must match."
)
MISSING_PROTOCOL = "features.json uses the protocol 'bAP', which protocols.json does not define."


@pytest.fixture
def runnable_dir(tmp_path):
    return write_runnable_optimisation(tmp_path / "source")


def _edit(root, kind, change):
    path = root / "config" / f"{kind}.json"
    document = json.loads(path.read_text())
    change(document[KEY])
    write_json(path, document)


def _remove_hd(root):
    (root / "mechanisms" / "hd.mod").unlink()


def _break_morphology(root):
    (root / "morphology" / MORPHOLOGY).write_text("(((( not a cell\n")


def _change_key(root):
    (root / "opt_neuron.py").write_text("evaluator = model.evaluator.create('CA1PC')\n")


def _drop_protocol(root):
    _edit(root, "protocols", lambda content: content.pop("bAP"))


# --- what a .mod file defines (no NEURON) ----------------------------------------------


def test_mechanism_names_come_from_the_neuron_block_without_comments():
    source = """
TITLE a channel : SUFFIX not_this
COMMENT
NEURON { SUFFIX commented_out }
ENDCOMMENT
NEURON {
    : SUFFIX nor_this
    SUFFIX kdr
    POINT_PROCESS Syn2 ? and a comment
    ARTIFICIAL_CELL Pacemaker
    USEION k READ ek WRITE ik
}
PARAMETER { SUFFIX_like = 1 }
"""
    assert defined_mechanisms(source) == ["kdr", "Syn2", "Pacemaker"]


# --- with NEURON ----------------------------------------------------------------------


@pytest.mark.slow
def test_neuron_lists_its_built_in_mechanisms():
    built_in = built_in_mechanisms()

    assert {"pas", "hh", "extracellular", "IClamp"} <= built_in
    assert "hd" not in built_in


@pytest.mark.slow
def test_a_folder_with_everything_a_run_needs_passes(runnable_dir):
    # parameters.json names pas (built into NEURON), leak and hd (in mechanisms/).
    assert validate_optimisation(runnable_dir, with_neuron=True) == []


@pytest.mark.slow
def test_a_mechanism_no_mod_file_defines_is_named_with_its_sections(runnable_dir):
    _remove_hd(runnable_dir)

    assert validate_optimisation(runnable_dir, with_neuron=True) == [UNDEFINED_HD]


@pytest.mark.slow
def test_mechanisms_are_listed_in_the_order_first_met(runnable_dir):
    _edit(
        runnable_dir,
        "parameters",
        lambda content: content.update(
            mechanisms={
                "all": ["pas", "kdr"],
                "axonal": ["nax", "leak", "kdr"],
                "somatic": ["hh", "extracellular", "kdr"],
                "alldend": ["hd", "cal"],
            }
        ),
    )

    assert validate_optimisation(runnable_dir, with_neuron=True) == [
        "parameters.json uses mechanisms that no .mod file defines: kdr, nax, cal "
        "(in all, axonal, somatic, alldend)"
    ]


@pytest.mark.slow
def test_a_mechanism_named_only_in_a_comment_is_not_defined(runnable_dir):
    (runnable_dir / "mechanisms" / "hd.mod").write_text(
        "NEURON {\n    : SUFFIX hd\n    SUFFIX hd_old\n}\n"
    )

    assert validate_optimisation(runnable_dir, with_neuron=True) == [UNDEFINED_HD]


@pytest.mark.slow
def test_a_morphology_neuron_cannot_read_is_refused_in_neurons_words(runnable_dir):
    _break_morphology(runnable_dir)

    assert validate_optimisation(runnable_dir, with_neuron=True) == [UNREADABLE_MORPHOLOGY]


@pytest.mark.slow
def test_a_swc_morphology_with_a_bad_line_is_refused(runnable_dir):
    (runnable_dir / "morphology" / "cell.swc").write_text(
        "1 1 0 0 0 10 -1\n2 3 0 x 0 1 1\n", encoding="utf-8"
    )
    write_json(runnable_dir / "config" / "morph.json", {KEY: "cell.swc"})

    assert validate_optimisation(runnable_dir, with_neuron=True) == [
        "NEURON could not read the morphology 'cell.swc': error cell.swc line 2: could not "
        "parse: 2 3 0 x 0 1 1."
    ]


@pytest.mark.slow
def test_a_morphology_of_a_kind_bluepyopt_does_not_load_is_refused(runnable_dir):
    shutil.copy(runnable_dir / "morphology" / MORPHOLOGY, runnable_dir / "morphology" / "c.h5")
    write_json(runnable_dir / "config" / "morph.json", {KEY: "c.h5"})

    assert validate_optimisation(runnable_dir, with_neuron=True) == [
        "The morphology 'c.h5' is neither a Neurolucida (.asc) nor an SWC (.swc) file, the "
        "two kinds BluePyOpt loads."
    ]


@pytest.mark.slow
def test_every_problem_is_listed_at_once_and_loading_refuses(runnable_dir):
    for spoil in (_remove_hd, _break_morphology, _change_key, _drop_protocol):
        spoil(runnable_dir)

    with pytest.raises(InvalidOptimisation) as caught:
        load_optimisation(runnable_dir, with_neuron=True)

    assert sorted(caught.value.problems) == sorted(
        [WRONG_KEY, UNDEFINED_HD, UNREADABLE_MORPHOLOGY, MISSING_PROTOCOL]
    )


def test_without_neuron_only_the_folder_itself_is_checked(runnable_dir):
    # Packaging and analysis load folders that were checked on import: no NEURON there.
    _remove_hd(runnable_dir)
    _break_morphology(runnable_dir)

    assert validate_optimisation(runnable_dir) == []
