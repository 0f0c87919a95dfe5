"""The figures of an analysis, as Plotly figures built from analysis.json and the morphology.

One function per figure, each returning a ``go.Figure``; ``all_figures`` builds them all;
``write_figure_files`` saves them as self-contained HTML (a saved analysis must open on its
own, years later, without a network) and PNG.

- morphology, morphology_3d: the reconstruction, projected on x-y and in 3D
- evolution: population average, minimum and ±std band per generation ("peaks")
- objectives: one horizontal bar per protocol.location.feature score, worst first
- traces: voltage against time per recording, one panel per protocol, stimulus on a
  second axis
- parameters: each optimised parameter's value placed between its bounds
- features: each feature's model value against the experimental mean ± std
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from models_app.bpo.sandbox import die_with_parent, kill_group
from models_app.bpo.units import feature_unit, mean_and_std

from .morphology import Morphology, MorphologyError, read_morphology

FIGURE_NAMES = (
    "morphology",
    "morphology_3d",
    "evolution",
    "objectives",
    "traces",
    "parameters",
    "features",
)
PNG_TIMEOUT_SECONDS = 120
PNG_WIDTH = 1000
_NEURITE_COLOURS = {
    "soma": "#222222",
    "axon": "#1f77b4",
    "basal": "#d62728",
    "apical": "#9467bd",
}
_OTHER_COLOUR = "#7f7f7f"
_BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
_TEMPLATE = "plotly_white"


class FigureExportError(RuntimeError):
    """The figures could not be written as files; the message says why."""


class FigureExportTimeout(FigureExportError):
    """The PNG export ran out of time (and was stopped)."""


# --- morphology ------------------------------------------------------------------------


def morphology_figure(morphology: Morphology | str | Path) -> go.Figure:
    """The morphology projected on the x-y plane, equal scales on both axes."""
    morphology = _morphology(morphology)
    figure = go.Figure()
    for outline in morphology.soma:
        closed = _closed(outline)
        figure.add_trace(
            go.Scatter(
                x=closed[:, 0],
                y=closed[:, 1],
                mode="lines",
                fill="toself",
                line={"color": _NEURITE_COLOURS["soma"], "width": 1},
                name="soma",
                legendgroup="soma",
                showlegend=outline is morphology.soma[0],
            )
        )
    for kind, lines in morphology.neurites.items():
        x, y, _ = _joined(lines)
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line={"color": _NEURITE_COLOURS.get(kind, _OTHER_COLOUR), "width": 1.5},
                name=kind,
                hoverinfo="name",
            )
        )
    figure.update_layout(
        title="Morphology (x-y projection)",
        template=_TEMPLATE,
        height=650,
        xaxis={"title": "x (µm)"},
        yaxis={"title": "y (µm)", "scaleanchor": "x", "scaleratio": 1},
    )
    return figure


def morphology_3d_figure(morphology: Morphology | str | Path) -> go.Figure:
    """The morphology in 3D, to turn around; true proportions."""
    morphology = _morphology(morphology)
    figure = go.Figure()
    for outline in morphology.soma:
        closed = _closed(outline)
        figure.add_trace(
            go.Scatter3d(
                x=closed[:, 0],
                y=closed[:, 1],
                z=closed[:, 2],
                mode="lines",
                line={"color": _NEURITE_COLOURS["soma"], "width": 6},
                name="soma",
                legendgroup="soma",
                showlegend=outline is morphology.soma[0],
            )
        )
    for kind, lines in morphology.neurites.items():
        x, y, z = _joined(lines)
        figure.add_trace(
            go.Scatter3d(
                x=x,
                y=y,
                z=z,
                mode="lines",
                line={"color": _NEURITE_COLOURS.get(kind, _OTHER_COLOUR), "width": 3},
                name=kind,
                hoverinfo="name",
            )
        )
    figure.update_layout(
        title="Morphology (3D)",
        template=_TEMPLATE,
        height=650,
        scene={
            **_scene_proportions(morphology),
            "xaxis": {"title": "x (µm)"},
            "yaxis": {"title": "y (µm)"},
            "zaxis": {"title": "z (µm)"},
        },
    )
    return figure


def _scene_proportions(morphology: Morphology) -> dict[str, Any]:
    """True proportions ("data"), except for a flat reconstruction (all z 0, as in many SWC
    tracings): its 3D scene would collapse to nothing along the flat axis and show a few
    stray grid lines, so each axis gets at least a tenth of the longest one's length."""
    points = [outline[:, :3] for outline in morphology.soma] + [
        line[:, :3] for lines in morphology.neurites.values() for line in lines
    ]
    if not points:
        return {"aspectmode": "data"}
    stacked = np.concatenate(points)
    extents = stacked.max(axis=0) - stacked.min(axis=0)
    longest = float(extents.max())
    if longest <= 0 or float(extents.min()) >= 0.1 * longest:
        return {"aspectmode": "data"}
    ratio = np.maximum(extents / longest, 0.1)
    return {
        "aspectmode": "manual",
        "aspectratio": {"x": float(ratio[0]), "y": float(ratio[1]), "z": float(ratio[2])},
    }


def _morphology(morphology: Morphology | str | Path) -> Morphology:
    return morphology if isinstance(morphology, Morphology) else read_morphology(morphology)


def _closed(outline):
    """A soma outline closed on itself (an SWC soma's few points are joined the same way)."""
    if len(outline) > 2 and (outline[0] != outline[-1]).any():
        return outline[list(range(len(outline))) + [0]]
    return outline


def _joined(lines) -> tuple[list, list, list]:
    """The polylines as one series each of x, y, z, with gaps (None) between them."""
    x: list = []
    y: list = []
    z: list = []
    for line in lines:
        x.extend(line[:, 0].tolist() + [None])
        y.extend(line[:, 1].tolist() + [None])
        z.extend(line[:, 2].tolist() + [None])
    return x, y, z


# --- evolution -------------------------------------------------------------------------


def evolution_figure(analysis: dict[str, Any]) -> go.Figure:
    """Population average, minimum and ±std band of the summed scores, per generation."""
    rows = [row for row in analysis["logbook"] if row.get("gen") is not None]
    generations = [row["gen"] for row in rows]
    average = [row.get("avg") for row in rows]
    deviation = [row.get("std") or 0 for row in rows]
    upper = [None if a is None else a + s for a, s in zip(average, deviation, strict=True)]
    lower = [None if a is None else a - s for a, s in zip(average, deviation, strict=True)]
    figure = go.Figure(
        [
            go.Scatter(
                x=generations,
                y=upper,
                mode="lines",
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                name="average + std",
            ),
            go.Scatter(
                x=generations,
                y=lower,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(150, 150, 150, 0.35)",
                name="population standard deviation",
                hoverinfo="skip",
            ),
            go.Scatter(
                x=generations,
                y=average,
                mode="lines+markers",
                line={"color": "black", "width": 2},
                name="population average",
            ),
            go.Scatter(
                x=generations,
                y=[row.get("min") for row in rows],
                mode="lines+markers",
                line={"color": "red", "width": 2},
                name="population minimum",
            ),
        ]
    )
    figure.update_layout(
        title="Evolution of the fitness",
        template=_TEMPLATE,
        height=450,
        xaxis={"title": "Generation", "dtick": 1 if len(generations) <= 20 else None},
        yaxis={"title": "Sum of objectives (# std)", "rangemode": "tozero"},
        hovermode="x unified",
        legend={"traceorder": "reversed"},
    )
    continued = analysis.get("continued_from")
    if continued:
        # The logbook joins the earlier run's generations with this run's: say where.
        figure.add_vline(
            x=continued["generation"],
            line={"dash": "dash", "color": "gray"},
            annotation_text=f"continued after generation {continued['generation']}",
            annotation_position="top left",
        )
    return figure


# --- objectives ------------------------------------------------------------------------


def objectives_figure(analysis: dict[str, Any], individual: int = 0) -> go.Figure:
    """One horizontal bar per objective score, worst at the top."""
    chosen = analysis["individuals"][individual]
    objectives = sorted(chosen["objectives"], key=_badness, reverse=True)
    scores = [objective["score"] for objective in objectives]
    fitness = chosen["fitness"]
    figure = go.Figure(
        go.Bar(
            x=[0 if score is None else score for score in scores],
            y=[objective["name"] for objective in objectives],
            orientation="h",
            marker={"color": [_score_colour(score) for score in scores]},
            text=["no score" if score is None else f"{score:.2f}" for score in scores],
            textposition="outside",
            customdata=[_objective_hover(objective) for objective in objectives],
            hovertemplate="<b>%{y}</b><br>%{customdata}<extra></extra>",
            name="score",
        )
    )
    figure.update_layout(
        title=(
            f"Objectives of the {chosen['label']} individual: sum "
            f"{_shown(fitness['recomputed'])} (stored {_shown(fitness['stored'])})"
        ),
        template=_TEMPLATE,
        height=140 + 24 * len(objectives),
        xaxis={"title": "Score (# experimental std)", "rangemode": "tozero"},
        yaxis={"autorange": "reversed", "automargin": True},
        margin={"l": 20},
    )
    return figure


def _badness(objective: dict[str, Any]) -> float:
    score = objective["score"]
    return math.inf if score is None else score


def _score_colour(score: float | None) -> str:
    if score is None or score >= 5:
        return "#c0392b"
    if score >= 2:
        return "#e67e22"
    return "#779ECB"


def _objective_hover(objective: dict[str, Any]) -> str:
    lines = [f"score {_shown(objective['score'])}"]
    if objective.get("stored_score") is not None:
        lines.append(f"stored score {_shown(objective['stored_score'])}")
    lines.append(f"model value {_shown_value(objective.get('value'))}")
    if isinstance(objective.get("value"), list) and len(objective["value"]) > 1:
        lines.append("scored as the mean of |value_i − mean| / std over the values")
    if objective.get("experimental_mean") is not None:
        mean, std = mean_and_std(objective["experimental_mean"], objective.get("experimental_std"))
        unit = feature_unit(objective.get("feature") or "")
        lines.append(f"experiment {mean} ± {std}{' ' + unit if unit else ''}")
    return "<br>".join(lines)


# --- traces ----------------------------------------------------------------------------


def traces_figure(analysis: dict[str, Any], individual: int = 0) -> go.Figure:
    """Voltage against time for every recording: one panel per protocol, with the injected
    current on the panel's second axis."""
    chosen = analysis["individuals"][individual]
    protocols = {protocol["name"]: protocol for protocol in analysis["protocols"]}
    order = list(protocols) + sorted(
        {t["protocol"] or t["name"] for t in chosen["traces"]} - set(protocols)
    )
    panels = [
        (name, [t for t in chosen["traces"] if (t["protocol"] or t["name"]) == name])
        for name in order
    ]
    panels = [(name, rows) for name, rows in panels if rows]
    figure = make_subplots(
        rows=max(1, len(panels)),
        cols=1,
        subplot_titles=[name for name, _ in panels] or [""],
        specs=[[{"secondary_y": True}] for _ in range(max(1, len(panels)))],
        vertical_spacing=min(0.08, 0.3 / max(1, len(panels))),
    )
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for row, (name, rows) in enumerate(panels, start=1):
        for index, trace in enumerate(rows):
            if trace["failed"] or "time" not in trace:
                continue
            figure.add_trace(
                go.Scatter(
                    x=trace["time"],
                    y=trace["voltage"],
                    mode="lines",
                    line={"color": palette[index % len(palette)], "width": 1.2},
                    name=trace["name"],
                    meta={"kind": "voltage", "recording": trace["name"]},
                ),
                row=row,
                col=1,
                secondary_y=False,
            )
        add_stimulus(figure, protocols.get(name), name, row)
    figure.update_xaxes(title_text="Time (ms)", row=max(1, len(panels)), col=1)
    height = 120 + 240 * max(1, len(panels))
    margin = {"t": 80, "b": 130}
    figure.update_layout(
        title=f"Responses of the {chosen['label']} individual",
        template=_TEMPLATE,
        height=height,
        margin=margin,
        # below the last panel's axis title, whatever the number of panels
        legend={
            "orientation": "h",
            "yanchor": "top",
            "y": -60 / (height - margin["t"] - margin["b"]),
        },
    )
    return figure


def add_stimulus(figure: go.Figure, protocol: dict[str, Any] | None, name: str, row: int) -> None:
    """A traces panel's injected current (second axis, dotted grey) and its axes' titles."""
    current = stimulus_current(protocol) if protocol is not None else None
    if current is not None:
        figure.add_trace(
            go.Scatter(
                x=current[0],
                y=current[1],
                mode="lines",
                line={"color": "rgba(120, 120, 120, 0.8)", "width": 1, "dash": "dot"},
                name=f"{name} stimulus",
                meta={"kind": "stimulus", "protocol": name},
                showlegend=False,
            ),
            row=row,
            col=1,
            secondary_y=True,
        )
    figure.update_yaxes(title_text="V (mV)", row=row, col=1, secondary_y=False)
    figure.update_yaxes(title_text="I (nA)", row=row, col=1, secondary_y=True, showgrid=False)


def stimulus_current(protocol: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    """The total injected current of a protocol over time, from its stimuli's envelopes."""
    envelopes = [
        [(float(t), float(a)) for t, a in stimulus["envelope"] if t is not None and a is not None]
        for stimulus in protocol.get("stimuli", [])
        if stimulus.get("envelope")
    ]
    envelopes = [envelope for envelope in envelopes if envelope]
    if not envelopes:
        return None
    times: list[float] = []
    currents: list[float] = []
    for moment in sorted({t for envelope in envelopes for t, _ in envelope}):
        before = sum(_envelope_value(envelope, moment, last=False) for envelope in envelopes)
        after = sum(_envelope_value(envelope, moment, last=True) for envelope in envelopes)
        times.append(moment)
        currents.append(before)
        if after != before:  # a step: both sides of it at the same time
            times.append(moment)
            currents.append(after)
    return times, currents


def _envelope_value(envelope: list[tuple[float, float]], moment: float, *, last: bool) -> float:
    """The envelope's current at ``moment``; at a step, the value before it (or after it
    with ``last``). Zero outside the envelope."""
    if moment < envelope[0][0] or moment > envelope[-1][0]:
        return 0.0
    same = [amplitude for t, amplitude in envelope if t == moment]
    if same:
        return same[-1] if last else same[0]
    for (t0, a0), (t1, a1) in zip(envelope, envelope[1:], strict=False):
        if t0 < moment < t1:
            return a0 + (a1 - a0) * (moment - t0) / (t1 - t0)
    return 0.0


# --- parameters ------------------------------------------------------------------------


def parameters_figure(analysis: dict[str, Any], individual: int = 0) -> go.Figure:
    """Each optimised parameter's value placed between its bounds (0: lower, 1: upper)."""
    chosen = analysis["individuals"][individual]
    rows = [row for row in chosen["parameters"] if row.get("position") is not None]
    names = [row["name"] for row in rows]
    figure = go.Figure(
        [
            go.Bar(
                x=[1] * len(rows),
                y=names,
                orientation="h",
                marker={"color": "rgba(200, 200, 200, 0.5)"},
                hoverinfo="skip",
                name="bounds",
                showlegend=False,
            ),
            go.Scatter(
                x=[row["position"] for row in rows],
                y=names,
                mode="markers",
                marker={"size": 11, "color": "#1f77b4"},
                customdata=[
                    [_shown(row["value"]), _shown(row["lower"]), _shown(row["upper"])]
                    for row in rows
                ],
                hovertemplate=(
                    "<b>%{y}</b><br>value %{customdata[0]}<br>"
                    "bounds [%{customdata[1]}, %{customdata[2]}]<extra></extra>"
                ),
                name="value",
            ),
        ]
    )
    figure.update_layout(
        title=f"Parameters of the {chosen['label']} individual within their bounds",
        template=_TEMPLATE,
        height=140 + 28 * len(rows),
        xaxis={
            "range": [-0.05, 1.05],
            "tickvals": [0, 0.5, 1],
            "ticktext": ["lower bound", "middle", "upper bound"],
        },
        yaxis={"autorange": "reversed", "automargin": True},
        bargap=0.5,
    )
    return figure


# --- features --------------------------------------------------------------------------


def features_figure(analysis: dict[str, Any], individual: int = 0) -> go.Figure:
    """Each feature's model value against the experimental mean ± std.

    Features have different units, so each is placed by its distance from the experimental
    mean in experimental standard deviations; the grey band is the mean ± one std.
    """
    chosen = analysis["individuals"][individual]
    rows = [
        row
        for row in chosen["objectives"]
        if row.get("experimental_mean") is not None and row.get("experimental_std")
    ]
    names = [row["name"] for row in rows]
    placed = [_deviation(row) for row in rows]
    valued = [(row, x) for row, x in zip(rows, placed, strict=True) if x is not None]
    missing = [row for row, x in zip(rows, placed, strict=True) if x is None]
    figure = go.Figure(
        [
            go.Scatter(
                x=[x for _, x in valued],
                y=[row["name"] for row, _ in valued],
                mode="markers",
                marker={"size": 10, "color": [_score_colour(row["score"]) for row, _ in valued]},
                customdata=[_objective_hover(row) for row, _ in valued],
                hovertemplate="<b>%{y}</b><br>%{customdata}<extra></extra>",
                name="model",
            ),
            go.Scatter(
                x=[0] * len(missing),
                y=[row["name"] for row in missing],
                mode="markers",
                marker={"size": 10, "symbol": "x", "color": "#c0392b"},
                hovertemplate="<b>%{y}</b><br>the model gave no value<extra></extra>",
                name="no value",
                visible=True if missing else "legendonly",
            ),
        ]
    )
    figure.add_vrect(x0=-1, x1=1, fillcolor="rgba(150, 150, 150, 0.3)", line_width=0, layer="below")
    figure.add_vline(x=0, line={"color": "black", "width": 1})
    figure.update_layout(
        title="Features: model value against the experimental mean ± std",
        template=_TEMPLATE,
        height=140 + 24 * len(names),
        xaxis={
            "title": "(model value − experimental mean) / experimental std  ·  "
            "score = |value − mean| / std (per-spike values: their mean deviation)"
        },
        yaxis={
            "autorange": "reversed",
            "automargin": True,
            "categoryorder": "array",
            "categoryarray": names,
        },
    )
    return figure


def _deviation(row: dict[str, Any]) -> float | None:
    """Where a feature is drawn: (value − mean) / std, so |x| is the objective's score.

    For a feature with one value per spike BluePyOpt scores the mean of the per-spike
    deviations, mean(|value_i − mean|) / std; the marker then sits at that score, on the
    side of the mean where the values lie on average, so this figure and the objective
    bars agree."""
    value = row.get("value")
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, int | float)]
        if not numbers:
            return None
        mean = row["experimental_mean"]
        spread = sum(abs(v - mean) for v in numbers) / len(numbers) / row["experimental_std"]
        return math.copysign(spread, sum(numbers) / len(numbers) - mean)
    if not isinstance(value, int | float):
        return None
    return (value - row["experimental_mean"]) / row["experimental_std"]


# --- all figures, and their files ------------------------------------------------------


def all_figures(
    analysis: dict[str, Any], morphology_path: str | Path | None, *, individual: int = 0
) -> dict[str, go.Figure]:
    """Every figure of the analysis, by name (see ``FIGURE_NAMES``).

    A morphology that cannot be read gives figures that say why, not an exception.
    """
    figures: dict[str, go.Figure] = {}
    if morphology_path is not None:
        try:
            morphology = read_morphology(morphology_path)
        except (MorphologyError, OSError) as error:
            figures["morphology"] = _message_figure("Morphology", str(error))
        else:
            figures["morphology"] = morphology_figure(morphology)
            figures["morphology_3d"] = morphology_3d_figure(morphology)
    figures["evolution"] = evolution_figure(analysis)
    figures["objectives"] = objectives_figure(analysis, individual)
    figures["traces"] = traces_figure(analysis, individual)
    figures["parameters"] = parameters_figure(analysis, individual)
    figures["features"] = features_figure(analysis, individual)
    return figures


def write_figure_files(
    figures: dict[str, go.Figure],
    folder: str | Path,
    *,
    html: bool = True,
    png: bool = True,
    png_timeout: float = PNG_TIMEOUT_SECONDS,
    on_wait: Callable[[], None] | None = None,
) -> dict[str, dict[str, Path]]:
    """Write ``<name>.html`` (self-contained: plotly.js inline) and ``<name>.png`` per figure.

    PNGs are rendered by kaleido, which drives a Chrome or Chromium; that runs in a process
    of its own, ended after ``png_timeout`` seconds. Raises ``FigureExportError`` when the
    PNGs cannot be made (the HTML files are written first). ``on_wait`` is called every
    ``WAIT_CALL_SECONDS`` while the PNGs are made (a background save beats its heartbeat
    there); what it raises ends the export, its process and Chromium included.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, Path]] = {name: {} for name in figures}
    if html:
        for name, figure in figures.items():
            path = folder / f"{name}.html"
            figure.write_html(path, include_plotlyjs=True, full_html=True)
            written[name]["html"] = path
    if png and figures:
        try:
            pngs = _write_pngs(figures, folder, timeout=png_timeout, on_wait=on_wait)
        except FigureExportError as failure:
            # Chromium now and then fails to start on a loaded machine and says nothing,
            # or drops one figure; a second start usually works. Only the figures missing
            # are drawn again; a second failure is reported.
            if isinstance(failure, FigureExportTimeout):  # no second wait
                raise
            pngs = {name: folder / f"{name}.png" for name in figures if _png_written(folder, name)}
            missing = {name: figure for name, figure in figures.items() if name not in pngs}
            pngs.update(_write_pngs(missing, folder, timeout=png_timeout, on_wait=on_wait))
        for name, path in pngs.items():
            written[name]["png"] = path
    return written


# kaleido returns the errors of the figures it could not draw instead of raising them, and
# plotly drops them: they are printed, for the error that names the missing figures.
_PNG_SCRIPT = """
import sys
import kaleido
import plotly.io as pio
_write = kaleido.write_fig_from_object_sync
def _reporting(*args, **kwargs):
    errors = _write(*args, **kwargs)
    for error in errors or ():
        print(f"kaleido: {error!r}", flush=True)
    return errors
kaleido.write_fig_from_object_sync = _reporting
source, target, width, *names = sys.argv[1:]
figures = [pio.read_json(f"{source}/{name}.json") for name in names]
pio.write_images(
    figures,
    [f"{target}/{name}.png" for name in names],
    format="png",
    width=int(width),
    height=[figure.layout.height or 600 for figure in figures],
)
"""


# How often ``on_wait`` is called while kaleido works.
WAIT_CALL_SECONDS = 2.0


def _write_pngs(
    figures: dict[str, go.Figure],
    folder: Path,
    *,
    timeout: float,
    on_wait: Callable[[], None] | None = None,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="figures-") as staging:
        for name, figure in figures.items():
            figure.write_json(Path(staging) / f"{name}.json")
        env = dict(os.environ)
        browser = _browser()
        if browser and not env.get("BROWSER_PATH"):
            env["BROWSER_PATH"] = browser
        command = [sys.executable, "-c", _PNG_SCRIPT, staging, str(folder), str(PNG_WIDTH)]
        process = subprocess.Popen(
            command + list(figures),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Chrome's processes join this group, ended together
            preexec_fn=die_with_parent,  # and kaleido ends with a worker that is SIGKILLed
        )
        try:
            output = _communicate(process, timeout=timeout, on_wait=on_wait)
        except subprocess.TimeoutExpired:
            kill_group(process)
            raise FigureExportTimeout(
                f"Writing the PNG figures took more than {timeout:g} s and was stopped. "
                "kaleido needs a Chrome or Chromium it can start (set BROWSER_PATH)."
            ) from None
        finally:
            kill_group(process)
    missing = [name for name in figures if not _png_written(folder, name)]
    if process.returncode != 0 or missing:
        text = output.decode("utf-8", "replace")[-3000:]
        code = process.returncode
        ended = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise FigureExportError(
            "The PNG figures could not be written (kaleido needs a Chrome or Chromium; "
            f"set BROWSER_PATH to one). kaleido {ended}"
            + (f", missing {', '.join(missing)}" if missing else "")
            + f". It said:\n{text}"
        )
    return {name: folder / f"{name}.png" for name in figures}


def _png_written(folder: Path, name: str) -> bool:
    # kaleido claims a figure's file (empty) before it draws it
    path = folder / f"{name}.png"
    return path.is_file() and path.stat().st_size > 0


def _communicate(
    process: subprocess.Popen, *, timeout: float, on_wait: Callable[[], None] | None
) -> bytes:
    """The process' output once it ends; TimeoutExpired after ``timeout`` seconds.

    Waited for in steps when ``on_wait`` is given (communicate() loses no output when it is
    called again after a TimeoutExpired)."""
    if on_wait is None:
        return process.communicate(timeout=timeout)[0]
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return process.communicate(timeout=max(0.01, min(WAIT_CALL_SECONDS, left)))[0]
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        on_wait()


def _browser() -> str | None:
    for candidate in _BROWSERS:
        found = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if found and os.access(found, os.X_OK):
            return found
    return None


def _message_figure(title: str, message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(
        title=title, template=_TEMPLATE, xaxis={"visible": False}, yaxis={"visible": False}
    )
    return figure


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return str(value)


def _shown_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value[:5]) + (" …" if len(value) > 5 else "")
    return "no value" if value is None else _shown(value)
