"""A scientist analyses the demo model's best run in a real browser, then saves it."""

import pytest
from playwright.sync_api import expect

from tests.analysis.conftest import remove_stored_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(transactional_db):
    from models_app.demo_model import ensure_demo_model

    name = ensure_demo_model()
    # storage lives for the whole test session: no saved folder of an earlier test
    remove_stored_folder(f"BluePyOptAnalysis/alice/{name}")
    yield name
    remove_stored_folder(f"BluePyOptAnalysis/alice/{name}")


def test_view_the_best_run_s_figures_and_save_the_analysis(
    page, live_server, login, alice, demo, running_worker
):
    login(alice)
    page.get_by_role("link", name="Analyses").click()
    page.get_by_label("Catalogue model's best run").check()
    page.get_by_label("Catalogue model", exact=True).select_option(label=f"{demo} (seed1.pkl)")
    page.get_by_role("button", name="View analysis").click()

    expect(page.get_by_role("heading", name=demo)).to_be_visible()
    # the progress bar gives way to the figures once the worker is done
    figures = page.get_by_role("region", name="Traces")
    expect(figures.locator(".main-svg").first).to_be_visible(timeout=120_000)
    for name in ("Morphology", "Morphology in 3D", "Evolution", "Objectives", "Parameters"):
        expect(
            page.get_by_role("region", name=name, exact=True).locator(".plot-container")
        ).to_be_visible()
    expect(page.locator("#fitness")).to_contain_text("8.4691")
    expect(
        page.get_by_role("region", name="Traces").get_by_role("link", name="PNG")
    ).to_be_visible()

    page.get_by_role("button", name="Save analysis").click()
    expect(page.get_by_text(f"Saved in BluePyOptAnalysis/alice/{demo}/")).to_be_visible(
        timeout=120_000
    )

    page.get_by_role("link", name="Analyses").first.click()
    saved = page.get_by_role("table", name="Saved analyses")
    expect(saved).to_contain_text(f"BluePyOptAnalysis/alice/{demo}/")
    saved.get_by_role("link", name=demo).click()
    expect(page.locator("#figure-evolution .main-svg").first).to_be_visible()


def test_every_individual_s_figures_draw_and_switching_back_works(
    page, live_server, login, alice, demo, running_worker
):
    login(alice)
    page.get_by_role("link", name="Analyses").click()
    page.get_by_label("Catalogue model's best run").check()
    page.get_by_label("Catalogue model", exact=True).select_option(label=f"{demo} (seed1.pkl)")
    page.get_by_label("Best individuals to simulate").fill("3")
    page.get_by_role("button", name="View analysis").click()

    traces = page.locator("#figure-traces")
    expect(traces.locator(".main-svg").first).to_be_visible(timeout=120_000)
    chooser = page.get_by_label("Individual")
    labels = chooser.locator("option").all_inner_texts()
    assert len(labels) == 3
    for label in [labels[1], labels[2], labels[0], labels[2]]:
        chooser.select_option(label=label)
        expect(page.locator("#figures")).to_have_attribute("data-drawn", str(labels.index(label)))
        for name in ("morphology", "evolution", "objectives", "traces", "parameters", "features"):
            expect(page.locator(f"#figure-{name} .main-svg").first).to_be_visible()

    # a PNG takes the server a few seconds: the link says so, then the file arrives
    png = page.get_by_role("region", name="Objectives").get_by_role("link", name="PNG")
    with page.expect_download(timeout=120_000) as downloading:
        png.click()
        expect(
            page.get_by_role("region", name="Objectives").locator("[aria-busy=true]")
        ).to_have_text("Making PNG…")
    download = downloading.value
    assert download.suggested_filename.endswith(".png")
    with open(download.path(), "rb") as handle:
        assert handle.read(4) == b"\x89PNG"
    expect(png).to_have_text("PNG")

    # Save analysis under a name of one's own; a taken name offers a free one, filled in.
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    default_storage.save("BluePyOptAnalysis/alice/my-run/notes.txt", ContentFile(b"mine"))
    try:
        page.locator("#save-folder").fill("my-run")
        page.get_by_role("button", name="Save analysis").click()
        expect(page.get_by_role("alert").first).to_contain_text(
            "BluePyOptAnalysis/alice/my-run/ already exists"
        )
        expect(page.locator("#save-folder")).to_have_value("my-run-2")
        page.get_by_role("button", name="Save analysis").click()
        expect(page.get_by_text("Saved in BluePyOptAnalysis/alice/my-run-2/")).to_be_visible(
            timeout=120_000
        )
        assert default_storage.open("BluePyOptAnalysis/alice/my-run/notes.txt").read() == b"mine"
    finally:
        remove_stored_folder("BluePyOptAnalysis/alice/my-run")
        remove_stored_folder("BluePyOptAnalysis/alice/my-run-2")
