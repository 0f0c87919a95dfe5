import ast

import pytest

from models_app.bpo.fixes import (
    REPLACE_AXON_KWARGS,
    AppliedFix,
    Fix,
    accept_replace_axon_kwargs,
    apply_known_fixes,
    fix_text,
)

from .builders import TEMPLATE_PY


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            "def replace_axon(sim=None, icell=None):\n",
            "def replace_axon(sim=None, icell=None, **kwargs):\n",
        ),
        (
            "    @staticmethod\n    def replace_axon(sim=None, icell=None):\n        pass\n",
            "    @staticmethod\n    def replace_axon(sim=None, icell=None, **kwargs):\n        pass\n",
        ),
        (
            "def replace_axon(\n    sim=None,\n    icell=None,\n):\n",
            "def replace_axon(\n    sim=None,\n    icell=None, **kwargs\n):\n",
        ),
        ("def replace_axon():\n", "def replace_axon(**kwargs):\n"),
        (
            "def replace_axon(self, sim=None) -> None:\n",
            "def replace_axon(self, sim=None, **kwargs) -> None:\n",
        ),
    ],
)
def test_legacy_replace_axon_signatures_accept_kwargs(before, after):
    assert accept_replace_axon_kwargs(before) == after


@pytest.mark.parametrize(
    "text",
    [
        "def replace_axon(sim=None, icell=None, **kwargs):\n",
        "def replace_axon(sim=None, icell=None, axon_stub_length=60, **kw):\n",
        "def replace_axon(sim=None, shape=(1, 2)):\n",  # nested parentheses: left alone
        "def replace_axon(sim=None,  # the simulator\n    icell=None):\n",
        "proc replace_axon(){ }\n",
        "def replace_axon_with_taper(sim=None, icell=None):\n",
    ],
)
def test_signatures_that_need_no_fix_or_are_unclear_are_left_alone(text):
    assert accept_replace_axon_kwargs(text) is None


def test_fixed_template_still_parses_and_takes_any_keyword():
    fixed, applied = fix_text("model/template.py", TEMPLATE_PY)

    (function,) = [
        node
        for node in ast.walk(ast.parse(fixed))
        if isinstance(node, ast.FunctionDef) and node.name == "replace_axon"
    ]
    assert function.args.kwarg.arg == "kwargs"
    assert applied == [
        AppliedFix("replace-axon-kwargs", "model/template.py", REPLACE_AXON_KWARGS.description)
    ]


def test_fixes_only_look_at_their_files():
    text, applied = fix_text("tools/template.py", TEMPLATE_PY)

    assert (text, applied) == (TEMPLATE_PY, [])


def test_fix_file_patterns_match_part_by_part():
    assert REPLACE_AXON_KWARGS.applies_to("model/template.py")
    assert not REPLACE_AXON_KWARGS.applies_to("model/sub/template.py")
    assert not REPLACE_AXON_KWARGS.applies_to("other/model/template.py")


def test_fixes_are_applied_in_place_once(optimisation_dir):
    template = optimisation_dir / "model" / "template.py"

    first = apply_known_fixes(optimisation_dir)
    second = apply_known_fixes(optimisation_dir)

    assert [fix.file for fix in first] == ["model/template.py"]
    assert "def replace_axon(sim=None, icell=None, **kwargs):" in template.read_text()
    assert second == []


def test_more_fixes_can_be_added(optimisation_dir):
    shout = Fix(
        id="shout",
        files="model/evaluator.py",
        description="Evaluator in capitals.",
        apply=lambda text: text.upper(),
    )

    applied = apply_known_fixes(optimisation_dir, fixes=[shout])

    assert applied == [AppliedFix("shout", "model/evaluator.py", "Evaluator in capitals.")]
    assert (optimisation_dir / "model" / "evaluator.py").read_text().startswith("DEF CREATE")
