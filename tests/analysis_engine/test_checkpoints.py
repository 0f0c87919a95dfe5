"""Several checkpoints in one folder: the catalogue's best_run, else the best stored fitness,
else the one asked for; every checkpoint listed with its seed and stored fitness."""

from __future__ import annotations

import pytest

from analysis_app.engine import analyse
from tests.fixtures.demo import demo_with_two_seeds

from .conftest import SEED1_STORED_FITNESS

pytestmark = pytest.mark.slow


def test_the_best_stored_fitness_is_analysed_when_nothing_names_one(tmp_path, mechanisms_cache):
    folder, worse = demo_with_two_seeds(tmp_path / "model")

    result = analyse(folder, tmp_path / "analysis", mechanisms_cache=mechanisms_cache)

    checkpoint = result.analysis["checkpoint"]
    assert (checkpoint["name"], checkpoint["chosen_by"]) == ("seed2.pkl", "fitness")
    surveyed = {row["name"]: row for row in checkpoint["checkpoints"]}
    assert surveyed["seed1.pkl"]["seed"] == 1 and surveyed["seed2.pkl"]["seed"] == 2
    assert surveyed["seed1.pkl"]["fitness"] == pytest.approx(worse)
    assert surveyed["seed2.pkl"]["fitness"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)
    assert surveyed["seed2.pkl"]["hoc"] == "cell_seed2_0.hoc"
    assert result.best["fitness"]["stored"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)


def test_the_catalogue_s_best_run_and_a_named_checkpoint_come_first(tmp_path, mechanisms_cache):
    folder, worse = demo_with_two_seeds(tmp_path / "model", best_run="seed1.pkl")

    by_meta = analyse(folder, tmp_path / "by-meta", mechanisms_cache=mechanisms_cache)
    named = analyse(
        folder, tmp_path / "named", mechanisms_cache=mechanisms_cache, checkpoint="seed2"
    )

    assert by_meta.analysis["checkpoint"]["name"] == "seed1.pkl"
    assert by_meta.analysis["checkpoint"]["chosen_by"] == "best_run"
    assert by_meta.best["fitness"]["stored"] == pytest.approx(worse)
    assert named.analysis["checkpoint"]["name"] == "seed2.pkl"
    assert named.analysis["checkpoint"]["chosen_by"] == "name"
