"""What an NMODL (.mod) file defines: the mechanism names in its NEURON block.

A density mechanism is named by ``SUFFIX name``, a point process by ``POINT_PROCESS name``
and an artificial cell by ``ARTIFICIAL_CELL name``; parameters.json refers to them by those
names. Read as text, never compiled.
"""

from __future__ import annotations

import re
from pathlib import Path

# COMMENT ... ENDCOMMENT blocks and ": ..." line comments hide whatever they hold.
_BLOCK_COMMENT = re.compile(r"^\s*COMMENT\b.*?^\s*ENDCOMMENT\b", re.MULTILINE | re.DOTALL)
_LINE_COMMENT = re.compile(r":.*$|\?.*$", re.MULTILINE)
_NEURON_BLOCK = re.compile(r"\bNEURON\s*\{(?P<body>[^}]*)\}")
_NAME = re.compile(r"\b(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(?P<name>[A-Za-z_]\w*)")


def defined_mechanisms(source: str) -> list[str]:
    """The mechanism names the NEURON block of an NMODL ``source`` defines, in order."""
    code = _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", source))
    names = []
    for block in _NEURON_BLOCK.finditer(code):
        names += [match["name"] for match in _NAME.finditer(block["body"])]
    return list(dict.fromkeys(names))


def mechanisms_defined_in(paths: list[Path]) -> set[str]:
    """Every mechanism name the .mod files at ``paths`` define."""
    names: set[str] = set()
    for path in paths:
        names.update(defined_mechanisms(path.read_bytes().decode("utf-8", errors="replace")))
    return names
