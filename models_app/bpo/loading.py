"""Build a model's evaluator the way the model's own opt_neuron.py builds it.

The HBP models' ``model/evaluator.py`` does ``import model`` and later calls
``model.template.create(...)``: that attribute exists only because opt_neuron.py first runs
``from model.evaluator import *``, ``from model.template import *`` and
``from model.analysis import *``, and ``model/`` may be a namespace package with no
``__init__.py``. So the loader reads opt_neuron.py, makes the same imports from the model
package in the same order, from the run folder as working directory and first entry of
``sys.path``, and then calls ``evaluator.create`` with the script's own literal arguments.

This module runs model code: call it only in a process of its own (the analysis's
simulation process, the import check), never in the web or worker process.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models_app.bpo.layout import ENTRY_SCRIPT, MODEL_DIR

MODEL_PACKAGE = MODEL_DIR  # the folder model/ is imported as the package ``model``
EVALUATOR_MODULE = f"{MODEL_PACKAGE}.evaluator"


class ModelCodeError(Exception):
    """The model's own code raised while it was loaded; ``step`` says where."""

    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"{step}: {type(error).__name__}: {error}")
        self.step = step
        self.error = error


@dataclass
class EntryScript:
    """What opt_neuron.py does before it builds the evaluator."""

    imports: list[str] = field(default_factory=list)  # model modules, in the script's order
    args: list[Any] = field(default_factory=list)  # literal arguments after the key
    kwargs: dict[str, Any] = field(default_factory=dict)
    create_key: str | None = None  # the literal key of evaluator.create('<KEY>', ...)
    creates_evaluator: bool = False  # an evaluator.create(...) call was found
    syntax_error: str | None = None  # why the source is not Python 3, when it is not
    # The script's command line as its argparse declares it: option string -> dest.
    options: dict[str, str] = field(default_factory=dict)
    # Keyword arguments of the optimisation's ``run(...)`` taken from the command line:
    # keyword -> dest (``continue_cp=args.resume`` gives {"continue_cp": "resume"}).
    run_options: dict[str, str] = field(default_factory=dict)


def read_entry_script(source: str) -> EntryScript:
    """The model imports and the ``evaluator.create`` call of an opt_neuron.py source.

    A script that does not parse (Python 2) gives an empty EntryScript: the loader then
    imports ``model.evaluator`` alone and calls ``create`` with the key.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        return EntryScript(syntax_error=f"line {error.lineno}: {error.msg}")
    except (ValueError, MemoryError, RecursionError) as error:
        return EntryScript(syntax_error=f"{type(error).__name__}: {error}")
    script = EntryScript()
    create_call = None
    # Statements in source order; nodes inside `if`/`try` at module level count too.
    for statement in tree.body:
        for node in ast.walk(statement):
            if create_call is None and _is_evaluator_create(node):
                create_call = node
        if create_call is not None:
            break
        for module in _model_imports(statement):
            if module not in script.imports:
                script.imports.append(module)
    if create_call is not None:
        script.creates_evaluator = True
        _read_create_call(create_call, script)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "add_argument":
                _read_argument(node, script)
            elif node.func.attr == "run":
                _read_run_call(node, script)
    return script


def load_evaluator(run_folder: Path, key: str) -> tuple[Any, EntryScript]:
    """The evaluator of the model in ``run_folder``, made as its opt_neuron.py makes it.

    Changes this process's working directory and ``sys.path``, as a run of the script
    would. Raises ModelCodeError when the model's code fails.
    """
    run_folder = run_folder.resolve()
    os.chdir(run_folder)
    if sys.path[:1] != [str(run_folder)]:
        sys.path.insert(0, str(run_folder))
    entry = run_folder / ENTRY_SCRIPT
    script = (
        read_entry_script(entry.read_text(encoding="utf-8", errors="replace"))
        if entry.is_file()
        else EntryScript()
    )
    for module in script.imports or [EVALUATOR_MODULE]:
        _model_step(f"importing {module}", lambda module=module: importlib.import_module(module))
    evaluator_module = _model_step(
        f"importing {EVALUATOR_MODULE}", lambda: importlib.import_module(EVALUATOR_MODULE)
    )
    create = getattr(evaluator_module, "create", None)
    if not callable(create):
        raise ModelCodeError(
            "reading model/evaluator.py", AttributeError("model/evaluator.py has no create()")
        )
    evaluator = _model_step(
        f"evaluator.create('{key}')", lambda: create(key, *script.args, **script.kwargs)
    )
    return evaluator, script


def _model_step(step: str, call):
    try:
        return call()
    except BaseException as error:  # SystemExit from a model is a failure too
        raise ModelCodeError(step, error) from error


def _model_imports(statement: ast.stmt) -> list[str]:
    found = []
    for node in ast.walk(statement):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == MODEL_PACKAGE:
                # `from model import evaluator, template`: the submodules named.
                found += [f"{MODEL_PACKAGE}.{alias.name}" for alias in node.names]
            elif node.module.startswith(f"{MODEL_PACKAGE}."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name == MODEL_PACKAGE or alias.name.startswith(f"{MODEL_PACKAGE}.")
            ]
    return [name for name in found if name.count(".") <= 1 and not name.endswith(".*")]


def _is_evaluator_create(node: ast.AST) -> bool:
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "create"
    ):
        return False
    owner = node.func.value
    owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return owner_name == "evaluator"


def _read_create_call(node: ast.Call, script: EntryScript) -> None:
    positional = [_literal(argument) for argument in node.args]
    keywords = {
        keyword.arg: _literal(keyword.value) for keyword in node.keywords if keyword.arg is not None
    }
    if "etype" in keywords:
        key = keywords.pop("etype")
    elif positional:
        key, positional = positional[0], positional[1:]
    else:
        key = _NOT_LITERAL
    script.create_key = key if isinstance(key, str) else None
    for value in positional:
        if value is _NOT_LITERAL:
            break  # later positional arguments would shift
        script.args.append(value)
    script.kwargs = {name: value for name, value in keywords.items() if value is not _NOT_LITERAL}


_NOT_LITERAL = object()


def _read_argument(node: ast.Call, script: EntryScript) -> None:
    """One ``parser.add_argument('--x', '--y', dest=...)``: its option strings and dest."""
    strings = [_literal(argument) for argument in node.args]
    flags = [value for value in strings if isinstance(value, str) and value.startswith("-")]
    if not flags:
        return
    dest = next(
        (_literal(keyword.value) for keyword in node.keywords if keyword.arg == "dest"), None
    )
    if not isinstance(dest, str):
        # argparse's own rule: the first long option, else the first short one.
        first = next((flag for flag in flags if flag.startswith("--")), flags[0])
        dest = first.lstrip("-").replace("-", "_")
    for flag in flags:
        script.options.setdefault(flag, dest)


def _read_run_call(node: ast.Call, script: EntryScript) -> None:
    """``opt.run(max_ngen=args.max_ngen, continue_cp=args.resume, ...)``: keyword -> dest."""
    for keyword in node.keywords:
        value = keyword.value
        if keyword.arg and isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name):
            script.run_options.setdefault(keyword.arg, value.attr)


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL
