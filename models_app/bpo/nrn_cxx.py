"""The C++ compiler nrnivmodl calls while compiling mechanisms (``CXX``): GCC, with NEURON's
mechanism headers precompiled once instead of parsed again for every .mod file.

Every C++ file nocmodl writes starts with the same ``#include`` lines (``mech_api.h``,
``nrniv_mf.h``, ``neuron/cache/mechanism_range.hpp`` ...): about 80,000 lines that take GCC
0.9 s of the 1.7 s a typical mechanism costs. The first compile of a build turns them into a
precompiled header (``pch.h.gch``, built with that compile's own options); every later file
whose prologue is the same is compiled with ``-include pch.h``. The object files are
byte-for-byte those of a plain compile (tests/bpo/test_mechanism_pch.py and
tests/real/test_mechanisms.py check it):
the header is only used when

- the file's prologue is nothing but comments, ``#include``, ``#define`` and ``#undef`` lines,
  and its includes are the header's, in the same order (anything after them, such as
  ``<vector>``, is read from the file as usual);
- the compiler options, apart from the source and object names, are the header's;
- no header the precompiled one holds mentions a macro the prologue defines or undefines
  before its last include (``NRN_VECTORIZED``, ``nil``, ``PI`` ...), since with the header
  those directives come after the includes instead of among them.

Anything else, and any failure of the header's build, compiles the file exactly as it was
given.

This file runs as a script, in the sandbox, with the standard library only:
``python nrn_cxx.py <compiler arguments>``; ``REBUILD_NRN_CXX_COMPILER`` names the compiler
and ``REBUILD_NRN_CXX_HEADER_DIR`` the folder the header is built in (outside the compiled
folder, which is cached and copied into every run).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REAL_CXX = "REBUILD_NRN_CXX_COMPILER"
PCH_DIR = "REBUILD_NRN_CXX_HEADER_DIR"

_INCLUDE = re.compile(r"#\s*include\s+(\S.*?)\s*$")
_MACRO = re.compile(r"#\s*(?:define|undef)\s+([A-Za-z_]\w*)")
_PROLOGUE_LINES = 200
NOCMODL_MARK = "/* Created by Language version:"
WAIT_SECONDS = 120  # for the header; then the file is compiled without it


def prologue(source: Path) -> tuple[list[str], set[str]] | None:
    """The includes up to the last quoted one, and the macros (re)defined before it; None
    when the file is not nocmodl's or does not start with a plain prologue."""
    includes: list[str] = []
    macros: list[tuple[int, str]] = []  # (number of includes seen before, name)
    try:
        with open(source, encoding="utf-8", errors="replace") as handle:
            lines = [next(handle, "") for _ in range(_PROLOGUE_LINES)]
    except OSError:
        return None
    # nocmodl's mark: nrnivmodl's own mod_func.cpp, compiled first, must not pick the header
    if not lines[0].startswith(NOCMODL_MARK):
        return None
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("//") or (line.startswith("/*") and line.endswith("*/")):
            continue
        if match := _INCLUDE.match(line):
            includes.append(match.group(1))
        elif match := _MACRO.match(line):
            macros.append((len(includes), match.group(1)))
        elif line.startswith("#"):
            return None  # a conditional or a pragma: not a prologue this recognises
        else:
            break
    quoted = [index for index, name in enumerate(includes) if name.startswith('"')]
    if not quoted:
        return None
    last = quoted[-1] + 1
    return includes[:last], {name for seen, name in macros if seen < last}


def _compile_arguments(arguments: list[str]) -> tuple[Path, list[str]] | None:
    """The C++ source of a ``-c SOURCE -o OBJECT`` compile, and the other options."""
    if "-c" not in arguments or "-o" not in arguments:
        return None
    sources = [a for a in arguments if a.endswith(".cpp") and not a.startswith("-")]
    if len(sources) != 1:
        return None
    out = arguments.index("-o")
    others = [
        a
        for i, a in enumerate(arguments)
        if a not in ("-c", sources[0]) and i not in (out, out + 1)
    ]
    return Path(sources[0]), others


def _is_gcc(compiler: list[str]) -> bool:
    try:
        banner = subprocess.run(
            [*compiler, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Free Software Foundation" in banner and "clang" not in banner.lower()


def _build(
    compiler: list[str], folder: Path, includes: list[str], macros: set[str], options: list[str]
) -> None:
    header = folder / "pch.h"
    header.write_text("".join(f"#include {name}\n" for name in includes))
    partial = folder / "pch.h.gch.partial"
    completed = subprocess.run(
        [*compiler, *options, "-x", "c++-header", str(header), "-o", str(partial)]
        + ["-MD", "-MF", str(folder / "pch.d")],
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-2000:])
    partial.rename(folder / "pch.h.gch")
    headers = (folder / "pch.d").read_text().replace("\\\n", " ").split(":", 1)[1].split()[1:]
    # The headers are read once, here, for the macros of this prologue: nocmodl's files
    # all set the same few, so the other compiles need not read them again.
    mentioned = _mentioned(headers, macros)
    document = {
        "includes": includes,
        "options": options,
        "headers": headers,
        "macros_mentioned": sorted(mentioned),
        "macros_not_mentioned": sorted(macros - mentioned),
    }
    ready = folder / "ready.json.partial"
    ready.write_text(json.dumps(document))
    ready.rename(folder / "ready.json")


def _mentioned(headers: list[str], macros: set[str]) -> set[str]:
    """The macros of ``macros`` that some of ``headers`` names (all of them if one is
    unreadable)."""
    if not macros:
        return set()
    mentions = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(macros))) + r")\b")
    found: set[str] = set()
    for name in headers:
        try:
            found.update(mentions.findall(Path(name).read_text(encoding="utf-8", errors="replace")))
        except OSError:
            return set(macros)
    return found


def _usable(folder: Path, includes: list[str], macros: set[str], options: list[str]) -> bool:
    try:
        ready = json.loads((folder / "ready.json").read_text())
    except (OSError, ValueError):
        return False  # being built, or its build failed
    if ready["includes"] != includes or ready["options"] != options:
        return False
    if macros & set(ready["macros_mentioned"]):
        return False
    unknown = macros - set(ready["macros_not_mentioned"])
    return not _mentioned(ready["headers"], unknown)


def arguments_for(compiler: list[str], arguments: list[str]) -> tuple[list[str], Path | None]:
    """The arguments to call ``compiler`` with: ``arguments``, plus ``-include pch.h`` when
    the precompiled header applies (building it when this is the first compile); and the
    slot to free once a compile made while the header is being built is over."""
    folder_name = os.environ.get(PCH_DIR)
    parsed = _compile_arguments(arguments)
    if not folder_name or parsed is None:
        return arguments, None
    source, options = parsed
    found = prologue(source)
    if found is None:
        return arguments, None
    includes, macros = found
    folder = Path(folder_name)
    folder.mkdir(parents=True, exist_ok=True)
    if _claim(folder / "claimed"):
        try:
            if not _is_gcc(compiler):
                raise RuntimeError("the compiler is not GCC")
            _build(compiler, folder, includes, macros, options)
        except (OSError, RuntimeError, IndexError, subprocess.SubprocessError) as error:
            (folder / "failed").touch()
            print(f"nrn_cxx: no precompiled header ({error}); compiling as usual", file=sys.stderr)
            return arguments, None
    else:
        slot = _wait_for_header(folder)
        if slot is not None:
            return arguments, slot
    if not _usable(folder, includes, macros, options):
        return arguments, None
    (folder / f"used-{source.name}").touch()  # what the build log does not say: for the tests
    return ["-include", str(folder / "pch.h"), *arguments], None


def _claim(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _wait_for_header(folder: Path) -> Path | None:
    """Wait until the header is built (or failed), or a slot to compile without it is free:
    None, or the slot. ``make -j 4`` runs four compiles; while one builds the header, one
    compile per other core goes on without it and the rest wait, since the header halves
    their cost."""
    slots = [folder / f"plain-{number}" for number in range(max(1, _cores() - 1))]
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if (folder / "ready.json").exists() or (folder / "failed").exists():
            return None
        for slot in slots:
            if _claim(slot):
                return slot
        time.sleep(0.05)
    return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def main(argv: list[str]) -> int:
    compiler = shlex.split(os.environ.get(REAL_CXX) or "g++")
    arguments, slot = arguments_for(compiler, argv)
    command = [*compiler, *arguments]
    if slot is None:
        os.execvp(command[0], command)
    try:
        return subprocess.run(command).returncode
    finally:
        slot.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
