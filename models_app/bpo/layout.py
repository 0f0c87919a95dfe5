"""What belongs in an optimisation folder, and what never travels with it.

See docs/optimisation-folder.md section 1 for the layout.
"""

from pathlib import Path

CONFIG_DIR = "config"
MODEL_DIR = "model"
MORPHOLOGY_DIR = "morphology"
MECHANISMS_DIR = "mechanisms"
CHECKPOINTS_DIR = "checkpoints"
FIGURES_DIR = "figures"

ENTRY_SCRIPT = "opt_neuron.py"  # runs the optimisation: evaluator.create('<KEY>', ...)
INIT_SCRIPT = "init.py"  # the run package's launcher, which NSG runs as `python3 init.py`
EVALUATOR_MODULE = "evaluator.py"
MECHANISM_SUFFIX = ".mod"

# The four configuration files, by kind; each is {KEY: ...} with the same KEY.
CONFIG_FILES = {
    "features": "features.json",
    "parameters": "parameters.json",
    "protocols": "protocols.json",
    "morph": "morph.json",
}

# Added by archivers on macOS; never part of a model.
ARCHIVER_LITTER = frozenset({"__MACOSX", ".DS_Store"})
# Folder names nrnivmodl compiles mechanisms into, one per machine architecture.
COMPILED_DIR_NAMES = frozenset({"x86_64", "aarch64", "arm64", "i686", "i386", "umac", "powerpc"})
# Never copied into a run package: caches, version control, interpreter and IPython state.
_NEVER_COPIED_NAMES = ARCHIVER_LITTER | {"__pycache__", ".ipython", ".git", ".ipynb_checkpoints"}


def config_path(root: Path, kind: str) -> Path:
    """The path of one of the four config files (kind: features, parameters, protocols, morph)."""
    return root / CONFIG_DIR / CONFIG_FILES[kind]


def is_archiver_litter(name: str) -> bool:
    """True for macOS archiver additions: ``__MACOSX``, ``.DS_Store`` and ``._*`` resource forks."""
    return name in ARCHIVER_LITTER or name.startswith("._")


def is_never_copied(path: Path) -> bool:
    """True for a file or folder that is never part of a model's runnable copy."""
    name = path.name
    return (
        name in _NEVER_COPIED_NAMES
        or is_archiver_litter(name)
        or name.endswith((".pyc", ".pyo"))
        or path.is_symlink()  # a link could point anywhere; copies hold real files only
        or (path.is_dir() and is_compiled_mechanisms(path))
    )


def is_compiled_mechanisms(folder: Path) -> bool:
    """True for a folder of mechanisms compiled by nrnivmodl (machine-specific, rebuilt per run)."""
    return (
        folder.name in COMPILED_DIR_NAMES
        or (folder / ".libs").is_dir()
        or (folder / "special").is_file()
    )
