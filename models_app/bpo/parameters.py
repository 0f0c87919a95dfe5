"""parameters.json: display rows, well-formedness checks, and editing the optimised bounds.

The content under the optimisation key is::

    {"mechanisms": {section_list: [mechanism suffix, ...]},
     "distributions": {name: "expression in {value} and {distance}"},
     "fixed": {"global": [[name, value]], section_list: [[name, value, "secvar" | distribution]]},
     "optimized": {section_list: [[name, lower, upper, "uniform" | "secvar" | distribution]]}}

Only ``lower`` and ``upper`` of optimised parameters are ever edited. The order of
entries is kept: the evaluator builds its parameter vector in that order.
"""

import copy
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import BpoError
from .numeric import number_problem, parse_number
from .ordering import natural_key
from .units import parameter_unit
from .wording import json_type, shown

LABEL = "parameters.json"

# Section lists the models' templates know, in the order the rows are shown.
SECTION_LISTS = (
    "all",
    "allnoaxon",
    "somadend",
    "somatic",
    "axonal",
    "myelinated",
    "alldend",
    "apical",
    "basal",
)
GLOBAL = "global"  # the "fixed" entry for global NEURON variables (v_init, celsius)
# Distributions every model has without defining them.
BUILT_IN_DISTRIBUTIONS = ("uniform", "secvar")
REQUIRED_ENTRIES = ("mechanisms", "distributions", "fixed", "optimized")
# The placeholders a distribution's expression may use.
_EXPRESSION_FIELDS = {"value", "distance"}

Bound = Literal["lower", "upper"]


class InvalidBounds(BpoError):
    """Submitted bounds were refused; ``errors`` maps form fields to messages."""

    summary = "The parameter bounds were refused"

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(f"{field}: {message}" for field, message in self.errors.items())


@dataclass(frozen=True)
class OptimisedParameter:
    section: str
    name: str
    lower: float
    upper: float
    distribution: str

    @property
    def unit(self) -> str:
        return parameter_unit(self.name)


@dataclass(frozen=True)
class FixedParameter:
    section: str  # a section list, or "global"
    name: str
    value: float
    kind: str  # "global", "secvar" or the distribution applied to the value

    @property
    def unit(self) -> str:
        return parameter_unit(self.name)


@dataclass(frozen=True)
class Distribution:
    name: str
    expression: str


@dataclass(frozen=True)
class ParameterTable:
    optimised: tuple[OptimisedParameter, ...]
    fixed: tuple[FixedParameter, ...]
    distributions: tuple[Distribution, ...]


@dataclass(frozen=True)
class BoundsChange:
    """One optimised parameter whose bounds differ between two parameters.json contents."""

    section: str
    name: str
    old_lower: float
    old_upper: float
    lower: float
    upper: float


def parameter_table(definitions: Mapping[str, Any]) -> ParameterTable:
    """Rows for display from the content under the key of a well-formed parameters.json."""
    optimised = [
        OptimisedParameter(section, entry[0], entry[1], entry[2], entry[3])
        for section, entries in _in_section_order(definitions.get("optimized", {}))
        for entry in entries
    ]
    fixed = []
    for section, entries in _in_section_order(definitions.get("fixed", {})):
        for entry in entries:
            kind = GLOBAL if section == GLOBAL else entry[2]
            fixed.append(FixedParameter(section, entry[0], entry[1], kind))
    distributions = [
        Distribution(name, expression)
        for name, expression in sorted(
            definitions.get("distributions", {}).items(), key=lambda item: natural_key(item[0])
        )
    ]
    return ParameterTable(tuple(optimised), tuple(fixed), tuple(distributions))


def parameter_field(section: str, name: str) -> str:
    """The form field key of one optimised parameter (for errors about the whole row)."""
    return f"{section}.{name}"


def bound_field(section: str, name: str, bound: Bound) -> str:
    """The form field key of one bound of one optimised parameter."""
    return f"{parameter_field(section, name)}.{bound}"


def validate_bounds(
    rows: Iterable[tuple[str, str, object, object]],
    *,
    known: Iterable[tuple[str, str]] | None = None,
) -> dict[str, str]:
    """Check submitted ``(section, name, lower, upper)`` rows; values may be numbers or text.

    Returns messages keyed by ``bound_field`` (or ``parameter_field`` for row problems),
    empty when every row is acceptable. ``known`` lists the (section, name) pairs that
    exist; rows outside it are refused.
    """
    _, errors = _parse_bounds(rows, known=known)
    return errors


def apply_bounds(
    parameters_json: Mapping[str, Any],
    key: str,
    bounds: Iterable[tuple[str, str, object, object]],
) -> dict[str, Any]:
    """A new parameters.json document with the given optimised bounds changed.

    Only ``lower`` and ``upper`` of the listed parameters change; the original is left
    untouched. Raises ``InvalidBounds`` for values that are not finite numbers, unordered
    bounds, unknown or repeated parameters.
    """
    if key not in parameters_json:
        raise ValueError(f"parameters.json has no optimisation key {key!r}")
    document = copy.deepcopy(dict(parameters_json))
    definitions = document[key]
    optimized = definitions.get("optimized") if isinstance(definitions, dict) else None
    if not isinstance(optimized, dict):
        raise ValueError("parameters.json has no 'optimized' object under its key")
    entries = {
        (section, entry[0]): entry
        for section, section_entries in optimized.items()
        if isinstance(section_entries, list)
        for entry in section_entries
        if _is_entry(entry, 4)
    }
    parsed, errors = _parse_bounds(bounds, known=entries)
    if errors:
        raise InvalidBounds(errors)
    for section, name, lower, upper in parsed:
        entry = entries[(section, name)]
        entry[1] = lower
        entry[2] = upper
    return document


def bounds_changes(original: Mapping[str, Any], changed: Mapping[str, Any]) -> list[BoundsChange]:
    """Optimised parameters (content under the key) whose bounds differ, in display order."""
    before = {(row.section, row.name): row for row in parameter_table(original).optimised}
    changes = []
    for row in parameter_table(changed).optimised:
        old = before.get((row.section, row.name))
        if old is not None and (old.lower, old.upper) != (row.lower, row.upper):
            changes.append(
                BoundsChange(row.section, row.name, old.lower, old.upper, row.lower, row.upper)
            )
    return changes


# NEURON's parameters that cannot be negative: maximal conductances (gbar_kdr, gkabar_kap,
# g_pas, ...), axial resistance and membrane capacitance. A bound below zero lets the
# optimiser try a cell that does not exist; it is allowed (the user may know better) but said.
_NEVER_NEGATIVE = {"Ra": "axial resistance", "cm": "membrane capacitance"}


def unphysical_bounds(rows: Iterable[tuple[str, str, object, object]]) -> list[str]:
    """Warnings for bounds that no real cell can have: a negative conductance, Ra or
    capacitance. ``rows`` are parsed ``(section, name, lower, upper)`` numbers."""
    warnings = []
    for section, name, lower, _upper in rows:
        try:
            negative = float(lower) < 0
        except (TypeError, ValueError):
            continue
        if not negative:
            continue
        if name in _NEVER_NEGATIVE:
            warnings.append(
                f"{name} on {section}: a lower bound of {lower} {parameter_unit(name)} "
                f"allows a negative {_NEVER_NEGATIVE[name]}, which no cell has."
            )
        elif parameter_unit(name) == "S/cm2":
            warnings.append(
                f"{name} on {section}: a lower bound of {lower} S/cm2 allows a negative "
                "conductance, which no channel has."
            )
    return warnings


def parameter_problems(definitions: object) -> list[str]:
    """Every problem with the content under the key of parameters.json, in words."""
    if not isinstance(definitions, dict):
        return [
            f"{LABEL}: the value under the key must be an object with mechanisms, "
            f"distributions, fixed and optimized; it is {json_type(definitions)}."
        ]
    problems = [
        f"{LABEL} has no '{entry}' entry." for entry in REQUIRED_ENTRIES if entry not in definitions
    ]
    distributions = definitions.get("distributions", {})
    problems += _mechanism_problems(definitions.get("mechanisms", {}))
    problems += _distribution_problems(distributions)
    # Distribution names can be checked only when the distributions can be read.
    names = (
        set(BUILT_IN_DISTRIBUTIONS) | set(distributions)
        if isinstance(distributions, dict)
        else None
    )
    problems += _fixed_problems(definitions.get("fixed", {}), names)
    problems += _optimised_problems(definitions.get("optimized", {}), names)
    return problems


# --- checks ----------------------------------------------------------------------------


def _parse_bounds(
    rows: Iterable[tuple[str, str, object, object]],
    *,
    known: Iterable[tuple[str, str]] | None,
) -> tuple[list[tuple[str, str, int | float, int | float]], dict[str, str]]:
    known_pairs = None if known is None else set(known)
    parsed = []
    errors: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for section, name, raw_lower, raw_upper in rows:
        if known_pairs is not None and (section, name) not in known_pairs:
            errors[parameter_field(section, name)] = (
                f"There is no optimised parameter {name} in {section}."
            )
            continue
        if (section, name) in seen:
            errors[parameter_field(section, name)] = f"{name} in {section} is given twice."
            continue
        seen.add((section, name))
        values = {}
        for bound, raw in (("lower", raw_lower), ("upper", raw_upper)):
            try:
                values[bound] = parse_number(raw)
            except ValueError as error:
                errors[bound_field(section, name, bound)] = str(error)
        if len(values) < 2:
            continue
        if values["lower"] >= values["upper"]:
            errors[bound_field(section, name, "upper")] = (
                f"The upper bound must be greater than the lower bound ({values['lower']})."
            )
            continue
        parsed.append((section, name, values["lower"], values["upper"]))
    return parsed, errors


def _mechanism_problems(mechanisms: object) -> list[str]:
    if not isinstance(mechanisms, dict):
        return [f"{LABEL}: 'mechanisms' must be an object, not {json_type(mechanisms)}."]
    problems = []
    for section, names in mechanisms.items():
        problems += _section_problems(section, "mechanisms")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            problems.append(
                f"{LABEL}: mechanisms of '{section}' must be a list of mechanism names."
            )
    return problems


def _distribution_problems(distributions: object) -> list[str]:
    if not isinstance(distributions, dict):
        return [f"{LABEL}: 'distributions' must be an object, not {json_type(distributions)}."]
    problems = []
    for name, expression in distributions.items():
        if not isinstance(expression, str):
            problems.append(f"{LABEL}: distribution '{name}' must be a text expression.")
            continue
        try:
            placeholders = {
                field for _, field, _, _ in string.Formatter().parse(expression) if field
            }
        except ValueError:
            problems.append(f"{LABEL}: distribution '{name}' has unbalanced braces.")
            continue
        unknown = sorted(placeholders - _EXPRESSION_FIELDS)
        if unknown:
            problems.append(
                f"{LABEL}: distribution '{name}' uses {', '.join('{' + f + '}' for f in unknown)}; "
                "only {value} and {distance} are available."
            )
    return problems


def _fixed_problems(fixed: object, distributions: set[str] | None) -> list[str]:
    if not isinstance(fixed, dict):
        return [f"{LABEL}: 'fixed' must be an object, not {json_type(fixed)}."]
    problems = []
    for section, entries in fixed.items():
        if section != GLOBAL:
            problems += _section_problems(section, "fixed")
        if not isinstance(entries, list):
            problems.append(f"{LABEL}: fixed parameters of '{section}' must be a list.")
            continue
        for position, entry in enumerate(entries, start=1):
            if section == GLOBAL:
                shape_ok = _is_entry(entry, 2)
                expected = "[name, value]"
            else:
                shape_ok = _is_entry(entry, 3) and isinstance(entry[2], str)
                expected = "[name, value, distribution]"
            if not shape_ok:
                problems.append(
                    f"{LABEL}: fixed entry {position} of '{section}' must be {expected}; "
                    f"found {shown(entry)}."
                )
                continue
            where = f"{LABEL}: fixed parameter {entry[0]} ({section})"
            problem = number_problem(entry[1])
            if problem:
                problems.append(f"{where}: its value {problem}.")
            if section != GLOBAL and distributions is not None and entry[2] not in distributions:
                problems.append(f"{where}: {_unknown_distribution(entry[2], distributions)}")
    return problems


def _optimised_problems(optimized: object, distributions: set[str] | None) -> list[str]:
    if not isinstance(optimized, dict):
        return [f"{LABEL}: 'optimized' must be an object, not {json_type(optimized)}."]
    problems = []
    if not any(isinstance(entries, list) and entries for entries in optimized.values()):
        problems.append(f"{LABEL} has no optimised parameter: there is nothing to optimise.")
    for section, entries in optimized.items():
        problems += _section_problems(section, "optimized")
        if not isinstance(entries, list):
            problems.append(f"{LABEL}: optimised parameters of '{section}' must be a list.")
            continue
        seen = set()
        for position, entry in enumerate(entries, start=1):
            if not (_is_entry(entry, 4) and isinstance(entry[3], str)):
                problems.append(
                    f"{LABEL}: optimised entry {position} of '{section}' must be "
                    f"[name, lower, upper, distribution]; found {shown(entry)}."
                )
                continue
            name, lower, upper, distribution = entry
            where = f"{LABEL}: optimised parameter {name} ({section})"
            if name in seen:
                problems.append(f"{where} appears more than once.")
            seen.add(name)
            lower_problem, upper_problem = number_problem(lower), number_problem(upper)
            if lower_problem:
                problems.append(f"{where}: the lower bound {lower_problem}.")
            if upper_problem:
                problems.append(f"{where}: the upper bound {upper_problem}.")
            if not (lower_problem or upper_problem) and lower >= upper:
                problems.append(
                    f"{where}: the lower bound {lower} must be less than the upper bound {upper}."
                )
            if distributions is not None and distribution not in distributions:
                problems.append(f"{where}: {_unknown_distribution(distribution, distributions)}")
    return problems


def _section_problems(section: str, entry: str) -> list[str]:
    if section in SECTION_LISTS:
        return []
    return [
        f"{LABEL}: section list '{section}' in '{entry}' is not one the models know "
        f"({', '.join(SECTION_LISTS)})."
    ]


def _is_entry(entry: object, length: int) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) == length
        and isinstance(entry[0], str)
        and bool(entry[0])
    )


def _unknown_distribution(name: str, distributions: set[str]) -> str:
    defined = sorted(distributions - set(BUILT_IN_DISTRIBUTIONS), key=natural_key)
    choices = "'uniform', 'secvar'" + (f" or one of {', '.join(defined)}" if defined else "")
    return f"distribution '{name}' is not defined (use {choices})."


def _in_section_order(sections: Mapping[str, Any]) -> list[tuple[str, Any]]:
    order = {name: position for position, name in enumerate((GLOBAL, *SECTION_LISTS))}
    return sorted(
        sections.items(), key=lambda item: (order.get(item[0], len(order)), natural_key(item[0]))
    )
