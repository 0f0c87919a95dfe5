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


def test_run_here_on_a_cluster_forecasts_with_its_engines_not_the_cores_typed(
    catalogue_analysis, client, alice, settings, tmp_path
):
    """With LOCAL_CLUSTER, every engine evaluates at once: the page shows how many there
    are, and the forecast counts them; NSG's forecast still takes the cores typed."""
    from django.core.cache import cache

    from models_app.bpo.sandbox import OFF, Sandbox
    from nsg_app.local.cluster import start_local_cluster

    seconds = catalogue_analysis.evaluation_seconds
    package = package_create(
        optimisation=catalogue_analysis.optimisation, owner=alice, offspring_size=6, max_ngen=5
    )
    client.force_login(alice)
    shape = {"cores_per_node": "1", "runtime_hours": "1"}
    # Three engines: neither the form's default (this machine's cores) nor the 1 typed.
    cluster = start_local_cluster(
        tmp_path / "ipython", 3, sandbox=Sandbox(OFF), readable=[], log_folder=tmp_path / "logs"
    )
    try:
        settings.LOCAL_CLUSTER = cluster.connection_file
        cache.clear()
        page = client.get(f"/jobs/run-here/{package.pk}/").content.decode()
        here = client.get(f"/jobs/run-cost/{package.pk}/", {**shape, "where": "here"}).json()
        nsg = client.get(f"/jobs/run-cost/{package.pk}/", shape).json()
    finally:
        cluster.stop()

    on_engines = f"{math.ceil(6 / 3) * 5 * seconds * 3 / 3600:.2f} core-hours for 30 evaluations"
    assert "which has <strong>3 engines</strong> now" in page
    assert on_engines in page and on_engines in here["summary"]
    assert f"{6 * 5 * seconds / 3600:.2f} core-hours for 30 evaluations" in nsg["summary"]

    # The controller gone: the page says so (after at most 30 s; here at once) and answers.
    cache.clear()
    response = client.get(f"/jobs/run-here/{package.pk}/")
    assert response.status_code == 200
    assert "it does not answer now" in response.content.decode()
