"""Units of features, parameters and stimuli, and numbers shown with consistent digits.

Feature units come from eFEL's own feature definitions (``efel/units/units.json``), read
as a file so the web process need not load eFEL's compiled core. Parameter units follow
NEURON's conventions for the names the HBP models use.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from functools import cache
from pathlib import Path

STIMULUS_CURRENT = "nA"
TIME = "ms"

# eFEL says "constant" for a pure number; a spike count reads better as a count.
_COUNTS = re.compile(r"(?i)count$|^number_")
_DIMENSIONLESS = "constant"

_PARAMETER_UNITS = {
    "Ra": "ohm cm",
    "cm": "uF/cm2",
    "celsius": "degC",
    "v_init": "mV",
}
# Reversal potentials (e_pas, ena, ek, eca, ehcn ...) and maximal conductances.
_REVERSAL = re.compile(r"^e(_|[a-z]{1,4}$)")
_CONDUCTANCE = re.compile(r"^g[a-z0-9]*bar(_|$)|^gbar_|^g_")


@cache
def _efel_units() -> dict[str, str]:
    spec = importlib.util.find_spec("efel")
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / "units" / "units.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def feature_unit(name: str) -> str:
    """The unit of an eFEL feature ("mV", "ms", "Hz", "count"), "" for a pure number or an
    unknown feature."""
    unit = _efel_units().get(name, "")
    if unit == _DIMENSIONLESS:
        return "count" if _COUNTS.search(name) else ""
    return unit


def parameter_unit(name: str) -> str:
    """NEURON's unit of a mechanism or section parameter, "" when it is not known."""
    if name in _PARAMETER_UNITS:
        return _PARAMETER_UNITS[name]
    if _CONDUCTANCE.match(name):
        return "S/cm2"
    if _REVERSAL.match(name):
        return "mV"
    return ""


def mean_and_std(mean: float, std: float) -> tuple[str, str]:
    """``mean`` and ``std`` with the same decimals: two significant digits of the std.

    78 ± 5 reads "78.0 ± 5.0" and -71.5 ± 1.5 reads "-71.5 ± 1.5", so neighbouring rows
    line up instead of mixing "78 ± 5" with "-71.5000 ± 1.5000".
    """
    try:
        mean, std = float(mean), float(std)
    except (TypeError, ValueError):
        return str(mean), str(std)
    if not (math.isfinite(mean) and math.isfinite(std)) or std <= 0:
        return significant(mean), significant(std)
    decimals = max(0, 1 - math.floor(math.log10(std)))
    if decimals > 6:  # a tiny std: scientific notation keeps it readable
        return f"{mean:.3g}", f"{std:.2g}"
    return f"{mean:.{decimals}f}", f"{std:.{decimals}f}"


def significant(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits, without a trailing ".0"."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"
