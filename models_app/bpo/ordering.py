"""The order in which names are shown: numbers inside names compare as numbers.

Protocols such as ``step_-0.8``, ``step_-0.2``, ``step_0.2``, ``step_1.0`` then come out in
order of amplitude. The order does not depend on the order of keys in a JSON object, which
a database (PostgreSQL jsonb) does not keep.
"""

import re

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def natural_key(name: str) -> tuple:
    """Sort key splitting ``name`` into text and numbers; ties break on the name itself."""
    parts: list[tuple[int, str, float]] = []
    position = 0
    for match in _NUMBER.finditer(name):
        if match.start() > position:
            parts.append((0, name[position : match.start()].casefold(), 0.0))
        parts.append((1, "", float(match.group())))
        position = match.end()
    if position < len(name):
        parts.append((0, name[position:].casefold(), 0.0))
    return (tuple(parts), name)
