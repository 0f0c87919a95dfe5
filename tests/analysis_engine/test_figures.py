"""The figures hold what they should, and are written as HTML and PNG files."""

from __future__ import annotations

import textwrap
import time

import pytest

from analysis_app.engine import figures
from analysis_app.engine.analysis import fitness_comparison
from analysis_app.engine.morphology import MorphologyError, read_morphology
from analysis_app.engine.traces import downsample
from models_app.bpo.loading import read_entry_script

from .conftest import DEMO

SMALL_ASC = textwrap.dedent(
    """
    ;	V3 text file written for MicroBrightField products.
    (ImageCoords)
    ("SR/SP"
      (Color Green)
      (  0.0  50.0  0.0  2.8)  ;  1, 1
      ( 90.0  50.0  0.0  2.8)  ;  1, 2
    )  ;  End of contour
    ("CellBody"
      (Color Red)
      (CellBody)
      (  5.0   0.0  0.0  0.15)  ; 2, 1
      (  0.0   5.0  0.0  0.15)  ; 2, 2
      ( -5.0   0.0  0.0  0.15)  ; 2, 3
      (  0.0  -5.0  0.0  0.15)  ; 2, 4
    )  ;  End of contour
    ( (Color Blue)
      (Axon)
      (  0.0  -5.0  0.0  1.0)  ; Root
      (  0.0 -20.0  0.0  1.0)  ; 1, R
      (
        (  5.0 -30.0  0.0  0.5)  ; 1, R-1
        (FilledCircle
          (Color Blue)
          (Name "Marker 1")
          ( 99.0 99.0 99.0 0.2)  ; 1
        )  ;  End of markers
        ( 10.0 -40.0  0.0  0.5)  ; 2
         Normal
      |
        ( -5.0 -30.0  0.0  0.5)  ; 1, R-2
        <( -6.0 -31.0 0.0 0.1)>  ; a spine
        ( -10.0 -40.0  0.0  0.5)  ; 2
         Incomplete
      )  ;  End of split
    )  ;  End of tree
    ( (Color Magenta)
      (Apical)
      (  0.0   5.0  0.0  2.0)  ; Root
      (  0.0  60.0  0.0  1.5)  ; 1, R
    )  ;  End of tree
    """
)


def test_neurolucida_reader_keeps_the_cell_and_leaves_out_the_rest(tmp_path):
    path = tmp_path / "cell.asc"
    path.write_text(SMALL_ASC)
    morphology = read_morphology(path)
    assert len(morphology.soma) == 1 and len(morphology.soma[0]) == 4
    axon = morphology.neurites["axon"]
    # the trunk, then two branches, each starting where the trunk ends
    assert [line[:, :2].tolist() for line in axon] == [
        [[0.0, -5.0], [0.0, -20.0]],
        [[0.0, -20.0], [5.0, -30.0], [10.0, -40.0]],
        [[0.0, -20.0], [-5.0, -30.0], [-10.0, -40.0]],
    ]
    assert set(morphology.neurites) == {"axon", "apical"}
    all_points = [
        point for lines in morphology.neurites.values() for line in lines for point in line
    ]
    assert all(point[0] != 99.0 and point[0] != 90.0 for point in all_points)  # no marker, layer


def test_swc_reader_draws_every_branch_from_its_parent():
    morphology = read_morphology(DEMO / "morphology" / "ballstick3.swc")
    assert set(morphology.neurites) == {"axon", "apical", "basal"}
    assert morphology.neurites["apical"][0][-1][:3].tolist() == [0.0, 350.0, 0.0]
    assert morphology.neurites["basal"][0][0][:3].tolist() == [0.0, 0.0, 0.0]


def test_unreadable_morphologies_are_refused(tmp_path):
    bad = tmp_path / "cell.asc"
    bad.write_text("( (Axon) ( 1 2 3 4)")
    with pytest.raises(MorphologyError):
        read_morphology(bad)
    other = tmp_path / "cell.h5"
    other.write_bytes(b"")
    with pytest.raises(MorphologyError):
        read_morphology(other)


def test_fitness_difference_flag():
    software = {"efel": "5.7.34", "neuron": "9.0.2", "bluepyopt": "1.14.26"}
    drifted = fitness_comparison(97.56, 5577.7, software)
    assert drifted["large_difference"]
    assert "efel 5.7.34" in drifted["note"]
    close = fitness_comparison(8.47, 8.4691, software)
    assert not close["large_difference"] and close["note"] is None
    assert close["relative_difference"] == pytest.approx(0.0001, abs=1e-4)


def test_downsampling_keeps_the_extremes():
    import numpy as np

    time_values = np.linspace(0, 1000, 100_001)
    voltage = np.full_like(time_values, -70.0)
    voltage[50_123] = 40.0
    voltage[70_001] = -90.0
    shown_time, shown_voltage = downsample(time_values, voltage, 500)
    assert len(shown_time) <= 500
    assert shown_voltage.max() == 40.0 and shown_voltage.min() == -90.0
    assert np.all(np.diff(shown_time) >= 0)


def test_opt_neuron_arguments_are_read_without_running_it():
    source = (
        "import model.evaluator\n"
        "evaluator = model.evaluator.create('KEY', 'all', cvode_active=True, dt=0.025,\n"
        "                                   seed=os.getenv('SEED'))\n"
    )
    script = read_entry_script(source)
    assert (script.args, script.kwargs) == (["all"], {"cvode_active": True, "dt": 0.025})
    assert script.create_key == "KEY"
    assert script.imports == ["model.evaluator"]
    python2 = read_entry_script("print 'python 2'")
    assert (python2.imports, python2.args, python2.kwargs) == ([], [], {})


def test_the_model_imports_of_opt_neuron_are_read_in_order_up_to_the_create_call():
    source = (
        "import os\n"
        "from model.evaluator import *\n"
        "from model.template import *\n"
        "try:\n"
        "    from model.analysis import *\n"
        "except ImportError:\n"
        "    pass\n"
        "evaluator = model.evaluator.create(etype='W_1', cvode_active=True)\n"
        "import model.late\n"
    )
    script = read_entry_script(source)
    assert script.imports == ["model.evaluator", "model.template", "model.analysis"]
    assert script.create_key == "W_1"
    assert script.kwargs == {"cvode_active": True}


def test_stimulus_current_sums_the_envelopes():
    protocol = {
        "stimuli": [
            {"envelope": [[0, 0], [100, 0], [100, 0.5], [300, 0.5], [300, 0], [400, 0]]},
            {"envelope": [[0, -0.1], [400, -0.1]]},
        ]
    }
    times, currents = figures.stimulus_current(protocol)
    assert list(zip(times, currents, strict=True)) == [
        (0, -0.1),
        (100, -0.1),
        (100, 0.4),
        (300, 0.4),
        (300, -0.1),
        (400, -0.1),
    ]


@pytest.mark.slow
def test_figures_hold_what_they_should(catalogue_analysis):
    analysis = catalogue_analysis.analysis
    best = analysis["individuals"][0]
    built = figures.all_figures(analysis, catalogue_analysis.morphology_path)
    assert list(built) == list(figures.FIGURE_NAMES)

    voltage = [t for t in built["traces"].data if t.meta and t.meta["kind"] == "voltage"]
    assert sorted(t.name for t in voltage) == sorted(t["name"] for t in best["traces"])
    stimuli = [t for t in built["traces"].data if t.meta and t.meta["kind"] == "stimulus"]
    assert len(stimuli) == len(analysis["protocols"])

    bars = built["objectives"].data[0]
    scores = {o["name"]: o["score"] for o in best["objectives"]}
    assert len(bars.y) == len(best["objectives"]) == 8
    assert [scores[name] for name in bars.y] == sorted(scores.values(), reverse=True)
    assert built["objectives"].layout.yaxis.autorange == "reversed"  # worst at the top

    generations = [row["gen"] for row in analysis["logbook"]]
    named = {trace.name: trace for trace in built["evolution"].data}
    for name in ("population average", "population minimum", "population standard deviation"):
        assert list(named[name].x) == generations == [1, 2, 3, 4]

    positions = built["parameters"].data[1].x
    assert len(positions) == 9 and all(0 <= x <= 1 for x in positions)
    assert len(built["features"].data[0].y) == 8


@pytest.mark.slow
def test_figures_are_written_as_html_and_png(catalogue_analysis, tmp_path):
    if figures._browser() is None:
        pytest.skip("no Chrome or Chromium for kaleido")
    built = figures.all_figures(catalogue_analysis.analysis, catalogue_analysis.morphology_path)
    chosen = {name: built[name] for name in ("objectives", "traces")}
    written = figures.write_figure_files(chosen, tmp_path)
    for name in chosen:
        html = written[name]["html"].read_text()
        # self-contained: plotly.js inline, nothing fetched from a network
        assert "<html>" in html and len(html) > 1_000_000
        assert '<script src="http' not in html
        assert written[name]["png"].read_bytes().startswith(b"\x89PNG")


def test_png_export_that_takes_too_long_is_stopped(tmp_path):
    figure = figures.evolution_figure({"logbook": [{"gen": 1, "avg": 2, "std": 1, "min": 1}]})
    started = time.monotonic()
    with pytest.raises(figures.FigureExportError, match="took more than"):
        figures.write_figure_files({"evolution": figure}, tmp_path, html=False, png_timeout=0.2)
    assert time.monotonic() - started < 15


def test_png_export_calls_on_wait_and_ends_when_it_raises(tmp_path, monkeypatch):
    """A background save beats its heartbeat while kaleido works, and stops the export at
    once when it finds the save taken over."""
    monkeypatch.setattr(figures, "WAIT_CALL_SECONDS", 0.05)
    figure = figures.evolution_figure({"logbook": [{"gen": 1, "avg": 2, "std": 1, "min": 1}]})
    calls = []

    class Stop(Exception):
        pass

    def on_wait():
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise Stop

    started = time.monotonic()
    with pytest.raises(Stop):
        figures.write_figure_files({"evolution": figure}, tmp_path, html=False, on_wait=on_wait)
    assert len(calls) == 3 and time.monotonic() - started < 15
