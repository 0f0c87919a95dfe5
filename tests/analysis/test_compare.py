"""Compare: two or more done analyses side by side, refused with a message otherwise, and
saved under BluePyOptAnalysis/<user>/compare-<names>/ (claimed in the request, written by
the task, figures as HTML and PNG) without overwriting anything. The saved comparisons'
list, downloads, deletion, recovery and failures: test_saved_comparisons.py."""

import copy
import hashlib
import json

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from analysis_app import services
from analysis_app.engine import compare
from analysis_app.models import Analysis, SavedComparison

from .conftest import (
    OBJECTIVES,
    RECORDINGS,
    best_scores,
    better_on,
    compare_url,
    stored_files,
)

pytestmark = pytest.mark.slow


def figures_url(*analyses) -> str:
    return compare_url(*analyses).replace(
        reverse("analysis_app:compare"), reverse("analysis_app:compare_figures")
    )


def test_the_page_shows_both_fitnesses_every_score_and_which_is_better(client, alice, pair):
    catalogue, run = pair
    client.force_login(alice)
    response = client.get(compare_url(catalogue, run))
    assert response.status_code == 200
    page = response.content.decode()
    for analysis in pair:
        assert f"{analysis.fitness['recomputed']:.4f}" in page
        assert f"{analysis.fitness['stored']:.4f}" in page
        assert analysis.get_absolute_url() in page

    first, second = best_scores(catalogue), best_scores(run)
    assert set(first) == set(second) and len(first) == OBJECTIVES
    assert better_on((str(catalogue), first), (str(run), second)) in page
    # every objective has a row with both scores, the worst (highest of the two) first
    for name in first:
        assert f"<td>{name}</td>" in page
        assert f"{first[name]:.3f}" in page and f"{second[name]:.3f}" in page
    positions = sorted(first, key=lambda name: page.index(f"<td>{name}</td>"))
    worst = [max(first[name], second[name]) for name in positions]
    assert worst == sorted(worst, reverse=True)


def test_the_figures_overlay_both_analyses(client, alice, pair):
    catalogue, run = pair
    client.force_login(alice)
    response = client.get(figures_url(catalogue, run))
    assert response.status_code == 200
    figures = response.json()["figures"]
    assert set(figures) == set(compare.COMPARE_FIGURE_NAMES)

    bars = figures["objectives"]["data"]
    assert len(bars) == 2 and all(len(bar["y"]) == OBJECTIVES for bar in bars)
    first, second = best_scores(catalogue), best_scores(run)
    assert dict(zip(bars[0]["y"], bars[0]["x"], strict=True)) == pytest.approx(first)
    assert dict(zip(bars[1]["y"], bars[1]["x"], strict=True)) == pytest.approx(second)

    voltages = [t for t in figures["traces"]["data"] if t.get("meta", {}).get("kind") == "voltage"]
    for index in (0, 1):
        drawn = {t["meta"]["recording"] for t in voltages if t["meta"]["analysis"] == index}
        assert drawn == RECORDINGS

    parameters = figures["parameters"]["data"]
    assert len(parameters) == 2
    for trace in parameters:
        # each value lies within its own bounds (the whiskers), on the common 0-1 scale
        for value, up, down in zip(
            trace["x"], trace["error_x"]["array"], trace["error_x"]["arrayminus"], strict=True
        ):
            assert up >= 0 and down >= 0 and value - down >= -1e-9 and value + up <= 1 + 1e-9

    features = [t for t in figures["features"]["data"] if t["name"] in (str(catalogue), str(run))]
    assert len(features) == 2 and all(trace["y"] for trace in features)


def test_analyses_that_cannot_be_compared_get_a_message(
    client, alice, bob, catalogue_analysis, demo
):
    client.force_login(alice)
    queued = Analysis.objects.create(owner=alice, source_kind="catalogue", optimisation=demo)
    bobs = Analysis.objects.create(
        owner=bob, source_kind="catalogue", optimisation=demo, status="done"
    )
    cases = {
        compare_url(): "Choose at least two analyses",
        compare_url(catalogue_analysis): "Choose at least two analyses",
        compare_url(catalogue_analysis, catalogue_analysis): "Choose at least two analyses",
        compare_url(catalogue_analysis, "x²"): "not a number",
        compare_url(catalogue_analysis, queued): "Only finished analyses can be compared",
        compare_url(catalogue_analysis, bobs): f"No analysis {bobs.pk} among yours",
        compare_url(catalogue_analysis, 99999999999999999999): "not a number",
        compare_url(*range(1, 9)): "at most 6",
    }
    for url, message in cases.items():
        response = client.get(url)
        assert response.status_code == 400, url
        assert message in response.content.decode(), url
        figures = client.get(reverse("analysis_app:compare_figures") + url[url.index("?") :])
        assert figures.status_code == 400 and message in figures.json()["error"]


def test_staff_compare_anyone_s_analyses(client, staff, pair):
    client.force_login(staff)
    response = client.get(compare_url(*pair))
    assert response.status_code == 200
    assert "better on" in response.content.decode()


def test_objectives_in_only_some_are_shown_and_different_models_are_refused(pair):
    entries = services.comparison_entries(pair)
    changed = copy.deepcopy(entries[1].document)
    dropped = changed["individuals"][0]["objectives"].pop()
    partial = compare.comparison([entries[0], compare.Compared("changed", changed)])
    assert partial["shared"] == OBJECTIVES - 1
    assert partial["only_some"] == [{"name": dropped["name"], "in": [entries[0].name]}]
    assert f"of the {OBJECTIVES - 1} objectives" in partial["summary"]
    row = next(r for r in partial["objectives"] if r["name"] == dropped["name"])
    assert row["shown"][1] == "absent" and row["best"] is None

    other = copy.deepcopy(entries[1].document)
    for objective in other["individuals"][0]["objectives"]:
        objective["name"] = "other_model." + objective["name"]
    with pytest.raises(compare.CompareRefused, match="share no objective"):
        compare.comparison([entries[0], compare.Compared("other", other)])


def test_three_analyses_say_which_is_best_on_how_many(pair):
    entries = services.comparison_entries(pair)
    third = copy.deepcopy(entries[1].document)
    for objective in third["individuals"][0]["objectives"]:
        objective["score"] = objective["score"] + 100
    compared = compare.comparison([*entries, compare.Compared("worse", third)])
    assert compared["fitness"][2]["wins"] == 0
    assert sum(row["wins"] for row in compared["fitness"]) + compared["ties"] == OBJECTIVES
    assert compared["summary"].startswith(f"Best on each of the {OBJECTIVES} objectives:")
    assert "worse on 0" in compared["summary"]


def digest(name: str) -> str:
    with default_storage.open(name) as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_save_claims_the_folder_then_writes_json_html_and_png_and_never_overwrites(
    client,
    alice,
    pair,
    saved_comparison,
    comparison_saving_now,
    django_capture_on_commit_callbacks,
):
    catalogue, run = pair
    assert saved_comparison == (f"BluePyOptAnalysis/alice/compare-{catalogue.folder}-{run.folder}")
    client.force_login(alice)
    data = {"analysis": [catalogue.pk, run.pk], "folder": saved_comparison.rsplit("/", 1)[1]}

    # The click claims the folder and queues the writing: the page says so, and where.
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(reverse("analysis_app:compare_save"), data, follow=True)
    page = response.content.decode()
    assert f"Saving the comparison to {saved_comparison}/" in page
    assert f"Being saved to <code>{saved_comparison}/</code>" in page
    saved = SavedComparison.objects.get(saved_to=saved_comparison)
    assert (saved.owner, saved.status) == (alice, "saving")
    assert saved.compared == [
        {"id": a.pk, "name": str(a), "folder": a.folder} for a in (catalogue, run)
    ]
    assert set(saved.analyses.all()) == {catalogue, run}
    assert stored_files(saved_comparison) == set()
    # the folder is held while it is written: a second click is offered another name
    again = client.post(reverse("analysis_app:compare_save"), data, follow=True)
    assert f"{saved_comparison}/ already exists" in again.content.decode()

    # The task writes it all: comparison.json and every figure as HTML and PNG.
    for callback in queued:
        callback()
    assert comparison_saving_now.call_count == 1
    saved.refresh_from_db()
    assert saved.status == "saved", saved.error
    figures = {
        f"figures/{name}.{kind}"
        for name in compare.COMPARE_FIGURE_NAMES
        for kind in ("html", "png")
    }
    assert stored_files(saved_comparison) == {"comparison.json"} | figures
    assert set(saved.files) == {"comparison.json"} | figures
    for name in compare.COMPARE_FIGURE_NAMES:
        with default_storage.open(f"{saved_comparison}/figures/{name}.png") as handle:
            png = handle.read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000, name
    with default_storage.open(f"{saved_comparison}/comparison.json") as handle:
        document = json.load(handle)
    assert [row["id"] for row in document["analyses"]] == [catalogue.pk, run.pk]
    assert [row["recomputed"] for row in document["fitness"]] == [
        catalogue.fitness["recomputed"],
        run.fitness["recomputed"],
    ]
    assert len(document["objectives"]) == OBJECTIVES and "better on" in document["summary"]
    page = client.get(compare_url(catalogue, run)).content.decode()
    assert f"Saved in <code>{saved_comparison}/</code>" in page
    before = digest(f"{saved_comparison}/comparison.json")

    # the same folder again: refused, a free name offered and filled in, nothing overwritten
    response = client.post(reverse("analysis_app:compare_save"), data, follow=True)
    page = response.content.decode()
    assert f"{saved_comparison}/ already exists" in page
    free = f"{saved_comparison.rsplit('/', 1)[1]}-2"
    assert f'value="{free}"' in page
    assert digest(f"{saved_comparison}/comparison.json") == before
    assert stored_files(f"{saved_comparison}-2") == set()
    assert SavedComparison.objects.count() == 1

    bad = client.post(reverse("analysis_app:compare_save"), {**data, "folder": "../x"}, follow=True)
    assert "cannot be a folder name" in bad.content.decode()
    assert comparison_saving_now.call_count == 1


def test_the_analyses_list_offers_done_analyses_to_compare(client, alice, catalogue_analysis, demo):
    queued = Analysis.objects.create(owner=alice, source_kind="catalogue", optimisation=demo)
    client.force_login(alice)
    page = client.get(reverse("analysis_app:analyses")).content.decode()
    assert f'name="analysis" value="{catalogue_analysis.pk}"' in page
    assert f'name="analysis" value="{queued.pk}"' not in page
    assert 'id="compare-button"' in page
