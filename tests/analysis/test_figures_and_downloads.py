"""What the finished analysis page serves: figure JSON, figure files, hoc and traces."""

import io
import json
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from .conftest import DEMO_KEY, OBJECTIVES, RECORDINGS

pytestmark = pytest.mark.slow


@pytest.fixture
def page_of(client, alice, catalogue_analysis):
    client.force_login(alice)
    return catalogue_analysis


def figures_of(client, analysis, **query) -> dict:
    response = client.get(reverse("analysis_app:figures", args=[analysis.pk]), query)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()["figures"]


def test_every_figure_is_served(client, page_of):
    figures = figures_of(client, page_of)
    assert set(figures) == {
        "morphology",
        "morphology_3d",
        "evolution",
        "objectives",
        "traces",
        "parameters",
        "features",
    }
    page = client.get(page_of.get_absolute_url()).content.decode()
    for name in figures:
        assert f'data-figure="{name}"' in page
        assert reverse("analysis_app:figure_download", args=[page_of.pk, name, "png"]) in page
        assert reverse("analysis_app:figure_download", args=[page_of.pk, name, "html"]) in page
    assert "plotly/plotly.min.js" in page


def test_one_trace_per_recording(client, page_of):
    traces = figures_of(client, page_of)["traces"]["data"]
    voltages = [trace for trace in traces if trace["meta"]["kind"] == "voltage"]
    assert sorted(trace["name"] for trace in voltages) == sorted(RECORDINGS)
    assert all(len(trace["x"]) == len(trace["y"]) > 100 for trace in voltages)
    stimuli = [trace for trace in traces if trace["meta"]["kind"] == "stimulus"]
    assert len(stimuli) == 3  # one per protocol


def test_one_bar_per_objective(client, page_of):
    (bars,) = figures_of(client, page_of)["objectives"]["data"]
    assert bars["type"] == "bar"
    assert len(bars["y"]) == len(set(bars["y"])) == OBJECTIVES
    assert "step_0.5.soma.Spikecount" in bars["y"]


def test_one_evolution_point_per_generation(client, page_of):
    evolution = figures_of(client, page_of)["evolution"]["data"]
    by_name = {trace["name"]: trace for trace in evolution}
    generations = [1, 2, 3, 4]  # the demo's best run: 4 generations of 4
    assert by_name["population average"]["x"] == generations
    assert by_name["population minimum"]["x"] == generations
    assert min(by_name["population minimum"]["y"]) == pytest.approx(page_of.fitness["stored"])


def test_the_morphology_in_2d_and_3d(client, page_of):
    figures = figures_of(client, page_of)
    names = {trace["name"] for trace in figures["morphology"]["data"]}
    assert names == {"soma", "axon", "apical", "basal"}
    assert figures["morphology"]["layout"]["yaxis"]["scaleanchor"] == "x"
    scene = figures["morphology_3d"]["layout"]["scene"]
    # the demo's reconstruction is flat (z = 0): its 3D box keeps some depth
    assert scene["aspectmode"] == "manual"
    assert scene["aspectratio"]["z"] == pytest.approx(0.1)


def test_figures_of_another_individual(client, alice, demo, analysed):
    analysis = analysed(alice, source_kind="catalogue", optimisation=demo, top=2)
    client.force_login(alice)
    best = figures_of(client, analysis)["objectives"]["layout"]["title"]["text"]
    second = figures_of(client, analysis, individual=1)["objectives"]["layout"]["title"]["text"]
    assert "best individual" in best and "top2 individual" in second
    url = reverse("analysis_app:figures", args=[analysis.pk])
    assert client.get(url, {"individual": 2}).status_code == 404
    assert client.get(url, {"individual": "two"}).status_code == 404


def test_figures_download_as_png_and_html(client, page_of):
    png = client.get(reverse("analysis_app:figure_download", args=[page_of.pk, "evolution", "png"]))
    assert png.status_code == 200
    assert png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    assert f'filename="{page_of.folder}_evolution.png"' in png["Content-Disposition"]
    html = client.get(reverse("analysis_app:figure_download", args=[page_of.pk, "traces", "html"]))
    assert html.status_code == 200
    assert b"step_0.5.soma.v" in html.content
    assert b"plotly" in html.content
    for name, kind in (("nonsense", "png"), ("traces", "pdf")):
        url = reverse("analysis_app:figure_download", args=[page_of.pk, name, kind])
        assert client.get(url).status_code == 404


def test_the_hoc_cell_and_the_traces_download(client, page_of):
    hoc = client.get(reverse("analysis_app:file", args=[page_of.pk, "cell_best.hoc"]))
    assert hoc.status_code == 200
    assert f"begintemplate {DEMO_KEY}" in b"".join(hoc.streaming_content).decode()
    traces = client.get(reverse("analysis_app:traces", args=[page_of.pk, "best"]))
    assert traces.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(traces.streaming_content)))
    names = sorted(name.rsplit("/", 1)[-1] for name in archive.namelist())
    assert names == sorted(f"{recording}.csv" for recording in RECORDINGS)
    first = archive.read(archive.namelist()[0]).decode().splitlines()
    assert first[0] == "time_ms,voltage_mV" and len(first) > 100
    one = client.get(reverse("analysis_app:file", args=[page_of.pk, "traces/best/bAP.soma.v.csv"]))
    assert one.status_code == 200
    assert 'filename="best_bAP.soma.v.csv"' in one["Content-Disposition"]


@pytest.mark.parametrize("name", ["cell_top2.hoc", "../../../etc/passwd", "error.json"])
def test_only_the_analysis_own_files_download(client, page_of, name):
    assert client.get(reverse("analysis_app:file", args=[page_of.pk, name])).status_code == 404
    assert client.get(reverse("analysis_app:traces", args=[page_of.pk, "top2"])).status_code == 404


def test_a_large_fitness_difference_is_flagged(client, page_of):
    name = f"{page_of.result_prefix}/analysis.json"
    with default_storage.open(name) as handle:
        document = json.load(handle)
    fitness = document["individuals"][0]["fitness"]
    fitness.update(recomputed=5577.7, large_difference=True, absolute_difference=5569.2)
    default_storage.delete(name)
    default_storage.save(name, ContentFile(json.dumps(document).encode()))
    page = client.get(page_of.get_absolute_url()).content.decode()
    assert "Large difference between the stored and the recomputed fitness" in page
    assert "eFEL" in page and "NEURON" in page
    assert "5577.7000" in page and "8.4691" in page


def test_an_unfinished_analysis_serves_no_figures(client, alice, demo):
    from analysis_app.models import Analysis

    analysis = Analysis.objects.create(owner=alice, source_kind="catalogue", optimisation=demo)
    client.force_login(alice)
    assert client.get(reverse("analysis_app:figures", args=[analysis.pk])).status_code == 404
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert 'role="progressbar"' in page and "Save analysis" not in page
