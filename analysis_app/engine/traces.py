"""Voltage traces: full resolution in CSV files, a light copy for analysis.json and figures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# Per recording in analysis.json: enough to draw every spike of a few seconds of trace.
JSON_POINTS = 2_000
CSV_HEADER = "time_ms,voltage_mV"
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


def downsample(
    time: np.ndarray, values: np.ndarray, max_points: int = JSON_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of the trace, keeping each bucket's minimum and maximum.

    Keeping the extremes (rather than every n-th point) keeps the spikes' peaks and troughs,
    which is what a reader of a voltage trace looks at.
    """
    count = len(time)
    if count <= max_points:
        return time, values
    buckets = max(1, (max_points - 2) // 2)
    edges = np.linspace(1, count - 1, buckets + 1).astype(int)
    kept = [0]
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        if end <= start:
            continue
        segment = values[start:end]
        low = start + int(np.argmin(segment))
        high = start + int(np.argmax(segment))
        kept.extend(sorted({low, high}))
    kept.append(count - 1)
    indices = np.asarray(kept)
    return time[indices], values[indices]


def write_trace_csv(path: Path, time: np.ndarray, voltage: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(
        path,
        np.column_stack((time, voltage)),
        delimiter=",",
        header=CSV_HEADER,
        comments="",
        fmt="%.10g",
    )


def read_trace_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return data[:, 0], data[:, 1]


def file_name(recording: str) -> str:
    """A file name for a recording such as ``step_-0.1.soma.v``."""
    return _UNSAFE_FILE_CHARACTERS.sub("_", recording) + ".csv"
