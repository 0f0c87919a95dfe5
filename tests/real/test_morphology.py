"""The real model's morphology is read whole and drawn (each neurite kind in its colour)."""

from __future__ import annotations

from analysis_app.engine import figures
from analysis_app.engine.morphology import read_morphology


def test_the_real_morphology_is_read_whole_and_drawn(real_model):
    morphology = read_morphology(real_model.morphology)

    kinds = real_model.neurite_kinds
    assert {"axon", "basal"} <= set(kinds)
    assert list(morphology.neurites) == kinds
    assert len(morphology.soma) == 1
    assert morphology.point_count > 7000
    figure = figures.morphology_figure(morphology)
    assert [trace.name for trace in figure.data] == ["soma", *kinds]
    assert figure.layout.yaxis.scaleanchor == "x"
    assert figures.morphology_3d_figure(morphology).layout.scene.aspectmode == "data"
