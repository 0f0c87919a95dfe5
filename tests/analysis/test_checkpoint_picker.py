"""A catalogue model with several checkpoints (one per seed): the picker lists them with
their seed and stored fitness and preselects the best run; the one chosen is analysed."""

from __future__ import annotations

import html
import pickle
import re
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.urls import reverse

from analysis_app.models import Analysis
from tests.fixtures.demo import demo_with_two_seeds

from .conftest import SEED1_STORED_FITNESS

URL = reverse("analysis_app:analyses")


@pytest.fixture
def queued():
    with mock.patch("analysis_app.tasks.run_analysis.delay") as delay:
        yield delay


@pytest.fixture
def seeded(tmp_path):
    """Import (as Alice's upload) the demo copy with seed1.pkl (worse) and seed2.pkl (best);
    ``best_run`` names the catalogue's best run in a _meta.json beside it."""
    from models_app.services import optimisation_import

    def make(owner, *, best_run: str | None = None):
        folder, worse = demo_with_two_seeds(tmp_path / "model", best_run=best_run)
        imported = optimisation_import(source=folder, kind="upload", owner=owner)
        return imported.optimisation, worse

    return make


def option(page: str, value: str) -> str:
    """The <option> tag of ``value`` in the checkpoint select, with its label."""
    found = re.search(rf'<option value="{re.escape(value)}"[^>]*>[^<]*</option>', page)
    assert found, f"no option {value}"
    return html.unescape(found[0])


def test_import_reads_each_checkpoint_s_seed_and_stored_fitness(alice, seeded):
    model, worse = seeded(alice)

    rows = {row["name"]: row for row in model.checkpoints}
    assert set(rows) == {"seed1.pkl", "seed2.pkl"}
    assert (rows["seed1.pkl"]["seed"], rows["seed2.pkl"]["seed"]) == (1, 2)
    assert rows["seed1.pkl"]["fitness"] == pytest.approx(worse)
    assert rows["seed2.pkl"]["fitness"] == pytest.approx(SEED1_STORED_FITNESS, abs=0.01)
    assert rows["seed2.pkl"]["hoc"] == "cell_seed2_0.hoc"
    # no _meta.json: the best is the lowest stored fitness (not the first name, not the newest)
    assert model.best_checkpoint == "seed2.pkl"


def test_a_python_2_pickle_is_read(tmp_path):
    from models_app.bpo.checkpoints import survey_checkpoints

    folder, worse = demo_with_two_seeds(tmp_path)
    python2 = (folder / "checkpoints" / "seed1.pkl").read_bytes()
    with pytest.raises(UnicodeDecodeError):  # what a Python 3 reader without latin1 meets
        pickle.loads(python2)

    surveyed = {summary.name: summary for summary in survey_checkpoints(folder)}

    assert surveyed["seed1.pkl"].fitness == pytest.approx(worse)
    assert surveyed["seed1.pkl"].error == ""


def test_the_meta_s_best_run_is_the_catalogue_model_s_best_run(alice, seeded):
    model, _ = seeded(alice, best_run="seed1.pkl")
    assert model.best_checkpoint == "seed1.pkl"


def test_the_picker_lists_the_checkpoints_and_preselects_the_best(client, alice, seeded):
    model, worse = seeded(alice)
    client.force_login(alice)

    detail = client.get(model.get_absolute_url()).content.decode()
    assert "Best run: <code>seed2.pkl</code> of 2 checkpoints" in detail
    assert f'href="{URL}?optimisation={model.pk}"' in detail

    page = client.get(f"{URL}?optimisation={model.pk}").content.decode()

    best = option(page, f"{model.pk}:seed2.pkl")
    assert f"seed2.pkl · seed 2 · stored fitness {SEED1_STORED_FITNESS:.3f}" in best
    assert "best run" in best and " selected" in best
    other = option(page, f"{model.pk}:seed1.pkl")
    assert f"seed1.pkl · seed 1 · stored fitness {worse:.4f}" in other
    assert " selected" not in other and "best run" not in other
    assert re.search(r'<input type="radio" name="source" value="catalogue"[^>]* checked>', page)


def test_the_chosen_checkpoint_is_analysed_and_the_default_is_the_best(
    client, alice, bob, demo, seeded, queued
):
    model, _ = seeded(alice)
    client.force_login(alice)
    data = {"source": "catalogue", "optimisation": model.pk, "top": 1}

    client.post(URL, {**data, "checkpoint": f"{model.pk}:seed1.pkl"})
    client.post(URL, {**data, "checkpoint": ""})
    unknown = client.post(URL, {**data, "checkpoint": f"{model.pk}:seed7.pkl"})
    another_model_s = client.post(URL, {**data, "checkpoint": f"{demo.pk}:seed1.pkl"})

    assert list(Analysis.objects.order_by("pk").values_list("checkpoint", flat=True)) == [
        "seed1.pkl",
        "seed2.pkl",
    ]
    assert unknown.status_code == another_model_s.status_code == 400
    assert "is not one of the available choices" in html.unescape(unknown.content.decode())
    assert f"Choose one of the checkpoints of {model.name}." in html.unescape(
        another_model_s.content.decode()
    )
    client.force_login(bob)  # Alice's upload is not Bob's to analyse
    assert client.post(URL, {**data, "checkpoint": f"{model.pk}:seed1.pkl"}).status_code == 400
    assert Analysis.objects.count() == 2


@pytest.mark.slow
def test_the_chosen_seed_is_simulated_and_its_page_lists_every_checkpoint(
    client, alice, seeded, analysed
):
    model, worse = seeded(alice)

    analysis = analysed(alice, source_kind="catalogue", optimisation=model, checkpoint="seed1.pkl")

    assert analysis.status == "done", analysis.error_message
    assert analysis.fitness["stored"] == pytest.approx(worse)
    client.force_login(alice)
    page = client.get(analysis.get_absolute_url()).content.decode()
    assert 'aria-label="Checkpoints of the run"' in page
    assert "seed1.pkl <span" in page and f"{worse:.4f}" in page
    assert f"{SEED1_STORED_FITNESS:.3f}" in page


@pytest.mark.slow
def test_manage_py_analyse_checkpoint_still_chooses(tmp_path):
    folder, worse = demo_with_two_seeds(tmp_path / "model")
    out = StringIO()

    call_command(
        "analyse", str(folder), "-o", str(tmp_path / "out"), "--checkpoint", "seed1", stdout=out
    )

    printed = out.getvalue()
    assert "Checkpoint: seed1.pkl (as asked)" in printed
    assert f"seed1.pkl: seed 1, stored fitness {worse:.4f}" in printed
    assert f"seed2.pkl: seed 2, stored fitness {SEED1_STORED_FITNESS:.3f}" in printed
    assert f"Fitness of best: stored {worse:.4f}" in printed
