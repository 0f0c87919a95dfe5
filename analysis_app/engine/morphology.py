"""Morphology files (SWC and Neurolucida .asc) read as line segments for drawing.

Enough for a picture, not a simulation: the soma as an outline (a Neurolucida contour, or
the SWC soma points), and every neurite as polylines (one per unbranched stretch, each
starting at the point it branches from). Neurolucida markers, spines, text, and contours
other than the cell body (layer boundaries such as "SR/SP") are left out. The picture is
of the reconstruction in the file: the model replaces the axon by a stub when it builds
the cell.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# SWC structure identifiers.
_SWC_KINDS = {1: "soma", 2: "axon", 3: "basal", 4: "apical"}
# Neurolucida tree types.
_ASC_KINDS = {"axon": "axon", "dendrite": "basal", "apical": "apical"}
_MAX_BYTES = 100 * 1024 * 1024
_ASC_TOKEN = re.compile(r'"[^"]*"|;[^\n]*|[()|<>,]|[^\s()|<>,;"]+')


class MorphologyError(ValueError):
    """The file cannot be read as a morphology."""


@dataclass
class Morphology:
    """A morphology as polylines. Points are (x, y, z, diameter) rows, in micrometres."""

    soma: list[np.ndarray] = field(default_factory=list)  # outlines (closed) or soma points
    neurites: dict[str, list[np.ndarray]] = field(default_factory=dict)  # kind -> polylines

    def add(self, kind: str, points: list[tuple[float, ...]]) -> None:
        if len(points) >= 2:
            self.neurites.setdefault(kind, []).append(np.asarray(points, dtype=float))

    @property
    def point_count(self) -> int:
        return sum(len(line) for lines in self.neurites.values() for line in lines) + sum(
            len(outline) for outline in self.soma
        )


def read_morphology(path: str | Path) -> Morphology:
    """Read an .swc or .asc file; raises ``MorphologyError`` when it cannot."""
    path = Path(path)
    if path.stat().st_size > _MAX_BYTES:
        raise MorphologyError(f"{path.name} is larger than {_MAX_BYTES // 2**20} MB.")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix == ".swc":
        morphology = read_swc(text)
    elif suffix == ".asc":
        morphology = read_asc(text)
    else:
        raise MorphologyError(f"{path.name}: only .swc and .asc morphologies can be drawn.")
    if not morphology.neurites and not morphology.soma:
        raise MorphologyError(f"{path.name} holds no soma and no neurite.")
    return morphology


# --- SWC -------------------------------------------------------------------------------


def read_swc(text: str) -> Morphology:
    """``id type x y z radius parent`` per line; ``#`` starts a comment."""
    points: dict[int, tuple[int, tuple[float, float, float, float], int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 7:
            raise MorphologyError(f"SWC line {number} has {len(fields)} fields, not 7.")
        try:
            identifier, kind, parent = int(fields[0]), int(float(fields[1])), int(fields[6])
            x, y, z, radius = (float(value) for value in fields[2:6])
        except ValueError:
            raise MorphologyError(f"SWC line {number} is not numbers.") from None
        points[identifier] = (kind, (x, y, z, 2 * radius), parent)

    morphology = Morphology()
    soma = [point for kind, point, _ in points.values() if kind == 1]
    if soma:
        morphology.soma.append(np.asarray(soma, dtype=float))
    children: dict[int, list[int]] = {}
    for identifier, (_, _, parent) in points.items():
        children.setdefault(parent, []).append(identifier)
    # One polyline per unbranched stretch of one kind, starting at its parent point.
    starts = [
        identifier
        for identifier, (kind, _, parent) in points.items()
        if kind != 1
        and (parent not in points or points[parent][0] != kind or len(children.get(parent, [])) > 1)
    ]
    for start in starts:
        kind, _, parent = points[start]
        line = [points[parent][1]] if parent in points else []
        current = start
        while True:
            line.append(points[current][1])
            following = [child for child in children.get(current, []) if points[child][0] == kind]
            if len(following) != 1 or len(children.get(current, [])) != 1:
                break
            current = following[0]
        morphology.add(_SWC_KINDS.get(kind, f"type {kind}"), line)
    return morphology


# --- Neurolucida -----------------------------------------------------------------------


class _Spine(list):
    """A ``<( ... )>`` group: spines, left out of the picture."""


def read_asc(text: str) -> Morphology:
    """A Neurolucida ASCII file: the cell body contour and the axon and dendrite trees."""
    morphology = Morphology()
    for block in _parse_asc(text):
        if not isinstance(block, list) or not block:
            continue
        if isinstance(block[0], str) and block[0].startswith('"'):
            if _has_property(block, "cellbody"):
                outline = [point for point in block if _is_point(point)]
                if outline:
                    morphology.soma.append(np.asarray([_point(p) for p in outline]))
            continue  # other contours: layer boundaries and the like
        kind = next((_ASC_KINDS[name] for name in _ASC_KINDS if _has_property(block, name)), None)
        if kind is not None:
            _walk_tree(block, kind, None, morphology)
    return morphology


def _parse_asc(text: str) -> list:
    """The file as nested lists of tokens (numbers as text), comments dropped."""
    root: list = []
    stack: list[list] = [root]
    for token in _ASC_TOKEN.findall(text):
        if token.startswith(";") or token == ",":
            continue
        if token in ("(", "<"):
            group: list = [] if token == "(" else _Spine()
            stack[-1].append(group)
            stack.append(group)
        elif token in (")", ">"):
            if len(stack) == 1:
                raise MorphologyError("The .asc file closes more parentheses than it opens.")
            stack.pop()
        else:
            stack[-1].append(token)
    if len(stack) != 1:
        raise MorphologyError("The .asc file ends inside an unclosed parenthesis.")
    return root


def _walk_tree(
    group: list, kind: str, start: tuple[float, ...] | None, morphology: Morphology
) -> None:
    """Add the points of ``group`` as one polyline from ``start``, then its branches.

    A branching point is a sub-list of branches separated by ``|``; each branch starts at
    the last point before it.
    """
    line = [start] if start is not None else []
    for item in group:
        if _is_point(item):
            line.append(_point(item))
        elif isinstance(item, list) and not isinstance(item, _Spine) and _is_branching(item):
            morphology.add(kind, line)
            branch_start = line[-1] if line else start
            for branch in _branches(item):
                _walk_tree(branch, kind, branch_start, morphology)
            line = []
    morphology.add(kind, line)


def _branches(group: list) -> Iterator[list]:
    branch: list = []
    for item in group:
        if item == "|":
            yield branch
            branch = []
        else:
            branch.append(item)
    yield branch


def _is_branching(item: list) -> bool:
    """A group of branches (or a single branch) rather than a property or a marker."""
    if not item:
        return False
    first = item[0]
    return isinstance(first, list) or first == "|"


def _is_point(item: object) -> bool:
    if not isinstance(item, list) or isinstance(item, _Spine) or len(item) < 3:
        return False
    return all(isinstance(value, str) and _is_number(value) for value in item[:3])


def _point(item: list) -> tuple[float, float, float, float]:
    x, y, z = (float(value) for value in item[:3])
    diameter = float(item[3]) if len(item) > 3 and _is_number(item[3]) else 0.0
    return (x, y, z, diameter)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _has_property(block: list, name: str) -> bool:
    """True when ``block`` holds the property ``(Name)``, e.g. ``(Axon)`` or ``(CellBody)``."""
    return any(
        isinstance(item, list)
        and len(item) == 1
        and isinstance(item[0], str)
        and item[0].lower() == name
        for item in block
    )
