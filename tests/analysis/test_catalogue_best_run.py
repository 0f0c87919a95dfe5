"""The catalogue model's own best run (the notebook's "GitHub" source), analysed."""

import pytest
from django.urls import reverse

from .conftest import SEED1_STORED_FITNESS

pytestmark = pytest.mark.slow


def test_recomputed_fitness_equals_the_stored_one(catalogue_analysis, client, alice):
    fitness = catalogue_analysis.fitness
    assert fitness["stored"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)
    assert fitness["recomputed"] == pytest.approx(fitness["stored"], rel=1e-3)
    assert not fitness["large_difference"]
    assert catalogue_analysis.folder == catalogue_analysis.optimisation.name
    assert catalogue_analysis.checkpoint == "seed1.pkl"

    client.force_login(alice)
    page = client.get(catalogue_analysis.get_absolute_url()).content.decode()
    assert "Fitness: stored in the checkpoint and recomputed here" in page
    assert page.count("8.4691") >= 2  # stored and recomputed, side by side
    assert "Large difference" not in page
    assert "Save analysis" in page


def test_progress_is_recorded_in_the_row(catalogue_analysis, client, alice):
    assert catalogue_analysis.progress["stage"] == "done"
    assert catalogue_analysis.progress["protocols_done"] == 3
    client.force_login(alice)
    status = client.get(reverse("analysis_app:status", args=[catalogue_analysis.pk])).json()
    assert status["status"] == "done"
    assert status["percent"] == 100
    assert not status["active"]
