"""Two or more analyses side by side: their best individuals' fitness, objectives, traces,
parameters and features, from their analysis.json documents (no simulation).

``comparison`` gives the rows a page or a saved comparison.json shows, and which analysis
is better on how many objectives; ``comparison_figures`` the Plotly figures, drawn in the
style of ``figures`` (each analysis has one colour in every figure):

- objectives: each objective's scores, bars side by side, worst first
- traces: the voltage traces overlaid, one panel per protocol
- parameters: each parameter within each analysis' own bounds (both bound sets drawn)
- features: each feature's model values against the experimental mean ± std

Objectives present in only some of the analyses are kept, and said to be so; analyses
that share no objective at all (different models' analyses) are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import (
    _TEMPLATE,
    _badness,
    _deviation,
    _objective_hover,
    _shown,
    add_stimulus,
)

COMPARE_FIGURE_NAMES = ("objectives", "traces", "parameters", "features")
# One colour per analysis, in every figure (the first two are the analysis figures' blue
# and a red that stays apart from it for colour-blind readers).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_DASHES = ("solid", "dot", "dash", "dashdot", "longdash")


class CompareRefused(ValueError):
    """The analyses cannot be compared; the message says why, for the user."""


@dataclass(frozen=True)
class Compared:
    """One analysis in a comparison: the name it is shown by and its analysis.json."""

    name: str
    document: dict[str, Any]

    @property
    def best(self) -> dict[str, Any]:
        return self.document["individuals"][0]


def comparison(entries: list[Compared]) -> dict[str, Any]:
    """What the comparison shows: each analysis' total fitness, each objective's scores
    (worst first), how many objectives each is better on, and the objectives only some have.

    Lower scores are better; an objective the model gave no score for counts as the worst.
    Raises CompareRefused for fewer than two analyses or analyses with no common objective.
    """
    if len(entries) < 2:
        raise CompareRefused("Choose at least two analyses to compare.")
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise CompareRefused("The same analysis was chosen twice: choose different analyses.")
    by_entry = [
        {objective["name"]: objective for objective in entry.best["objectives"]}
        for entry in entries
    ]
    order: list[str] = []
    for objectives in by_entry:
        order.extend(name for name in objectives if name not in order)
    shared = [name for name in order if all(name in objectives for objectives in by_entry)]
    if not shared:
        raise CompareRefused(
            "These analyses share no objective: they are analyses of models fitted to "
            "different features, and their scores cannot be compared. Compare analyses of "
            "the same model (or of models with the same objectives)."
        )

    rows = []
    wins = [0] * len(entries)
    ties = 0
    for name in order:
        present = [name in objectives for objectives in by_entry]
        scores = [
            objectives[name]["score"] if name in objectives else None for objectives in by_entry
        ]
        best = None
        if all(present):
            best = _better_of([_badness(objectives[name]) for objectives in by_entry])
            if best is None:
                ties += 1
            else:
                wins[best] += 1
        rows.append(
            {
                "name": name,
                "present": present,
                "scores": scores,
                "shown": [
                    "absent" if not there else ("no score" if score is None else f"{score:.3f}")
                    for there, score in zip(present, scores, strict=True)
                ],
                "best": best,
            }
        )
    # Worst first: by the highest score any analysis has on it (no score counts highest).
    rows.sort(
        key=lambda row: max(
            _badness(objectives[row["name"]])
            for objectives in by_entry
            if row["name"] in objectives
        ),
        reverse=True,
    )

    fitness = [
        {
            "name": entry.name,
            "recomputed": entry.best["fitness"].get("recomputed"),
            "stored": entry.best["fitness"].get("stored"),
            "objectives": len(entry.best["objectives"]),
            "wins": won,
        }
        for entry, won in zip(entries, wins, strict=True)
    ]
    totals = [row["recomputed"] for row in fitness]
    lowest = (
        None
        if any(total is None for total in totals)
        else _better_of([float(total) for total in totals])
    )
    only_some = [
        {
            "name": row["name"],
            "in": [n for n, there in zip(names, row["present"], strict=True) if there],
        }
        for row in rows
        if not all(row["present"])
    ]
    return {
        "names": names,
        "fitness": fitness,
        "lowest_fitness": None if lowest is None else names[lowest],
        "objectives": rows,
        "shared": len(shared),
        "ties": ties,
        "only_some": only_some,
        "summary": _summary(names, wins, ties, len(shared)),
        "fitness_summary": _fitness_summary(names, totals, lowest),
    }


def _better_of(values: list[float]) -> int | None:
    """The index of the single lowest value; None when the lowest is shared (a tie)."""
    lowest = min(values)
    at = [
        index
        for index, value in enumerate(values)
        if value == lowest or (math.isfinite(value) and math.isclose(value, lowest, rel_tol=1e-9))
    ]
    return at[0] if len(at) == 1 else None


def _summary(names: list[str], wins: list[int], ties: int, shared: int) -> str:
    """Which analysis is better on how many of the shared objectives, in words."""
    equal = f"; {ties} {'is' if ties == 1 else 'are'} equal" if ties else ""
    if len(names) == 2:
        return (
            f"{names[0]} is better on {wins[0]} of the {shared} objectives, "
            f"{names[1]} on {wins[1]}{equal}."
        )
    ranked = sorted(zip(names, wins, strict=True), key=lambda pair: -pair[1])
    parts = ", ".join(f"{name} on {won}" for name, won in ranked)
    return f"Best on each of the {shared} objectives: {parts}{equal}."


def _fitness_summary(names: list[str], totals: list[Any], lowest: int | None) -> str:
    if any(total is None for total in totals):
        return "A total fitness is missing: the totals cannot be compared."
    if lowest is None:
        return "The lowest total fitness is shared."
    others = ", ".join(
        f"{_shown(total)} ({name})"
        for index, (name, total) in enumerate(zip(names, totals, strict=True))
        if index != lowest
    )
    return (
        f"{names[lowest]} has the lowest total fitness, {_shown(totals[lowest])} "
        f"(against {others}; lower is better)."
    )


# --- figures ---------------------------------------------------------------------------


def comparison_figures(entries: list[Compared], compared: dict[str, Any]) -> dict[str, go.Figure]:
    """Every figure of the comparison, by name (see ``COMPARE_FIGURE_NAMES``)."""
    return {
        "objectives": objectives_figure(compared),
        "traces": traces_figure(entries),
        "parameters": parameters_figure(entries),
        "features": features_figure(entries),
    }


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def objectives_figure(compared: dict[str, Any]) -> go.Figure:
    """Each objective's scores, one bar per analysis side by side, worst objective on top."""
    rows = compared["objectives"]
    labels = [row["name"] + ("" if all(row["present"]) else " (not in all)") for row in rows]
    figure = go.Figure()
    for index, entry in enumerate(compared["fitness"]):
        figure.add_trace(
            go.Bar(
                x=[row["scores"][index] or 0 for row in rows],
                y=labels,
                orientation="h",
                marker={"color": _colour(index)},
                text=[row["shown"][index] for row in rows],
                textposition="outside",
                hovertemplate=f"<b>%{{y}}</b><br>{entry['name']}: %{{text}}<extra></extra>",
                name=f"{entry['name']} (sum {_shown(entry['recomputed'])})",
            )
        )
    figure.update_layout(
        title="Objectives, worst first (lower is better)",
        template=_TEMPLATE,
        barmode="group",
        height=160 + 18 * len(rows) * len(compared["fitness"]),
        xaxis={"title": "Score (# experimental std; lower is better)", "rangemode": "tozero"},
        yaxis={"autorange": "reversed", "automargin": True},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        margin={"l": 20, "t": 110},
    )
    return figure


def traces_figure(entries: list[Compared]) -> go.Figure:
    """The voltage traces of every analysis overlaid: one panel per protocol, one colour per
    analysis, one dash per recording of the protocol; the stimulus on the second axis."""
    protocols: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for protocol in entry.document["protocols"]:
            protocols.setdefault(protocol["name"], protocol)
    order = list(protocols)
    for entry in entries:
        for trace in entry.best["traces"]:
            panel = trace["protocol"] or trace["name"]
            if panel not in order:
                order.append(panel)
    panels = [
        name
        for name in order
        if any((t["protocol"] or t["name"]) == name for e in entries for t in e.best["traces"])
    ]
    count = max(1, len(panels))
    figure = make_subplots(
        rows=count,
        cols=1,
        subplot_titles=panels or [""],
        specs=[[{"secondary_y": True}] for _ in range(count)],
        vertical_spacing=min(0.08, 0.3 / count),
    )
    for row, name in enumerate(panels, start=1):
        for index, entry in enumerate(entries):
            recordings = [t for t in entry.best["traces"] if (t["protocol"] or t["name"]) == name]
            for number, trace in enumerate(recordings):
                if trace["failed"] or "time" not in trace:
                    continue
                figure.add_trace(
                    go.Scatter(
                        x=trace["time"],
                        y=trace["voltage"],
                        mode="lines",
                        line={
                            "color": _colour(index),
                            "width": 1.2,
                            "dash": _DASHES[number % len(_DASHES)],
                        },
                        name=entry.name,
                        legendgroup=entry.name,
                        showlegend=row == 1 and number == 0,
                        hovertemplate=f"{entry.name}<br>{trace['name']}<br>%{{x}} ms, %{{y}} mV"
                        "<extra></extra>",
                        meta={"kind": "voltage", "recording": trace["name"], "analysis": index},
                    ),
                    row=row,
                    col=1,
                    secondary_y=False,
                )
        add_stimulus(figure, protocols.get(name), name, row)
    figure.update_xaxes(title_text="Time (ms)", row=count, col=1)
    figure.update_layout(
        title="Responses overlaid (one colour per analysis, one dash per recording)",
        template=_TEMPLATE,
        height=120 + 240 * count,
        margin={"t": 110},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return figure


def parameters_figure(entries: list[Compared]) -> go.Figure:
    """Each parameter of each analysis within its own bounds: the whiskers are that
    analysis' bounds, the marker its value. Analyses may have been run with different
    bounds, so each row is scaled to the span of all of them (0: the lowest lower bound,
    1: the highest upper bound); the hover gives the values themselves."""
    rows_by_entry = [
        {row["name"]: row for row in entry.best["parameters"] if _bounded(row)} for entry in entries
    ]
    names: list[str] = []
    for rows in rows_by_entry:
        names.extend(name for name in rows if name not in names)
    spans = {}
    for name in names:
        present = [rows[name] for rows in rows_by_entry if name in rows]
        spans[name] = (min(r["lower"] for r in present), max(r["upper"] for r in present))
    figure = go.Figure()
    for index, (entry, rows) in enumerate(zip(entries, rows_by_entry, strict=True)):
        shown = [name for name in names if name in rows]
        placed = [_placed(rows[name], spans[name]) for name in shown]
        figure.add_trace(
            go.Scatter(
                x=[value for value, _, _ in placed],
                y=shown,
                mode="markers",
                marker={"size": 10, "color": _colour(index)},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [upper - value for value, _, upper in placed],
                    "arrayminus": [value - lower for value, lower, _ in placed],
                    "color": _colour(index),
                    "thickness": 2,
                    "width": 6,
                },
                offsetgroup=str(index),
                orientation="h",  # side by side within the row (scattermode "group")
                customdata=[
                    [_shown(rows[n]["value"]), _shown(rows[n]["lower"]), _shown(rows[n]["upper"])]
                    for n in shown
                ],
                hovertemplate=(
                    f"<b>%{{y}}</b><br>{entry.name}<br>value %{{customdata[0]}}<br>"
                    "bounds [%{customdata[1]}, %{customdata[2]}]<extra></extra>"
                ),
                name=entry.name,
            )
        )
    figure.update_layout(
        title="Parameters within each one's bounds (whiskers)",
        template=_TEMPLATE,
        scattermode="group",
        height=160 + 22 * len(names) * len(entries),
        xaxis={
            "range": [-0.05, 1.05],
            "tickvals": [0, 0.5, 1],
            "ticktext": ["lowest lower bound", "middle", "highest upper bound"],
        },
        yaxis={"autorange": "reversed", "automargin": True},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        margin={"t": 110},
    )
    return figure


def _bounded(row: dict[str, Any]) -> bool:
    return all(isinstance(row.get(key), int | float) for key in ("value", "lower", "upper"))


def _placed(row: dict[str, Any], span: tuple[float, float]) -> tuple[float, float, float]:
    """Value, lower and upper bound scaled to the span (0 to 1)."""
    low, high = span
    width = high - low
    if width <= 0:
        return 0.5, 0.5, 0.5
    return tuple((row[key] - low) / width for key in ("value", "lower", "upper"))  # type: ignore[return-value]


def features_figure(entries: list[Compared]) -> go.Figure:
    """Each feature's model value of every analysis against the experimental mean ± std,
    placed as in the analysis' features figure (distance from the mean in stds)."""
    figure = go.Figure()
    names: list[str] = []
    for index, entry in enumerate(entries):
        rows = [
            row
            for row in entry.best["objectives"]
            if row.get("experimental_mean") is not None and row.get("experimental_std")
        ]
        names.extend(row["name"] for row in rows if row["name"] not in names)
        placed = [(row, _deviation(row)) for row in rows]
        valued = [(row, x) for row, x in placed if x is not None]
        missing = [row for row, x in placed if x is None]
        figure.add_trace(
            go.Scatter(
                x=[x for _, x in valued],
                y=[row["name"] for row, _ in valued],
                mode="markers",
                marker={"size": 10, "color": _colour(index)},
                offsetgroup=str(index),
                orientation="h",  # side by side within the row (scattermode "group")
                customdata=[_objective_hover(row) for row, _ in valued],
                hovertemplate=f"<b>%{{y}}</b><br>{entry.name}<br>%{{customdata}}<extra></extra>",
                name=entry.name,
                legendgroup=entry.name,
            )
        )
        if missing:
            figure.add_trace(
                go.Scatter(
                    x=[0] * len(missing),
                    y=[row["name"] for row in missing],
                    mode="markers",
                    marker={"size": 10, "symbol": "x", "color": _colour(index)},
                    offsetgroup=str(index),
                    orientation="h",
                    hovertemplate=f"<b>%{{y}}</b><br>{entry.name}: the model gave no value"
                    "<extra></extra>",
                    name=f"{entry.name}: no value",
                    legendgroup=entry.name,
                )
            )
    figure.add_vrect(x0=-1, x1=1, fillcolor="rgba(150, 150, 150, 0.3)", line_width=0, layer="below")
    figure.add_vline(x=0, line={"color": "black", "width": 1})
    figure.update_layout(
        title="Features against the experimental mean ± std",
        template=_TEMPLATE,
        scattermode="group",
        height=160 + 20 * len(names) * len(entries),
        xaxis={"title": "(model value − experimental mean) / experimental std"},
        yaxis={
            "autorange": "reversed",
            "automargin": True,
            "categoryorder": "array",
            "categoryarray": names,
        },
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        margin={"t": 110},
    )
    return figure
