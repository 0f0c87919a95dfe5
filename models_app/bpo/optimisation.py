"""An optimisation folder: finding it in an extracted archive, validating it, loading it.

Validation reports every problem at once, in words a scientist understands, and never runs
the model's code: opt_neuron.py is only tokenised to find the key it passes to
``evaluator.create``.
"""

import ast
import io
import re
import tokenize
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
from .naming import OptimisationName, parse_name
from .parameters import parameter_problems
from .protocols import protocol_problems
from .wording import json_type, shown

# Tokens that sit between code tokens without meaning anything to the call we look for.
_LAYOUT_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
}
# Fallback for files the tokenizer rejects: a literal first argument, comments removed.
_CREATE_CALL = re.compile(
    r"""\bevaluator\s*\.\s*create\s*\(\s*(?:etype\s*=\s*)?(?P<quote>['"])(?P<key>[^'"\n]*)(?P=quote)\s*[,)]"""
)


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


def validate_optimisation(root: Path) -> list[str]:
    """Every problem that keeps ``root`` from being a runnable optimisation; [] when none."""
    problems, _ = _inspect(Path(root))
    return problems


def load_optimisation(root: Path, *, name: str | None = None) -> Optimisation:
    """Validate and load the optimisation in ``root``; raises ``InvalidOptimisation``.

    ``name`` defaults to the folder's name; give it when the folder was extracted from an
    archive that held the files at its top, where the folder name means nothing.
    """
    root = Path(root)
    problems, configs = _inspect(root)
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


def evaluator_keys(source: str) -> list[str]:
    """The literal keys opt_neuron.py passes to ``evaluator.create(...)``, comments ignored.

    The file is tokenised, never run or imported (legacy models may even be Python 2).
    """
    try:
        tokens = [
            token
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type not in _LAYOUT_TOKENS
        ]
    except (tokenize.TokenError, SyntaxError):
        return _keys_by_pattern(source)
    keys = []
    for position in range(len(tokens)):
        key = _create_call_key(tokens, position)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


# --- helpers ---------------------------------------------------------------------------


def _inspect(root: Path) -> tuple[list[str], dict[str, ConfigFile]]:
    """The problems of the folder, and its config files as read."""
    if not root.is_dir():
        return [f"{root} is not a folder."], {}
    configs = {kind: read_config(root, kind) for kind in CONFIG_FILES}
    problems = [problem for config in configs.values() for problem in config.problems]
    key = _common_key(configs, problems)
    problems += _entry_script_problems(root, key)
    problems += _model_problems(root)
    problems += _mechanism_problems(root)
    problems += _morphology_problems(root, configs["morph"])
    if configs["parameters"].key is not None:
        problems += parameter_problems(configs["parameters"].content)
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
    if key is None:
        return []  # the config problems already say why there is no key to compare
    keys = evaluator_keys(path.read_bytes().decode("utf-8", errors="replace"))
    if key in keys:
        return []
    if keys:
        used = ", ".join(f"'{used}'" for used in keys)
        return [
            f"{ENTRY_SCRIPT} creates the evaluator with {used}, but the config files use "
            f"the key '{key}'; they must match."
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


def _create_call_key(tokens: list[tokenize.TokenInfo], position: int) -> str | None:
    """The key if ``tokens[position:]`` reads ``evaluator . create ( [etype =] 'KEY' [,)]``."""
    expected = [(tokenize.NAME, "evaluator"), (tokenize.OP, "."), (tokenize.NAME, "create")]
    expected.append((tokenize.OP, "("))
    window = tokens[position : position + len(expected)]
    if [(token.type, token.string) for token in window] != expected:
        return None
    rest = tokens[position + len(expected) : position + len(expected) + 4]
    if len(rest) >= 2 and (rest[0].type, rest[1].string) == (tokenize.NAME, "="):
        if rest[0].string != "etype":
            return None
        rest = rest[2:]
    if len(rest) < 2 or rest[0].type != tokenize.STRING or rest[1].string not in (",", ")"):
        return None  # not a literal key (e.g. a variable or '%s' % name)
    try:
        value = ast.literal_eval(rest[0].string)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def _keys_by_pattern(source: str) -> list[str]:
    code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())
    return list(dict.fromkeys(match["key"] for match in _CREATE_CALL.finditer(code)))
