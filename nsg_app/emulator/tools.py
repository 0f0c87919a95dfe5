"""The NSG tools the emulator offers, their visible parameters (vparams) and limits.

Names, units and limits follow docs/nsg-protocol.md §7: runtime_ in hours (0.1 to 48),
at most 72 nodes, up to 128 cores per node on Expanse and 24 on the legacy TG tool.
Messages are phrased like NSG's ("Maximum Hours to Run must be less than 48").
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

EXPANSE_MAX_CORES_PER_NODE = 128
TG_MAX_CORES_PER_NODE = 24
MAX_NODES = 72
MIN_RUNTIME_HOURS = 0.1
MAX_RUNTIME_HOURS = 48.0
MAX_GB_MEMORY_PER_NODE = 243
MAX_TEXT_LENGTH = 1000


@dataclass(frozen=True)
class ParamSpec:
    name: str
    label: str
    kind: str  # "int", "float", "flag" (0 or 1), "text" or "path" (relative, no "..")
    default: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False


@dataclass(frozen=True)
class ToolDefinition:
    tool_id: str
    name: str
    params: dict[str, ParamSpec]
    # BluePyOpt tools always compile the mechanisms; the generic ones when nrnivmodl_o_=1.
    always_compiles: bool
    # NEURON_EXPANSE runs nrniv on hoc files unless pythonoption_=1 or the file is .py.
    may_run_nrniv: bool = False


@dataclass(frozen=True)
class RunSettings:
    """What a validated submission asks the cluster for."""

    filename: str
    subdirname: str
    nodes: int
    cores_per_node: int
    tasks_per_node: int
    runtime_hours: float
    gb_memory_per_node: int
    cmdlineopts: str
    compile_mechanisms: bool
    python_mode: bool

    def command(self, python: str = "python3", nrniv: str = "nrniv") -> list[str]:
        options = shlex.split(self.cmdlineopts)
        if self.python_mode:
            return [python, self.filename, *options]
        return [nrniv, *options, self.filename]


def _common_params(max_cores: int, default_filename: str | None) -> list[ParamSpec]:
    return [
        ParamSpec("number_nodes_", "Number of nodes", "int", "1", 1, MAX_NODES),
        ParamSpec("number_cores_", "Number of cores per node", "int", "1", 1, max_cores),
        ParamSpec(
            "runtime_",
            "Maximum Hours to Run",
            "float",
            "0.5",
            MIN_RUNTIME_HOURS,
            MAX_RUNTIME_HOURS,
        ),
        ParamSpec(
            "filename_",
            "Input filename",
            "path",
            default_filename,
            required=default_filename is None,
        ),
    ]


def _generic_params() -> list[ParamSpec]:
    return [
        ParamSpec("tasks_per_node_", "Tasks per node", "int", None, 1, EXPANSE_MAX_CORES_PER_NODE),
        ParamSpec(
            "threads_per_task_", "Threads per task", "int", "1", 1, EXPANSE_MAX_CORES_PER_NODE
        ),
        ParamSpec("cmdlineopts_", "Command line options", "text", ""),
        ParamSpec("nrnivmodl_o_", "Compile mod files with nrnivmodl", "flag", "0"),
        ParamSpec("pythonoption_", "Run in Python mode", "flag", "0"),
        ParamSpec(
            "number_gbmemorypernode_",
            "Memory per node in GB",
            "int",
            None,
            1,
            MAX_GB_MEMORY_PER_NODE,
        ),
        ParamSpec("subdirname_", "Sub-directory holding the input file", "path", ""),
    ]


def _tool(
    tool_id: str, name: str, params: list[ParamSpec], *, always_compiles: bool, nrniv=False
) -> ToolDefinition:
    return ToolDefinition(
        tool_id=tool_id,
        name=name,
        params={spec.name: spec for spec in params},
        always_compiles=always_compiles,
        may_run_nrniv=nrniv,
    )


TOOLS: dict[str, ToolDefinition] = {
    tool.tool_id: tool
    for tool in [
        _tool(
            "BLUEPYOPT_EXPANSE",
            "BluePyOpt on Expanse",
            _common_params(EXPANSE_MAX_CORES_PER_NODE, "init.py"),
            always_compiles=True,
        ),
        _tool(
            "BLUEPYOPT_TG",
            "BluePyOpt (legacy TG)",
            _common_params(TG_MAX_CORES_PER_NODE, "init.py"),
            always_compiles=True,
        ),
        _tool(
            "PY_EXPANSE",
            "Python on Expanse",
            _common_params(EXPANSE_MAX_CORES_PER_NODE, None) + _generic_params(),
            always_compiles=False,
        ),
        _tool(
            "NEURON_EXPANSE",
            "NEURON on Expanse",
            _common_params(EXPANSE_MAX_CORES_PER_NODE, None) + _generic_params(),
            always_compiles=False,
            nrniv=True,
        ),
    ]
}


def validate_vparams(
    tool: ToolDefinition, raw: dict[str, list[str]]
) -> tuple[RunSettings | None, dict[str, str]]:
    """Check the submitted vparams (name without prefix -> values).

    Returns the run settings, or None and one message per bad parameter.
    """
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    for name, given in raw.items():
        spec = tool.params.get(name)
        if spec is None:
            errors[name] = f"Unknown parameter {name} for tool {tool.tool_id}."
        elif len(given) != 1:
            errors[name] = f"{spec.label} must be given once."
        else:
            message = _check_value(spec, given[0].strip())
            if message:
                errors[name] = message
            else:
                values[name] = given[0].strip()
    for spec in tool.params.values():
        if spec.name not in raw and spec.required:
            errors[spec.name] = f"{spec.label} is required."
        if spec.name not in values and spec.default is not None and spec.name not in errors:
            values[spec.name] = spec.default
    if errors:
        return None, errors
    return _settings(tool, values), {}


def _check_value(spec: ParamSpec, value: str) -> str | None:
    if spec.kind in {"int", "float"}:
        try:
            number = int(value) if spec.kind == "int" else float(value)
        except ValueError:
            kind = "a whole number" if spec.kind == "int" else "a number"
            return f"{spec.label} must be {kind}."
        if not math.isfinite(number):
            return f"{spec.label} must be a number."
        if spec.minimum is not None and number < spec.minimum:
            return f"{spec.label} must be at least {_plain(spec.minimum)}."
        if spec.maximum is not None and number > spec.maximum:
            return f"{spec.label} must be less than {_plain(spec.maximum)}."
        return None
    if spec.kind == "flag":
        return None if value in {"0", "1"} else f"{spec.label} must be 0 or 1."
    if len(value) > MAX_TEXT_LENGTH:
        return f"{spec.label} is longer than {MAX_TEXT_LENGTH} characters."
    if spec.kind == "path":
        if spec.required and not value:
            return f"{spec.label} is required."
        path = PurePosixPath(value)
        if value and (path.is_absolute() or ".." in path.parts or "\\" in value or "\0" in value):
            return f"{spec.label} must be a relative path inside the input folder."
    if spec.kind == "text":
        try:
            shlex.split(value)
        except ValueError:
            return f"{spec.label} has unbalanced quotes."
    return None


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _settings(tool: ToolDefinition, values: dict[str, str]) -> RunSettings:
    cores = int(values["number_cores_"])
    filename = values["filename_"]
    python_option = values.get("pythonoption_", "0") == "1"
    return RunSettings(
        filename=filename,
        subdirname=values.get("subdirname_", ""),
        nodes=int(values["number_nodes_"]),
        cores_per_node=cores,
        tasks_per_node=int(values.get("tasks_per_node_") or cores),
        runtime_hours=float(values["runtime_"]),
        gb_memory_per_node=int(values.get("number_gbmemorypernode_") or 64),
        cmdlineopts=values.get("cmdlineopts_", ""),
        compile_mechanisms=tool.always_compiles or values.get("nrnivmodl_o_") == "1",
        python_mode=not tool.may_run_nrniv or python_option or filename.endswith(".py"),
    )


def render_commandline(settings: RunSettings) -> str:
    """The command NSG reports for a job ("inputfile python3 init.py")."""
    return "inputfile " + shlex.join(settings.command())
