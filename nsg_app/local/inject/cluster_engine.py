"""What runs on each ipyparallel engine before a run's evaluations reach it.

The runner (``nsg_app.local.cluster``) and the run's own process (``rebuild_local_optimisation``,
for an engine that joins during the run) send this file's source to the engines and call
``rebuild_prepare_engine`` there. It is sent as source, not as a function object, because
ipyparallel ships a function by its module name and an engine cannot import the project.

The engine then evaluates the model's individuals the way ``opt_neuron.py`` does in its own
folder: the run's top folder is the working folder and first on ``sys.path`` (the model's
pickled evaluator names classes of its ``model`` package and absolute morphology paths), and
the package's compiled mechanisms are loaded into NEURON. NEURON never unloads mechanisms, so
an engine that holds another package's mechanisms cannot serve this run: the answer says so.

Standard library only (and NEURON, on the engine).
"""

import os
import socket
import sys

# Kept in the engine's namespace: the mechanisms it loaded (one set per process, for good)
# and the run folder it was last prepared for.
_REBUILD_LOADED_KEY = "_rebuild_cluster_mechanisms"
_REBUILD_TOP_KEY = "_rebuild_cluster_top"


def rebuild_prepare_engine(top, digest):
    """Make this engine ready to evaluate the run in ``top``; a dict says how it went.

    ``digest`` names the package's compiled mechanisms (None: the package has none).
    """
    answer = {
        "ok": False,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "neuron": None,
        "message": "",
    }
    if not os.path.isdir(top):
        answer["message"] = (
            f"cannot see the run folder {top}: the engines must see it at the same path "
            "(a shared folder)"
        )
        return answer
    try:
        import neuron
    except Exception as error:  # ImportError, or NEURON failing to start
        answer["message"] = f"cannot import neuron: {type(error).__name__}: {error}"
        return answer
    answer["neuron"] = getattr(neuron, "__version__", "?")
    namespace = sys.modules["__main__"].__dict__
    loaded = namespace.get(_REBUILD_LOADED_KEY)
    if digest is not None and loaded != digest:
        if loaded is not None:
            answer["message"] = (
                "already holds the compiled mechanisms of another package (NEURON cannot "
                "unload them): restart this engine"
            )
            return answer
        try:
            found = neuron.load_mechanisms(top, warn_if_already_loaded=False)
        except Exception as error:
            found = False
            answer["message"] = f"{type(error).__name__}: {error}"
        if not found:
            answer["message"] = (
                f"cannot load the compiled mechanisms in {top}. {answer['message']}"
            ).strip()
            return answer
        namespace[_REBUILD_LOADED_KEY] = digest
    # An earlier run's model package must not answer for this one's.
    for name in [name for name in sys.modules if name == "model" or name.startswith("model.")]:
        del sys.modules[name]
    earlier = namespace.get(_REBUILD_TOP_KEY)
    sys.path[:] = [entry for entry in sys.path if entry not in (earlier, top)]
    sys.path.insert(0, top)
    os.chdir(top)
    namespace[_REBUILD_TOP_KEY] = top
    answer["ok"] = True
    return answer
