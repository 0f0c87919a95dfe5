"""Compile a model's NMODL mechanisms with nrnivmodl, once per distinct set of .mod files.

nrnivmodl runs in the sandbox (``sandbox``): the .mod files are the model's, and their
VERBATIM blocks are C that the compiler's toolchain handles.

The compiled folder (`x86_64/` or the machine's other architecture name) is cached under
a hash of the .mod files' names and bytes, so a second run or analysis of the same model
reuses it; `install_mechanisms` copies it into a run folder, where NEURON finds it when
it starts with that folder as its working directory.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models_app.bpo import nrn_cxx
from models_app.bpo.errors import BpoError
from models_app.bpo.sandbox import Limits, Sandbox, SandboxError

COMPILE_TIMEOUT_SECONDS = 900
_LOG_TAIL = 20_000


class MechanismCompileError(BpoError):
    summary = "The mechanisms did not compile"

    def __init__(self, problems, *, log: str = "") -> None:
        self.log = log
        super().__init__(problems)


@dataclass(frozen=True)
class CompiledMechanisms:
    digest: str
    folder: Path  # the cache entry; holds the architecture folder (e.g. x86_64/)
    from_cache: bool
    log: str

    @property
    def architecture_folder(self) -> Path:
        return self.folder / architecture()


def architecture() -> str:
    machine = platform.machine()
    return "x86_64" if machine in ("x86_64", "AMD64") else machine


def mod_files(mechanisms_dir: Path) -> list[Path]:
    return sorted(path for path in mechanisms_dir.glob("*.mod") if path.is_file())


def mechanisms_digest(mechanisms_dir: Path) -> str:
    digest = hashlib.sha256()
    digest.update(f"{architecture()}\0{_nrnivmodl()}\0".encode())
    for path in mod_files(mechanisms_dir):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _nrnivmodl() -> str:
    beside_python = Path(sys.executable).parent / "nrnivmodl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nrnivmodl")
    if not found:
        raise MechanismCompileError(["nrnivmodl was not found (is NEURON installed?)"])
    return found


def compile_mechanisms(
    mechanisms_dir: Path, *, cache_dir: Path, sandbox: Sandbox | None = None
) -> CompiledMechanisms:
    """The compiled mechanisms of `mechanisms_dir`, from the cache or compiled now.

    nrnivmodl runs in ``sandbox`` (default: bubblewrap), with only its work folder writable.
    """
    sandbox = sandbox or Sandbox()
    sources = mod_files(mechanisms_dir)
    if not sources:
        raise MechanismCompileError([f"{mechanisms_dir} holds no .mod file"])
    digest = mechanisms_digest(mechanisms_dir)
    entry = cache_dir / digest
    if (entry / architecture()).is_dir():
        log_file = entry / "nrnivmodl.log"
        return CompiledMechanisms(
            digest, entry, True, log_file.read_text() if log_file.exists() else ""
        )

    cache_dir.mkdir(parents=True, exist_ok=True)
    # Compile in a private folder and rename it into place: two processes compiling the
    # same mechanisms at once both succeed, and a half-built entry is never visible.
    work = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache_dir))
    try:
        shutil.copytree(
            mechanisms_dir,
            work / "mechanisms",
            ignore=shutil.ignore_patterns("x86_64", "aarch64", "arm64"),
        )
        env = dict(
            os.environ,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **_precompiled_headers(work / ".pch", len(sources)),
        )
        try:
            completed = sandbox.run(
                [_nrnivmodl(), "mechanisms"],
                cwd=work,
                writable=[work],
                readable=[NRN_CXX],
                env=env,
                limits=Limits.for_runtime(COMPILE_TIMEOUT_SECONDS),
                capture_output=True,
                timeout=COMPILE_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise MechanismCompileError(
                [f"nrnivmodl took more than {COMPILE_TIMEOUT_SECONDS} s"]
            ) from None
        except SandboxError as error:
            raise MechanismCompileError(error.problems) from None
        finally:
            # The cache entry is the worker's again: nothing the sandbox's uid can change.
            sandbox.reclaim([work])
        log = (_text(completed.stdout) + _text(completed.stderr))[-_LOG_TAIL:]
        if completed.returncode != 0 or not (work / architecture()).is_dir():
            failing = sorted(
                {
                    line.split(":")[0].strip()
                    for line in log.splitlines()
                    if ".mod" in line and "rror" in line
                }
            )
            problems = [f"nrnivmodl exited with code {completed.returncode}"]
            problems += [f"see the log for {name}" for name in failing[:10]]
            raise MechanismCompileError(problems, log=log)
        used = len(list((work / ".pch").glob("used-*")))
        if used:
            log += f"\n{PCH_LOG_LINE.format(used=used, files=len(sources))}\n"
        (work / "nrnivmodl.log").write_text(log)
        shutil.rmtree(work / "mechanisms")
        shutil.rmtree(work / ".pch", ignore_errors=True)  # 60 MB of no use once compiled
        try:
            work.rename(entry)
        except OSError:
            if not (entry / architecture()).is_dir():
                raise
        return CompiledMechanisms(digest, entry, False, log)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


PCH_MIN_MOD_FILES = 6
PCH_LOG_LINE = "NEURON's mechanism headers were precompiled; {used} of {files} files used them."
NRN_CXX = Path(nrn_cxx.__file__)


def _precompiled_headers(folder: Path, mod_files: int) -> dict[str, str]:
    """nrnivmodl's ``CXX``: nrn_cxx.py, which compiles NEURON's mechanism headers once per
    build instead of once per .mod file (the same object files, with half the compiling).

    Building the header costs about one and a half compiles, so a model with fewer than
    PCH_MIN_MOD_FILES .mod files compiles as nrnivmodl does alone. make hands ``CXX`` to the
    shell unquoted: with a path that needs quoting, plain g++ too."""
    if mod_files < PCH_MIN_MOD_FILES:
        return {}
    if any(shlex.quote(str(path)) != str(path) for path in (Path(sys.executable), NRN_CXX)):
        return {}
    real = os.environ.get("CXX") or (sysconfig.get_config_var("CXX") or "g++").split()[0]
    return {
        "CXX": f"{sys.executable} {NRN_CXX}",
        nrn_cxx.REAL_CXX: real,
        nrn_cxx.PCH_DIR: str(folder),
    }


def _text(output: bytes | None) -> str:
    return (output or b"").decode("utf-8", "replace")


def install_mechanisms(compiled: CompiledMechanisms, run_folder: Path) -> Path:
    """Copy the compiled architecture folder into `run_folder` (replacing a stale one)."""
    target = run_folder / architecture()
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    shutil.copytree(compiled.architecture_folder, target, symlinks=True)
    return target


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINES_KEPT = 20


def compile_error_lines(log: str) -> list[str]:
    """nrnivmodl's own error lines from its log (NMODL's and the C++ compiler's).

    The lines naming the failing file (``Error: ... in file broken.mod``, ``x.cpp:12: error:``)
    are kept; make's summary and the Python launcher's traceback, which name no .mod file,
    are left out.
    """
    lines = []
    for raw in _ANSI_ESCAPE.sub("", log).splitlines():
        line = raw.strip()
        if (
            "error" not in line.lower()
            or line.startswith(("make:", "make[", "subprocess.", "raise ", "File ", "NOTE:"))
            or "CalledProcessError" in line
        ):
            continue
        if line not in lines:
            lines.append(line)
    return lines[:_ERROR_LINES_KEPT]
