import copy

import pytest

from models_app.bpo.parameters import (
    BoundsChange,
    Distribution,
    FixedParameter,
    InvalidBounds,
    OptimisedParameter,
    apply_bounds,
    bound_field,
    bounds_changes,
    parameter_field,
    parameter_table,
    validate_bounds,
)

from .builders import KEY, parameters_content


def document():
    return {KEY: parameters_content()}


KNOWN = [("axonal", "gbar_nax"), ("axonal", "Ra"), ("somatic", "g_pas")]


# --- display rows ----------------------------------------------------------------------


def test_optimised_rows_follow_the_section_order_and_keep_entry_order():
    table = parameter_table(parameters_content())

    assert table.optimised == (
        OptimisedParameter("somatic", "g_pas", 5e-06, 0.0001, "uniform"),
        OptimisedParameter("axonal", "gbar_nax", 0.1, 0.4, "uniform"),
        OptimisedParameter("axonal", "Ra", 50, 100, "secvar"),
        OptimisedParameter("alldend", "ghdbar_hd", 5e-06, 2e-05, "linear_hd_apic"),
    )


def test_fixed_rows_include_globals_first():
    table = parameter_table(parameters_content())

    assert table.fixed == (
        FixedParameter("global", "v_init", -70, "global"),
        FixedParameter("global", "celsius", 34, "global"),
        FixedParameter("all", "cm", 1, "secvar"),
        FixedParameter("all", "ena", 50, "secvar"),
    )


def test_distributions_are_listed_with_their_expression():
    table = parameter_table(parameters_content())

    assert table.distributions == (
        Distribution("linear_hd_apic", "(1. + 3./100. * {distance})*{value}"),
    )


# --- validating submitted bounds -------------------------------------------------------


def test_numbers_and_number_text_are_accepted():
    rows = [("axonal", "gbar_nax", "0.05", " 0.5 "), ("somatic", "g_pas", 1e-6, "2e-4")]

    assert validate_bounds(rows, known=KNOWN) == {}


@pytest.mark.parametrize(
    ("lower", "message"),
    [
        ("nan", "Enter a finite number, not 'nan'."),
        ("inf", "Enter a finite number, not 'inf'."),
        ("-Infinity", "Enter a finite number, not '-Infinity'."),
        ("1e999", "Enter a finite number, not '1e999'."),
        ("abc", "Enter a number such as 0.02 or 2e-5, not 'abc'."),
        ("0,1", "Enter a number such as 0.02 or 2e-5, not '0,1'."),
        ("", "Enter a number."),
        (float("nan"), "The value is not a number (NaN)."),
        (float("inf"), "The value is infinite."),
        (True, "The value is not a number (True)."),
        (None, "The value is not a number (None)."),
    ],
)
def test_a_bound_that_is_not_a_finite_number_is_refused_next_to_its_field(lower, message):
    errors = validate_bounds([("axonal", "gbar_nax", lower, "0.4")])

    assert errors == {"axonal.gbar_nax.lower": message}


@pytest.mark.parametrize(("lower", "upper"), [("0.4", "0.1"), ("0.4", "0.4")])
def test_lower_bound_not_below_upper_bound_is_refused_on_the_upper_field(lower, upper):
    errors = validate_bounds([("axonal", "gbar_nax", lower, upper)])

    assert errors == {
        bound_field("axonal", "gbar_nax", "upper"): (
            "The upper bound must be greater than the lower bound (0.4)."
        )
    }


def test_unknown_parameter_is_refused_on_its_row():
    errors = validate_bounds([("apical", "gbar_nax", "1", "2")], known=KNOWN)

    assert errors == {
        parameter_field("apical", "gbar_nax"): "There is no optimised parameter gbar_nax in apical."
    }


def test_parameter_given_twice_is_refused():
    rows = [("axonal", "Ra", "50", "100"), ("axonal", "Ra", "60", "90")]

    assert validate_bounds(rows, known=KNOWN) == {"axonal.Ra": "Ra in axonal is given twice."}


def test_both_bounds_of_a_row_are_reported_together():
    errors = validate_bounds([("axonal", "Ra", "x", "y")])

    assert set(errors) == {"axonal.Ra.lower", "axonal.Ra.upper"}


# --- applying bounds -------------------------------------------------------------------


def test_applied_bounds_change_only_lower_and_upper_in_a_copy():
    original = document()
    untouched = copy.deepcopy(original)

    changed = apply_bounds(original, KEY, [("axonal", "gbar_nax", "0.05", "0.5")])

    assert original == untouched
    expected = copy.deepcopy(untouched)
    expected[KEY]["optimized"]["axonal"][0] = ["gbar_nax", 0.05, 0.5, "uniform"]
    assert changed == expected
    assert list(changed[KEY]) == list(untouched[KEY])  # key order kept


def test_whole_number_text_stays_a_whole_number():
    changed = apply_bounds(document(), KEY, [("axonal", "Ra", "60", "90")])

    assert changed[KEY]["optimized"]["axonal"][1] == ["Ra", 60, 90, "secvar"]


def test_applying_bounds_to_an_unknown_parameter_is_refused():
    with pytest.raises(InvalidBounds) as caught:
        apply_bounds(document(), KEY, [("somatic", "gbar_unknown", 1, 2)])

    assert caught.value.errors == {
        "somatic.gbar_unknown": "There is no optimised parameter gbar_unknown in somatic."
    }


def test_applying_invalid_bounds_lists_every_field():
    with pytest.raises(InvalidBounds) as caught:
        apply_bounds(
            document(), KEY, [("axonal", "gbar_nax", "nan", 1), ("somatic", "g_pas", 2, 1)]
        )

    assert set(caught.value.errors) == {"axonal.gbar_nax.lower", "somatic.g_pas.upper"}
    assert "axonal.gbar_nax.lower: Enter a finite number, not 'nan'." in str(caught.value)


def test_applying_bounds_with_a_wrong_key_is_refused():
    with pytest.raises(ValueError, match="no optimisation key 'OTHER'"):
        apply_bounds(document(), "OTHER", [])


def test_bounds_changes_lists_what_differs():
    changed = apply_bounds(
        document(), KEY, [("axonal", "Ra", 60, 100), ("somatic", "g_pas", 5e-06, 0.0001)]
    )

    assert bounds_changes(parameters_content(), changed[KEY]) == [
        BoundsChange("axonal", "Ra", 50, 100, 60, 100)
    ]
