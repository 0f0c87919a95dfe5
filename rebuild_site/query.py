"""Values read from a request's query string or form fields outside a Django form.

Anything a browser sends can be hostile: "²" passes str.isdigit() but not int(), 5,000
digits exceed Python's int-parsing limit, a number past 2**63 overflows the database's
integer column, and PostgreSQL refuses text holding NUL. These helpers turn each of them
into "no value", so that a view answers 404 or ignores the filter instead of failing.
"""

from __future__ import annotations

import re

# The largest id any database column here holds (a signed 64-bit integer).
MAX_ID = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def query_int(raw: object, *, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """`raw` as an integer within [minimum, maximum], or None when it is not one.

    Only ASCII digits count: Unicode digits and superscripts are refused rather than
    read, since no link of the site makes them.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        return None
    return value if minimum <= value <= maximum else None


def query_text(raw: object, *, max_length: int = 200) -> str:
    """`raw` as search text: stripped, without NUL characters, at most `max_length` long."""
    if not isinstance(raw, str):
        return ""
    return raw.replace("\x00", "").strip()[:max_length]
