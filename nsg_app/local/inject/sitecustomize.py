"""Loaded at start-up by every Python process of a local run: this folder is first on its PYTHONPATH.

Inert unless REBUILD_LOCAL_CORES is set; then rebuild_local_optimisation waits for the process
to import bluepyopt (see its docstring). A sitecustomize further down sys.path (a Python
distribution's own) is hidden by this one, so it is run afterwards.
"""

import os
import sys


def _run_hidden_sitecustomize() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    search = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
    if spec is None or spec.loader is None or spec.origin == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if os.environ.get("REBUILD_LOCAL_CORES"):
    import rebuild_local_optimisation

    rebuild_local_optimisation.activate()

_run_hidden_sitecustomize()
