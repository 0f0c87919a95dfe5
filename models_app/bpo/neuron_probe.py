"""The child side of the import-time NEURON checks: ``python -m models_app.bpo.neuron_probe``.

``mechanisms`` prints the names of the mechanisms built into NEURON; ``morphology PATH``
loads a morphology the way BluePyOpt's NrnFileMorphology does (Import3d) and prints how
many sections NEURON made of it. The answer is one JSON object on the original standard
output; everything NEURON itself prints (its parse errors, hoc tracebacks) is sent to
standard error, where the parent reads NEURON's own words for the user.

Run only as a child process (NEURON's state is global to its process): see
``models_app.bpo.neuron_checks``, which starts it.
"""

from __future__ import annotations

import json
import os
import sys

# Import3d readers BluePyOpt uses, by file extension (bluepyopt.ephys.morphologies).
READERS = {".swc": "Import3d_SWC_read", ".asc": "Import3d_Neurolucida3"}


def built_in_mechanisms(h) -> list[str]:
    """Density mechanisms (type 0) and point processes (type 1) compiled into NEURON."""
    names = []
    for kind in (0, 1):
        mechanism_type = h.MechanismType(kind)
        name = h.ref("")
        for index in range(int(mechanism_type.count())):
            mechanism_type.select(index)
            mechanism_type.selected(name)
            names.append(name[0])
    return names


def read_morphology(h, path: str) -> dict:
    h.load_file("stdrun.hoc")
    h.load_file("import3d.hoc")
    extension = os.path.splitext(path)[1].lower()
    reader = getattr(h, READERS[extension])()
    reader.quiet = 1
    try:
        reader.input(path)
        importer = h.Import3d_GUI(reader, 0)
        importer.instantiate(None)
    except RuntimeError as error:  # a hoc error: its own lines are on standard error
        return {"sections": 0, "error": str(error)}
    return {"sections": sum(1 for _ in h.allsec()), "error": ""}


def main(arguments: list[str]) -> int:
    # Keep the real standard output for the answer; NEURON's C-level prints go to stderr.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from neuron import h

    if arguments == ["mechanisms"]:
        result = {"mechanisms": built_in_mechanisms(h)}
    elif len(arguments) == 2 and arguments[0] == "morphology":
        result = read_morphology(h, arguments[1])
    else:
        print("usage: neuron_probe mechanisms | morphology PATH", file=sys.stderr)
        return 2
    sys.stdout.flush()
    answer.write(json.dumps(result))
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
