"""Build small optimisation folders and archives in code, for the bpo tests."""

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

KEY = "CA1_PC_test"
NAME = "CA1_pyr_cACpyr_testcell_20170915113621"
MORPHOLOGY = "testcell.asc"

TEMPLATE_PY = '''"""Cell template of a legacy model (its replace_axon signature predates axon_stub_length)."""

from bluepyopt.ephys.morphologies import NrnFileMorphology


class NrnFileMorphologyCustom(NrnFileMorphology):
    @staticmethod
    def replace_axon(sim=None, icell=None):
        """Replace axon"""
        return None
'''

OPT_NEURON_PY = """import os
import model

# evaluator = model.evaluator.create('CA1PC_old', cvode_active=True)
evaluator = model.evaluator.create('{key}', cvode_active=True, dt=0.025)


def main():
    print("optimising", os.getcwd())
"""

LEAK_MOD = """NEURON {
    SUFFIX leak
    NONSPECIFIC_CURRENT i
    RANGE g, e
}
PARAMETER { g = 0.001 (S/cm2) e = -65 (mV) }
ASSIGNED { v (mV) i (mA/cm2) }
BREAKPOINT { i = g*(v - e) }
"""

HD_MOD = """NEURON {
    SUFFIX hd
    NONSPECIFIC_CURRENT i
    RANGE ghdbar
}
PARAMETER { ghdbar = 0.0001 (S/cm2) ehd = -30 (mV) }
ASSIGNED { v (mV) i (mA/cm2) }
BREAKPOINT { i = ghdbar*(v - ehd) }
"""

MORPHOLOGY_ASC = """("CellBody" (Color Red) (CellBody)
  (0 0 0 10) (5 0 0 10) (0 5 0 10))
"""


def features_content() -> dict:
    return {
        "step_0.2": {
            "soma": {
                "voltage_base": [-69.2, 4.4],
                "Spikecount": [1.5, 2.0],
            }
        },
        "step_-0.8": {"soma": {"voltage_deflection": [-19.3, 4.7]}},
        "bAP": {"dend150": {"AP1_amp": [61.6, 20]}},
    }


def protocols_content() -> dict:
    holding = {"delay": 0.0, "amp": 0.0, "duration": 1131.0, "totduration": 1131.0}
    return {
        "bAP": {
            "stimuli": [{"delay": 531, "amp": 1.0, "duration": 10, "totduration": 600}],
            "extra_recordings": [
                {
                    "var": "v",
                    "somadistance": 150,
                    "type": "somadistance",
                    "name": "dend150",
                    "seclist_name": "apical",
                }
            ],
        },
        "step_-0.8": {
            "stimuli": [
                {"delay": 531.0, "amp": -0.8, "duration": 400.0, "totduration": 1131.0},
                dict(holding),
            ]
        },
        "step_0.2": {
            "stimuli": [
                {"delay": 531.0, "amp": 0.2, "duration": 400.0, "totduration": 1131.0},
                dict(holding),
            ]
        },
    }


def parameters_content() -> dict:
    return {
        "mechanisms": {"all": ["pas", "leak"], "somatic": ["hd"], "alldend": ["hd"]},
        "distributions": {"linear_hd_apic": "(1. + 3./100. * {distance})*{value}"},
        "fixed": {
            "global": [["v_init", -70], ["celsius", 34]],
            "all": [["cm", 1, "secvar"], ["ena", 50, "secvar"]],
        },
        "optimized": {
            "axonal": [["gbar_nax", 0.1, 0.4, "uniform"], ["Ra", 50, 100, "secvar"]],
            "somatic": [["g_pas", 5e-06, 0.0001, "uniform"]],
            "alldend": [["ghdbar_hd", 5e-06, 2e-05, "linear_hd_apic"]],
        },
    }


def config_documents(key: str = KEY) -> dict[str, dict]:
    return {
        "features": {key: features_content()},
        "parameters": {key: parameters_content()},
        "protocols": {key: protocols_content()},
        "morph": {key: MORPHOLOGY},
    }


def write_json(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=4), encoding="utf-8")


def write_optimisation(parent: Path, *, name: str = NAME, key: str = KEY) -> Path:
    """A small valid optimisation folder, with the run leftovers a real one carries."""
    root = parent / name
    for kind, document in config_documents(key).items():
        write_json(root / "config" / f"{kind}.json", document)
    files = {
        "opt_neuron.py": OPT_NEURON_PY.format(key=key),
        "__init__.py": "",
        "zipfolder.py": "# helper shipped with some models\n",
        "README.txt": "not packaged\n",
        "model/__init__.py": "from . import evaluator, template\n",
        "model/evaluator.py": "def create(etype, cvode_active=True, dt=0.025):\n    return etype\n",
        "model/template.py": TEMPLATE_PY,
        "model/analysis.py": "def analyse_cp(**kwargs):\n    return None\n",
        f"morphology/{MORPHOLOGY}": MORPHOLOGY_ASC,
        "mechanisms/leak.mod": LEAK_MOD,
        # Left out of a run package:
        "checkpoints/run1.pkl": "old checkpoint",
        "checkpoints/cell_run1_0.hoc": "// old cell",
        "figures/neuron_evolution_run1.pdf": "%PDF-1.4 old figure",
        "r_run1_0/step_0.2.soma.v.txt": "0.0 -70.0\n0.1 -70.0\n",
        "tools/get_stats.py": "print('stats')\n",
        "x86_64/special": "#!/bin/sh\n",
        "x86_64/.libs/libnrnmech.so": "binary",
        "mechanisms/x86_64/leak.o": "binary",
        "model/__pycache__/template.cpython-311.pyc": "bytecode",
        ".ipython/profile_default/ipython_config.py": "c = 1\n",
        ".DS_Store": "finder",
        "mechanisms/.DS_Store": "finder",
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def write_runnable_optimisation(parent: Path, *, name: str = NAME, key: str = KEY) -> Path:
    """``write_optimisation`` plus hd.mod: every mechanism parameters.json names is defined."""
    root = write_optimisation(parent, name=name, key=key)
    (root / "mechanisms" / "hd.mod").write_text(HD_MOD, encoding="utf-8")
    return root


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_folder(folder: Path, *, prefix: str | None = None) -> bytes:
    """Zip ``folder``'s files under ``prefix/`` (default: the folder's name)."""
    prefix = folder.name if prefix is None else prefix
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            relative = path.relative_to(folder).as_posix()
            entries.append((f"{prefix}/{relative}" if prefix else relative, path.read_bytes()))
    return zip_bytes(entries)


def symlink_zip_entry(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def tar_bytes(
    entries: list[tuple[tarfile.TarInfo, bytes | None]], *, mode: str = "w:gz", **options
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, **options) as archive:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def tar_file(name: str, data: bytes, *, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def tar_special(name: str, kind: bytes, *, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def patch_zip_headers(
    data: bytes, *, file_size: int | None = None, flags: int | None = None
) -> bytes:
    """Falsify the first entry's declared size or flags, in its local and central headers."""
    patched = bytearray(data)
    local = patched.find(b"PK\x03\x04")
    central = patched.find(b"PK\x01\x02")
    if file_size is not None:
        patched[local + 22 : local + 26] = file_size.to_bytes(4, "little")
        patched[central + 24 : central + 28] = file_size.to_bytes(4, "little")
    if flags is not None:
        patched[local + 6 : local + 8] = flags.to_bytes(2, "little")
        patched[central + 8 : central + 10] = flags.to_bytes(2, "little")
    return bytes(patched)
