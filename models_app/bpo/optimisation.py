"""An optimisation folder: finding it in an extracted archive, validating it, loading it.

Validation reports every problem at once, in words a scientist understands, and never runs
the model's code: opt_neuron.py is only parsed to find the key it passes to
``evaluator.create``. With ``with_neuron``, it also checks what a run needs and only NEURON
can tell (its built-in mechanisms, whether it reads the morphology), in child processes.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigFile, read_config
from .errors import BpoError
from .features import feature_problems
from .layout import (
    CONFIG_DIR,
    CONFIG_FILES,
    ENTRY_SCRIPT,
    EVALUATOR_MODULE,
    MECHANISM_SUFFIX,
    MECHANISMS_DIR,
    MODEL_DIR,
    MORPHOLOGY_DIR,
    config_path,
    is_archiver_litter,
)
from .loading import read_entry_script
from .naming import OptimisationName, parse_name
from .neuron_checks import NeuronUnavailable, built_in_mechanisms, morphology_problem
from .nmodl import mechanisms_defined_in
from .parameters import parameter_problems
from .protocols import protocol_problems
from .sandbox import Sandbox
from .wording import json_type, shown


class InvalidOptimisation(BpoError):
    """The folder is not a usable optimisation; ``problems`` lists every reason."""

    summary = "The optimisation folder is not valid"


@dataclass(frozen=True)
class Optimisation:
    """A validated optimisation folder and the contents of its configs (under the key)."""

    root: Path
    name: str
    key: str
    features: dict[str, Any]
    parameters: dict[str, Any]
    protocols: dict[str, Any]
    morphology: str  # file name under morphology/
    mechanisms: tuple[str, ...]  # .mod file names under mechanisms/, sorted

    @property
    def parsed_name(self) -> OptimisationName:
        return parse_name(self.name)

    @property
    def morphology_path(self) -> Path:
        return self.root / MORPHOLOGY_DIR / self.morphology

    @property
    def mechanism_paths(self) -> tuple[Path, ...]:
        return tuple(self.root / MECHANISMS_DIR / name for name in self.mechanisms)

    def config_path(self, kind: str) -> Path:
        """The path of config/<kind>.json (kind: features, parameters, protocols, morph)."""
        return config_path(self.root, kind)

    def parameters_document(self) -> dict[str, Any]:
        """parameters.json as a whole document, ``{key: parameters}``."""
        return {self.key: self.parameters}


def find_root(extracted_dir: Path) -> Path:
    """The optimisation folder inside an extracted archive.

    An archive holds either exactly one top folder or the optimisation's files at its top;
    macOS archiver litter (``__MACOSX``, ``.DS_Store``, ``._*``) is ignored.
    """
    extracted_dir = Path(extracted_dir)
    if _looks_like_optimisation(extracted_dir):
        return extracted_dir
    entries = sorted(
        (entry for entry in extracted_dir.iterdir() if not is_archiver_litter(entry.name)),
        key=lambda entry: entry.name,
    )
    folders = [entry for entry in entries if entry.is_dir()]
    if len(entries) == 1 and folders:
        return folders[0]
    if not entries:
        raise InvalidOptimisation(["The archive is empty."])
    names = ", ".join(entry.name + ("/" if entry.is_dir() else "") for entry in entries[:10])
    if len(entries) > 10:
        names += ", ..."
    raise InvalidOptimisation(
        [
            f"The archive's top level holds {len(entries)} entries ({names}); it must hold "
            f"exactly one optimisation folder, or the optimisation's files ({CONFIG_DIR}/, "
            f"{ENTRY_SCRIPT}, ...) directly."
        ]
    )


def validate_optimisation(
    root: Path, *, with_neuron: bool = False, sandbox: Sandbox | None = None
) -> list[str]:
    """Every problem that keeps ``root`` from being a runnable optimisation; [] when none.

    ``with_neuron`` adds the checks NEURON answers in child processes (a few seconds):
    every mechanism parameters.json names is defined by a .mod file or built into NEURON,
    and NEURON reads the morphology. Importing a model asks for them. They run in
    ``sandbox`` (default: bubblewrap), since the files are the model's.
    """
    problems, _ = _inspect(Path(root), with_neuron=with_neuron, sandbox=sandbox or Sandbox())
    return problems


def load_optimisation(
    root: Path,
    *,
    name: str | None = None,
    with_neuron: bool = False,
    sandbox: Sandbox | None = None,
) -> Optimisation:
    """Validate and load the optimisation in ``root``; raises ``InvalidOptimisation``.

    ``name`` defaults to the folder's name; give it when the folder was extracted from an
    archive that held the files at its top, where the folder name means nothing.
    ``with_neuron`` and ``sandbox`` as for ``validate_optimisation``.
    """
    root = Path(root)
    problems, configs = _inspect(root, with_neuron=with_neuron, sandbox=sandbox or Sandbox())
    if problems:
        raise InvalidOptimisation(problems)
    return Optimisation(
        root=root,
        name=name or root.name,
        key=configs["features"].key or "",
        features=configs["features"].content,
        parameters=configs["parameters"].content,
        protocols=configs["protocols"].content,
        morphology=configs["morph"].content,
        mechanisms=_mechanism_names(root),
    )


# --- helpers ---------------------------------------------------------------------------


def _inspect(
    root: Path, *, with_neuron: bool, sandbox: Sandbox
) -> tuple[list[str], dict[str, ConfigFile]]:
    """The problems of the folder, and its config files as read."""
    if not root.is_dir():
        return [f"{root} is not a folder."], {}
    configs = {kind: read_config(root, kind) for kind in CONFIG_FILES}
    problems = [problem for config in configs.values() for problem in config.problems]
    key = _common_key(configs, problems)
    problems += _entry_script_problems(root, key)
    problems += _model_problems(root)
    mechanism_problems = _mechanism_problems(root)
    problems += mechanism_problems
    morphology_problems = _morphology_problems(root, configs["morph"])
    problems += morphology_problems
    if configs["parameters"].key is not None:
        problems += parameter_problems(configs["parameters"].content)
        if with_neuron and not mechanism_problems:
            problems += _undefined_mechanism_problems(root, configs["parameters"].content, sandbox)
    if with_neuron and configs["morph"].key is not None and not morphology_problems:
        problem = morphology_problem(
            root / MORPHOLOGY_DIR / configs["morph"].content,
            shown_name=configs["morph"].content,
            sandbox=sandbox,
        )
        problems += [problem] if problem else []
    protocols = configs["protocols"].content if configs["protocols"].key is not None else None
    if protocols is not None:
        problems += protocol_problems(protocols)
    if configs["features"].key is not None:
        problems += feature_problems(
            configs["features"].content,
            protocols=protocols if isinstance(protocols, dict) else None,
        )
    return problems, configs


def _looks_like_optimisation(folder: Path) -> bool:
    return (folder / CONFIG_DIR).is_dir() or (folder / ENTRY_SCRIPT).is_file()


def _common_key(configs: dict[str, ConfigFile], problems: list[str]) -> str | None:
    """The key all four configs share, or None (adding a problem when they disagree)."""
    keys = {kind: config.key for kind, config in configs.items() if config.key is not None}
    distinct = list(dict.fromkeys(keys.values()))
    if len(distinct) > 1:
        listed = ", ".join(f"{CONFIG_FILES[kind]} has '{key}'" for kind, key in keys.items())
        problems.append(
            f"The config files do not share one optimisation key ({listed}); "
            "all four must use the same key."
        )
        return None
    return distinct[0] if distinct else None


def _entry_script_problems(root: Path, key: str | None) -> list[str]:
    path = root / ENTRY_SCRIPT
    if not path.is_file():
        return [f"{ENTRY_SCRIPT} is missing; it is the script that runs the optimisation."]
    script = read_entry_script(path.read_bytes().decode("utf-8", errors="replace"))
    if script.syntax_error is not None:
        return [
            f"{ENTRY_SCRIPT} cannot be parsed as Python 3 ({script.syntax_error}), so the "
            "key it passes to evaluator.create(...) cannot be read, and it would not run."
        ]
    if key is None:
        return []  # the config problems already say why there is no key to compare
    if script.create_key == key:
        return []
    if script.create_key is not None:
        return [
            f"{ENTRY_SCRIPT} creates the evaluator with '{script.create_key}', but the config "
            f"files use the key '{key}'; they must match."
        ]
    if script.creates_evaluator:
        return [
            f"{ENTRY_SCRIPT} calls evaluator.create(...) without a literal key, so it cannot "
            f"be checked against the config files' key '{key}'; write "
            f"evaluator.create('{key}', ...)."
        ]
    return [
        f"{ENTRY_SCRIPT} does not call evaluator.create('{key}', ...), so the optimisation "
        "would not find its configuration."
    ]


def _model_problems(root: Path) -> list[str]:
    model = root / MODEL_DIR
    if not model.is_dir():
        return [f"The {MODEL_DIR}/ folder is missing; it holds the model's evaluator and template."]
    if not (model / EVALUATOR_MODULE).is_file():
        return [f"{MODEL_DIR}/{EVALUATOR_MODULE} is missing."]
    return []


def _mechanism_problems(root: Path) -> list[str]:
    if not (root / MECHANISMS_DIR).is_dir():
        return [
            f"The {MECHANISMS_DIR}/ folder is missing; it must hold the channel models "
            f"({MECHANISM_SUFFIX} files)."
        ]
    if not _mechanism_names(root):
        return [
            f"{MECHANISMS_DIR}/ holds no {MECHANISM_SUFFIX} file; NEURON needs the channel "
            "models to compile."
        ]
    return []


def _undefined_mechanism_problems(root: Path, parameters: object, sandbox: Sandbox) -> list[str]:
    """The mechanisms parameters.json names that neither a .mod file nor NEURON defines."""
    mechanisms = parameters.get("mechanisms") if isinstance(parameters, dict) else None
    if not isinstance(mechanisms, dict):
        return []
    try:
        built_in = built_in_mechanisms(sandbox)
    except NeuronUnavailable as error:
        return error.problems
    defined = mechanisms_defined_in(list(_mechanism_paths(root))) | built_in
    missing: dict[str, None] = {}  # ordered sets: names and sections in the order first met
    sections: dict[str, None] = {}
    for section, names in mechanisms.items():
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str) and name not in defined:
                missing[name] = None
                sections[section] = None
    if not missing:
        return []
    return [
        "parameters.json uses mechanisms that no .mod file defines: "
        f"{', '.join(missing)} (in {', '.join(sections)})"
    ]


def _mechanism_paths(root: Path) -> tuple[Path, ...]:
    return tuple(root / MECHANISMS_DIR / name for name in _mechanism_names(root))


def _mechanism_names(root: Path) -> tuple[str, ...]:
    folder = root / MECHANISMS_DIR
    if not folder.is_dir():
        return ()
    return tuple(
        sorted(
            path.name
            for path in folder.iterdir()
            if path.suffix == MECHANISM_SUFFIX and path.is_file() and not path.is_symlink()
        )
    )


def _morphology_problems(root: Path, morph: ConfigFile) -> list[str]:
    if morph.key is None:
        return []
    file_name = morph.content
    if not isinstance(file_name, str):
        return [
            f"{morph.label} must map the key to the morphology's file name (a text), "
            f"not {json_type(file_name)}."
        ]
    if not file_name or "/" in file_name or "\\" in file_name or file_name in (".", ".."):
        return [
            f"{morph.label} must name a file directly inside {MORPHOLOGY_DIR}/ "
            f"(such as cell.asc), not {shown(file_name)}."
        ]
    folder = root / MORPHOLOGY_DIR
    if (folder / file_name).is_file():
        return []
    present = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    held = f"it holds: {', '.join(present)}" if present else "it is missing or empty"
    return [
        f"The morphology '{file_name}' named in {morph.label} is not in {MORPHOLOGY_DIR}/ ({held})."
    ]
