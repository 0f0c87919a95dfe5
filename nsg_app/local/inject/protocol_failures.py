"""What a user is told when a BluePyOpt protocol fails: its name and NEURON's own error.

BluePyOpt wraps every failure of a protocol in ``SweepProtocolException("Failed to run
Neuron Sweep Protocol")``; the error that says what went wrong (NEURON's "argument not a
density mechanism name.: kdr", a model's TypeError ...) is its cause. When the protocol ran
isolated (``isolate=True``, the HBP models' default) that cause is only a traceback text
from the child process; ``rebuild_local_optimisation`` then runs the protocol once more in
its own process to get the error itself.

Standard library only, and here rather than in ``models_app.bpo``: the processes of a local
run import it as a top-level module (this folder is on their PYTHONPATH, the project is
not). The analysis engine's simulation process uses the same functions.
"""

from __future__ import annotations

import json
import os

# The message of BluePyOpt's wrapper, and the type pebble gives an isolated child's trace.
SWEEP_FAILURE_MESSAGE = "Failed to run Neuron Sweep Protocol"
_WRAPPERS = frozenset({"SweepProtocolException"})
_REMOTE_TRACEBACK = "RemoteTraceback"
_MAX_CHAIN = 20


def error_chain(error: BaseException) -> list[list[str]]:
    """``[[type name, message], ...]``: ``error`` first, then what caused it, in order."""
    chain: list[list[str]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(current))
        chain.append([type(current).__name__, " ".join(str(current).split())])
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None
    return chain


def is_wrapped_failure(chain: list[list[str]]) -> bool:
    """Whether the chain holds nothing but BluePyOpt's wrapper (and an isolated child's text)."""
    return all(kind in _WRAPPERS or kind == _REMOTE_TRACEBACK for kind, _ in chain)


def underlying_error(chain: list[list[str]]) -> str:
    """``Type: message`` of the first error in the chain that is not BluePyOpt's wrapper.

    The first, not the last: BluePyOpt re-raises NEURON's errors with the name they concern
    added ("argument not a density mechanism name.: kdr" caused by the same words without
    the name).
    """
    for kind, message in chain:
        if kind not in _WRAPPERS and kind != _REMOTE_TRACEBACK:
            return f"{kind}: {message}" if message else kind
    if chain:
        kind, message = chain[0]
        return f"{kind}: {message}" if message else kind
    return "an unknown error"


def protocol_failure_message(protocol: str, chain: list[list[str]]) -> str:
    """``Protocol step_0.2 failed: ValueError: argument not a density mechanism name.: kdr``."""
    return f"Protocol {protocol} failed: {underlying_error(chain)}"


def failure_document(protocol: str, chain: list[list[str]], traceback_text: str = "") -> dict:
    """What is written to a failure file: the protocol, the chain and the message."""
    return {
        "protocol": protocol,
        "chain": chain,
        "message": protocol_failure_message(protocol, chain),
        "traceback": traceback_text,
    }


def write_first_failure(path: str | os.PathLike[str], document: dict) -> bool:
    """Write ``document`` to ``path`` unless a failure is there already; True if written.

    Several evaluation workers may fail at once: the first one to finish writing is kept,
    whole (written under a name of its own, then linked into place).
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=1)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True
