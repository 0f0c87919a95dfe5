"""A scientist ticks two analyses of the demo model, compares them in a real browser, saves
the comparison (written by the worker) and finds it again on the analyses page."""

from unittest import mock

import pytest
from playwright.sync_api import expect

from analysis_app import services
from tests.analysis.conftest import (  # noqa: F401 - fixtures, used by name
    OBJECTIVES,
    analysed,
    best_scores,
    better_on,
    collected_job,
    demo,
    nsg_output,
    remove_stored_folder,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

_FIGURE_DATA = """(name) => {
    const node = document.getElementById("figure-" + name);
    return (node._fullData || []).map((trace) => ({
        name: trace.name,
        type: trace.type,
        kind: trace.meta ? trace.meta.kind || null : null,
        analysis: trace.meta ? trace.meta.analysis : null,
        bars: trace.type === "bar" ? trace.y.length : 0,
    }));
}"""


@pytest.fixture
def two_analyses(alice, demo, collected_job, nsg_output, analysed):  # noqa: F811
    """The demo's own best run and a new 2 x 2 run of it, both analysed; no saved
    comparison of them before or after the test."""
    catalogue = analysed(alice, source_kind="catalogue", optimisation=demo)
    run = analysed(alice, source_kind="job", job=collected_job(alice, nsg_output))
    assert catalogue.status == run.status == "done", (catalogue.error_message, run.error_message)
    # named in the order the list shows them (newest first), as ticked there
    prefix = f"BluePyOptAnalysis/alice/{services.comparison_folder([run, catalogue])}"
    remove_stored_folder(prefix)
    yield catalogue, run, prefix
    remove_stored_folder(prefix)


def test_tick_two_analyses_compare_them_and_save_the_comparison(
    page, live_server, login, alice, two_analyses, running_worker
):
    catalogue, run, prefix = two_analyses
    login(alice)
    page.get_by_role("link", name="Analyses").click()
    page.get_by_label(f"Compare {catalogue}").check()
    page.get_by_label(f"Compare {run}").check()
    page.get_by_role("button", name="Compare").click()

    expect(page.get_by_role("heading", name="Compare analyses")).to_be_visible()
    fitness = page.locator("#compare-fitness")
    for analysis in (catalogue, run):
        expect(fitness).to_contain_text(str(analysis))
        expect(fitness).to_contain_text(f"{analysis.fitness['recomputed']:.4f}")
    # in the order of the list, newest first; the counts worked out from the analysis.json
    summary = better_on((str(run), best_scores(run)), (str(catalogue), best_scores(catalogue)))
    expect(page.locator("#compare-summary")).to_have_text(summary + ".")

    expect(page.locator("#figures")).to_have_attribute("data-drawn", "1", timeout=60_000)
    for name in ("Objectives", "Traces", "Parameters", "Features"):
        region = page.get_by_role("region", name=name, exact=True)
        expect(region.locator(".plot-container")).to_be_visible()
        expect(region).not_to_contain_text("could not be loaded")
    bars = page.evaluate(_FIGURE_DATA, "objectives")
    assert [trace["bars"] for trace in bars] == [OBJECTIVES, OBJECTIVES]
    voltages = [t for t in page.evaluate(_FIGURE_DATA, "traces") if t["kind"] == "voltage"]
    assert {t["analysis"] for t in voltages} == {0, 1}

    page.get_by_role("button", name="Save comparison").click()
    # the worker writes it; the page says where, and that it is saved once it is
    expect(page.get_by_text(f"Saving the comparison to {prefix}/")).to_be_visible()
    saved = page.locator("#saved-comparisons")
    expect(saved).to_contain_text(f"Saved in {prefix}/", timeout=120_000)
    # the folder is taken now: the page offers a free name, and typing the taken one back
    # is refused rather than overwriting the saved comparison
    folder = page.get_by_label("Folder name")
    expect(folder).to_have_value(f"{prefix.rsplit('/', 1)[1]}-2")
    folder.fill(prefix.rsplit("/", 1)[1])
    page.get_by_role("button", name="Save comparison").click()
    expect(page.get_by_text(f"{prefix}/ already exists")).to_be_visible()
    expect(folder).to_have_value(f"{prefix.rsplit('/', 1)[1]}-2")

    # Listed on the analyses page, with both analyses, its files and "Open".
    page.get_by_role("link", name="Analyses").first.click()
    table = page.get_by_role("table", name="Saved comparisons")
    row = table.locator("tbody tr", has_text=f"{prefix}/")
    expect(row).to_contain_text("Saved")
    for analysis in (catalogue, run):
        expect(row.get_by_role("link", name=str(analysis))).to_be_visible()
    row.get_by_text("Files").click()
    with page.expect_download() as downloading:
        row.get_by_role("link", name="Traces PNG").click()
    download = downloading.value
    assert download.suggested_filename == f"{prefix.rsplit('/', 1)[1]}_traces.png"
    with open(download.path(), "rb") as handle:
        assert handle.read(4) == b"\x89PNG"
    row.get_by_role("link", name="Open").click()
    expect(page.get_by_role("heading", name="Compare analyses")).to_be_visible()
    expect(page.locator("#saved-comparisons")).to_contain_text(f"Saved in {prefix}/")


def test_the_analyses_page_follows_a_comparison_being_saved_until_its_files_are_there(
    page, live_server, login, alice, two_analyses
):
    catalogue, run, prefix = two_analyses
    with mock.patch("analysis_app.tasks.save_comparison.delay"):  # written below, by the test
        saved = services.comparison_save_start(owner=alice, analyses=[run, catalogue])
    login(alice)
    page.get_by_role("link", name="Analyses").click()
    row = page.get_by_role("table", name="Saved comparisons").locator(
        "tbody tr", has_text=f"{prefix}/"
    )
    expect(row).to_contain_text("Saving")
    expect(row.get_by_text("Files")).to_have_count(0)

    # The writer ends while the page is open: the page shows the result without a reload.
    assert services.comparison_save_write(comparison_id=saved.pk) == services.SAVED
    expect(row).to_contain_text("Saved", timeout=30_000)
    expect(row).not_to_contain_text("Saving")
    row.get_by_text("Files").click()
    expect(row.get_by_role("link", name="Objectives PNG")).to_be_visible()


def test_compare_with_one_analysis_ticked_says_what_to_do(
    page, live_server, login, alice, two_analyses
):
    catalogue, _, _ = two_analyses
    login(alice)
    page.get_by_role("link", name="Analyses").click()
    page.get_by_label(f"Compare {catalogue}").check()
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#refusal")).to_contain_text("Choose at least two analyses")
