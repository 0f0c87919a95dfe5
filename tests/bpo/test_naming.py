from datetime import datetime

import pytest

from models_app.bpo.naming import OptimisationName, folder_name_problem, new_run_name, parse_name

NOW = datetime(2024, 3, 5, 14, 7, 9)


def test_catalogue_name_is_split_into_its_parts():
    assert parse_name("CA1_pyr_cACpyr_oh140807_A0_idJ_20170915113621") == OptimisationName(
        name="CA1_pyr_cACpyr_oh140807_A0_idJ_20170915113621",
        region="CA1",
        cell_class="pyr",
        e_type="cACpyr",
        morphology="oh140807_A0_idJ",
        created=datetime(2017, 9, 15, 11, 36, 21),
    )


def test_morphology_may_hold_underscores_and_dashes():
    parsed = parse_name("CA1_pyr_cACpyr_mpg141017_a1-2_idC_20170918151638")

    assert parsed.morphology == "mpg141017_a1-2_idC"
    assert parsed.cell_type == "pyramidal"


def test_interneuron_name_is_recognised():
    parsed = parse_name("CA1_int_cNAC_060314AM2_20180120154747")

    assert (parsed.cell_class, parsed.cell_type, parsed.e_type, parsed.morphology) == (
        "int",
        "interneuron",
        "cNAC",
        "060314AM2",
    )


def test_hhnb_name_has_only_a_date_time():
    assert parse_name("W_20230711100058") == OptimisationName(
        name="W_20230711100058", created=datetime(2023, 7, 11, 10, 0, 58)
    )


@pytest.mark.parametrize("name", ["my model", "CA1_xyz_cAC_m_20170101000000", ""])
def test_other_names_are_parsed_without_failing(name):
    parsed = parse_name(name)

    assert parsed.name == name
    assert parsed.region is None


def test_name_without_a_date_time_still_gives_its_parts():
    parsed = parse_name("CA1_pyr_cACpyr_mymorph_v2")

    assert (parsed.region, parsed.morphology, parsed.created) == ("CA1", "mymorph_v2", None)


def test_fourteen_digits_that_are_not_a_date_are_no_date():
    assert parse_name("CA1_pyr_cACpyr_x_20179999999999").created is None


def test_new_run_name_replaces_the_trailing_date_time():
    assert (
        new_run_name("CA1_pyr_cACpyr_oh140807_A0_idJ_20170915113621", NOW)
        == "CA1_pyr_cACpyr_oh140807_A0_idJ_20240305140709"
    )
    assert new_run_name("W_20230711100058", NOW) == "W_20240305140709"


def test_new_run_name_appends_a_date_time_when_there_is_none():
    assert new_run_name("my_model", NOW) == "my_model_20240305140709"


def test_new_run_name_of_a_new_run_name_replaces_again():
    once = new_run_name("W_20230711100058", NOW)

    assert new_run_name(once, datetime(2025, 1, 1)) == "W_20250101000000"


@pytest.mark.parametrize(
    ("name", "acceptable"),
    [
        ("CA1_pyr_cACpyr_x-1.2_20240101000000", True),
        ("", False),
        ("../up", False),
        ("a/b", False),
        (".hidden", False),
        ("x" * 151, False),
    ],
)
def test_run_folder_names_are_limited_to_safe_characters(name, acceptable):
    assert (folder_name_problem(name) is None) is acceptable
