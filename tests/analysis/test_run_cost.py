"""Cost before submitting, from an analysis: its protocols' time is one evaluation's."""

import math

import pytest

from analysis_app import services
from models_app.services import package_create

pytestmark = pytest.mark.slow


def test_an_analysis_measures_the_time_per_evaluation_the_run_pages_forecast_with(
    catalogue_analysis, client, alice
):
    document = services.analysis_document(analysis=catalogue_analysis)
    protocols = [row for row in document["timings"]["protocols"] if row["rank"] == 1]
    seconds = sum(row["seconds"] for row in protocols)
    assert len(protocols) == 3 and seconds > 0
    assert catalogue_analysis.evaluation_seconds == pytest.approx(seconds)

    package = package_create(
        optimisation=catalogue_analysis.optimisation, owner=alice, offspring_size=6, max_ngen=5
    )
    client.force_login(alice)
    page = client.get(f"/jobs/run-here/{package.pk}/").content.decode()
    cost = client.get(
        f"/jobs/run-cost/{package.pk}/", {"cores_per_node": "4", "runtime_hours": "1"}
    ).json()

    assert f"measured by the analysis {catalogue_analysis.folder}" in page
    wall = math.ceil(6 / 4) * 5 * catalogue_analysis.evaluation_seconds
    assert f"{wall * 4 / 3600:.2f} core-hours for 30 evaluations" in cost["summary"]
    assert cost["warning"] == ""
