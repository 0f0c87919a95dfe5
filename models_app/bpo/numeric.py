"""Numbers as the configs and the forms give them: finite, never booleans, never text."""

import math
import re

from .wording import shown

# Whole numbers typed as "50" stay integers, so a bound written back to parameters.json
# keeps the look the scientist gave it (50, not 50.0).
_INTEGER_TEXT = re.compile(r"[+-]?\d+")


def is_finite_number(value: object) -> bool:
    """True for an int or float that is neither NaN nor infinite (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def number_problem(value: object) -> str | None:
    """Why ``value`` is not a finite number, in words; None when it is one."""
    if is_finite_number(value):
        return None
    if isinstance(value, float) and math.isnan(value):
        return "is not a number (NaN)"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "is infinite"
    return f"is not a number ({shown(value)})"


def parse_number(raw: object) -> int | float:
    """A finite number from a JSON value or a form's text; ValueError says what is wrong."""
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise ValueError("Enter a number.")
        try:
            value: int | float = int(text) if _INTEGER_TEXT.fullmatch(text) else float(text)
        except ValueError:
            raise ValueError(f"Enter a number such as 0.02 or 2e-5, not {text!r}.") from None
    else:
        value = raw  # type: ignore[assignment]
    problem = number_problem(value)
    if problem is not None:
        if isinstance(raw, str):
            raise ValueError(f"Enter a finite number, not {raw.strip()!r}.")
        raise ValueError(f"The value {problem}.")
    return value


def parse_whole_number(raw: object) -> int:
    """A whole number from an int or from text of digits; ValueError says what is wrong."""
    if isinstance(raw, bool):
        raise ValueError("Enter a whole number.")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INTEGER_TEXT.fullmatch(raw.strip()):
        return int(raw.strip())
    raise ValueError(f"Enter a whole number, not {shown(raw)}.")
