import json

import pytest

from models_app.bpo.metadata import (
    CatalogueMetadata,
    InvalidMetadata,
    metadata_file_name,
    parse_metadata,
)

CATALOGUE_ENTRY = {
    "brain_structure": "Hippocampus",
    "cell_soma_location": "CA1",
    "cell_type": "pyramidal",
    "e-type": "cACpyr",
    "fitting_name": "CA1_PC_cAC_sig",
    "channels": "kdr, nax,  kmb, kap",
    "mod_repo": "https://example.org/models.git",
    "mod_tag": "v1.0.0",
    "mod_path": "mod_files",
    "morphology": "mpg141017_a1-2_idC",
    "max_ngen": 60,
    "offspring_size": 128,
    "best_run": "seed4.pkl",
    "best_cell": "cell_seed4_0.hoc",
    "description": "",
    "contributors": "A. Scientist",
    "affiliations": "CNR",
    "species": "Rat",
}


def test_catalogue_metadata_is_read_from_json_text():
    metadata = parse_metadata(json.dumps(CATALOGUE_ENTRY))

    assert metadata.e_type == "cACpyr"
    assert metadata.channels == ("kdr", "nax", "kmb", "kap")
    assert (metadata.max_ngen, metadata.offspring_size) == (60, 128)
    assert metadata.best_run == "seed4.pkl"
    assert metadata.extra == {}


def test_missing_fields_are_empty_and_unknown_fields_are_kept():
    metadata = parse_metadata({"species": "Mouse", "doi": "10.1/x"})

    assert metadata == CatalogueMetadata(species="Mouse", extra={"doi": "10.1/x"})
    assert metadata.max_ngen is None


def test_oddly_typed_fields_are_tolerated():
    metadata = parse_metadata(
        {
            "max_ngen": "60",
            "offspring_size": "many",
            "species": ["Rat"],
            "channels": ["kdr", 3, " nax "],
        }
    )

    assert metadata.max_ngen == 60
    assert metadata.offspring_size is None
    assert metadata.species == ""
    assert metadata.channels == ("kdr", "nax")


@pytest.mark.parametrize("text", ["not json", "[1, 2]"])
def test_metadata_that_is_not_a_json_object_is_refused(text):
    with pytest.raises(InvalidMetadata):
        parse_metadata(text)


def test_metadata_file_is_named_after_the_optimisation():
    assert metadata_file_name("W_20230711100058") == "W_20230711100058_meta.json"
