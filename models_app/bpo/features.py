"""features.json: the target electrophysiological features, as rows and as checks.

The content under the optimisation key is ``{protocol: {location: {feature: [mean, std]}}}``
where location is ``soma`` or the name of one of the protocol's extra recordings. Each
feature is scored as |value - mean| / std.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .numeric import number_problem
from .ordering import natural_key
from .units import feature_unit, mean_and_std
from .wording import json_type, shown

LABEL = "features.json"
SOMA = "soma"


@dataclass(frozen=True)
class FeatureRow:
    protocol: str
    location: str
    feature: str
    mean: float
    std: float

    @property
    def unit(self) -> str:
        return feature_unit(self.feature)

    @property
    def shown(self) -> tuple[str, str]:
        """Mean and std as text with the same decimals."""
        return mean_and_std(self.mean, self.std)


def feature_rows(features: Mapping[str, Any]) -> list[FeatureRow]:
    """The features (content under the key of a well-formed features.json) as table rows.

    Protocols come in natural order (``step_-0.8`` before ``step_0.2``), the soma before
    other locations, and features alphabetically, whatever the order of the JSON keys.
    """
    rows = []
    for protocol in sorted(features, key=natural_key):
        locations = features[protocol]
        for location in sorted(locations, key=_location_key):
            for feature in sorted(locations[location], key=natural_key):
                mean, std = locations[location][feature]
                rows.append(FeatureRow(protocol, location, feature, mean, std))
    return rows


def feature_problems(features: object, *, protocols: Mapping[str, Any] | None) -> list[str]:
    """Every problem with the content under the key of features.json, in words.

    With ``protocols`` (the content under the key of protocols.json), each feature's
    protocol and location are also checked against it.
    """
    if not isinstance(features, dict):
        return [
            f"{LABEL}: the value under the key must be an object mapping protocols to "
            f"locations to features; it is {json_type(features)}."
        ]
    if not features:
        return [f"{LABEL} defines no feature: there is nothing to fit the model to."]
    problems = []
    for protocol, locations in features.items():
        if not isinstance(locations, dict) or not locations:
            problems.append(
                f"{LABEL}: protocol '{protocol}' must map locations (such as 'soma') to features."
            )
            continue
        problems += _protocol_link_problems(protocol, locations, protocols)
        for location, location_features in locations.items():
            if not isinstance(location_features, dict) or not location_features:
                problems.append(
                    f"{LABEL}: '{protocol}' at '{location}' must map feature names to [mean, std]."
                )
                continue
            for feature, values in location_features.items():
                problems += _value_problems(protocol, location, feature, values)
    return problems


def _value_problems(protocol: str, location: str, feature: str, values: object) -> list[str]:
    where = f"{LABEL}: {feature} of '{protocol}' at '{location}'"
    if not isinstance(values, list) or len(values) != 2:
        return [f"{where} must be [mean, std]; found {shown(values)}."]
    mean, std = values
    problems = []
    mean_problem, std_problem = number_problem(mean), number_problem(std)
    if mean_problem:
        problems.append(f"{where}: the mean {mean_problem}.")
    if std_problem:
        problems.append(f"{where}: the standard deviation {std_problem}.")
    elif std < 0:
        problems.append(f"{where}: the standard deviation {std} must not be negative.")
    return problems


def _protocol_link_problems(
    protocol: str, locations: dict[str, Any], protocols: Mapping[str, Any] | None
) -> list[str]:
    if protocols is None:
        return []
    definition = protocols.get(protocol)
    if definition is None:
        return [f"{LABEL} uses the protocol '{protocol}', which protocols.json does not define."]
    recordings = {SOMA}
    if isinstance(definition, dict) and isinstance(definition.get("extra_recordings"), list):
        recordings |= {
            recording["name"]
            for recording in definition["extra_recordings"]
            if isinstance(recording, dict) and isinstance(recording.get("name"), str)
        }
    return [
        f"{LABEL}: '{protocol}' has features at '{location}', which is neither 'soma' nor "
        f"an extra recording of '{protocol}' in protocols.json."
        for location in locations
        if location not in recordings
    ]


def _location_key(location: str) -> tuple:
    return (location != SOMA, natural_key(location))
