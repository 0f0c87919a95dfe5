import json
import zipfile

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(transactional_db):
    from models_app.demo_model import ensure_demo_model

    return ensure_demo_model()


def test_edit_a_bound_save_create_the_zip_and_download_it(
    page, live_server, login, alice, demo, tmp_path
):
    login(alice)
    page.get_by_role("link", name=demo).click()
    expect(page.get_by_role("heading", name=demo)).to_be_visible()
    expect(page.locator(".stimulus-figure .main-svg").first).to_be_visible()

    page.get_by_role("tab", name="Parameters").click()
    lower = page.get_by_label("somatic gkbar_hh lower bound")
    lower.fill("0.5")
    page.get_by_label("somatic gkbar_hh upper bound").fill("0.2")
    page.get_by_role("button", name="Save new parameters").click()
    expect(page.get_by_role("alert").first).to_contain_text("The parameters were not saved")
    expect(
        page.locator(
            "#somatic\\.gkbar_hh\\.upper ~ .invalid-feedback, tr:has(#somatic\\.gkbar_hh\\.lower) .invalid-feedback"
        ).first
    ).to_be_visible()

    page.get_by_label("somatic gkbar_hh lower bound").fill("0.015")
    page.get_by_label("somatic gkbar_hh upper bound").fill("0.05")
    page.get_by_role("button", name="Save new parameters").click()
    expect(page.get_by_text("Saved parameters version 1")).to_be_visible()
    expect(page.get_by_text("your version 1").first).to_be_visible()
    page.get_by_role("button", name="Save new parameters").click()  # nothing changed
    expect(page.get_by_text("Nothing was saved: these bounds are those of")).to_be_visible()

    page.get_by_role("tab", name="Optimisation").click()
    page.get_by_label("Offspring size").fill("2")
    generations = page.get_by_label("Maximum generations")
    generations.fill("1")
    expect(page.locator("#ngen-warning")).to_be_visible()
    generations.fill("2")
    expect(page.locator("#ngen-warning")).to_be_hidden()
    page.get_by_role("button", name="Create zip file").click()
    expect(page.get_by_text("Created CA1_pyr_cACpyr_ballstick3_")).to_be_visible()
    # the settings keep what was typed
    expect(page.get_by_label("Offspring size")).to_have_value("2")
    expect(page.get_by_label("Maximum generations")).to_have_value("2")

    page.get_by_role("tab", name="Optimisation").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download").first.click()
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    archive = zipfile.ZipFile(path)
    top = download.suggested_filename[: -len(".zip")]
    parameters = json.loads(archive.read(f"{top}/config/parameters.json"))
    assert ["gkbar_hh", 0.015, 0.05, "uniform"] in parameters["CA1_PC_demo"]["optimized"]["somatic"]
    assert '"--offspring_size=2"' in archive.read(f"{top}/init.py").decode()

    page.get_by_role("button", name="Click here to toggle on/off the source code").click()
    expect(
        page.locator("#source-panel").get_by_role("button", name="opt_neuron.py")
    ).to_be_visible()
    # the source shown is the package just built
    expect(page.locator("#source-panel .highlight").first).to_contain_text("--offspring_size=2")

    # a bound no cell can have is saved, with a warning
    page.get_by_role("tab", name="Parameters").click()
    page.get_by_label("somatic gkbar_hh lower bound").fill("-0.01")
    page.get_by_role("button", name="Save new parameters").click()
    expect(page.get_by_text("Saved parameters version 2")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="allows a negative")).to_be_visible()
