"""nrnivmodl with NEURON's headers precompiled (models_app/bpo/nrn_cxx.py): the very same
objects as a plain build, and a plain compile wherever the header could change a file."""

import re
import subprocess
from pathlib import Path

import pytest

from models_app.bpo import mechanisms, nrn_cxx
from tests.fixtures.demo import DEMO_FOLDER
from tests.fixtures.mechanisms import built_files, compiled_both_ways

pytestmark = pytest.mark.slow


@pytest.fixture
def many_mechanisms(tmp_path) -> Path:
    """The demo's hd.mod as eight mechanisms of their own (a real model has about a dozen)."""
    folder = tmp_path / "mechanisms"
    folder.mkdir()
    text = (DEMO_FOLDER / "mechanisms" / "hd.mod").read_text()
    assert "SUFFIX hd\n" in text
    for number in range(8):
        (folder / f"hd{number}.mod").write_text(text.replace("SUFFIX hd\n", f"SUFFIX hd{number}\n"))
    return folder


def test_mechanisms_build_to_the_same_bytes_with_the_header(tmp_path, many_mechanisms):
    plain, pch, used = compiled_both_ways(many_mechanisms, tmp_path / "builds")
    plain_files, pch_files = built_files(plain), built_files(pch)
    assert len(plain_files) == 8 + 2  # the mechanisms, mod_func.o, libnrnmech.so
    assert pch_files == plain_files
    # one file per other core compiled without it while the header was built
    assert len(used) >= 4 and {Path(name).stem for name in used} <= {
        path.stem for path in many_mechanisms.glob("*.mod")
    }


def test_the_site_s_compile_uses_the_header_in_the_sandbox(tmp_path, many_mechanisms):
    compiled = mechanisms.compile_mechanisms(many_mechanisms, cache_dir=tmp_path / "cache")
    assert (compiled.architecture_folder / "libnrnmech.so").is_file()
    line = re.search(r"precompiled; (\d+) of (\d+) files used them", compiled.log)
    assert line and int(line[2]) == 8 and int(line[1]) >= 4, compiled.log[-2000:]
    assert not list(compiled.folder.rglob("*.gch"))  # the header is not kept in the cache


def test_a_model_with_few_mechanisms_compiles_as_nrnivmodl_does_alone(tmp_path):
    assert mechanisms._precompiled_headers(tmp_path, 1) == {}  # the demo's one .mod file
    many = mechanisms._precompiled_headers(tmp_path, mechanisms.PCH_MIN_MOD_FILES)
    assert many[nrn_cxx.PCH_DIR] == str(tmp_path) and "nrn_cxx.py" in many["CXX"]


def _compile(tmp_path: Path, source: str, header: str) -> list[str]:
    """Compile ``source`` (with ``a.h`` beside it) through nrn_cxx; the arguments g++ got."""
    (tmp_path / "a.h").write_text(header)
    (tmp_path / "main.cpp").write_text(source)
    arguments = ["-O2", "-std=c++17", f"-I{tmp_path}", "-c", str(tmp_path / "main.cpp")]
    arguments += ["-o", str(tmp_path / "main.o")]
    given, slot = nrn_cxx.arguments_for(["g++"], arguments)
    assert slot is None
    subprocess.run(["g++", *given], check=True, cwd=tmp_path)
    return given


@pytest.fixture
def pch_folder(tmp_path, monkeypatch):
    folder = tmp_path / "pch"
    monkeypatch.setenv(nrn_cxx.PCH_DIR, str(folder))
    return folder


SOURCE = nrn_cxx.NOCMODL_MARK + ' 7.7.0 */\n#define SCALE 3\n#include <math.h>\n#include "a.h"\n'
SOURCE += "int twice() { return 2 * a; }\n"


def test_a_header_that_reads_a_macro_of_the_prologue_is_not_precompiled_in(tmp_path, pch_folder):
    # a.h reads SCALE, which the prologue defines before including it: with the header
    # included first, a.h would see no SCALE.
    header = "#pragma once\n#ifdef SCALE\nstatic int a = SCALE;\n#else\nstatic int a = 1;\n#endif\n"
    given = _compile(tmp_path, SOURCE, header)
    assert "-include" not in given


def test_a_header_independent_of_the_prologue_s_macros_is_used(tmp_path, pch_folder):
    header = "#pragma once\nstatic int a = 5;\n"
    given = _compile(tmp_path, SOURCE, header)
    assert given[:2] == ["-include", str(pch_folder / "pch.h")]
    assert (pch_folder / "pch.h").read_text() == '#include <math.h>\n#include "a.h"\n'
    # a second file with the same prologue and options uses the header built by the first
    again = _compile(tmp_path, SOURCE.replace("2 * a", "3 * a"), header)
    assert again[:2] == ["-include", str(pch_folder / "pch.h")]


def test_a_prologue_with_a_conditional_or_other_includes_compiles_plainly(tmp_path, pch_folder):
    header = "#pragma once\nstatic int a = 5;\n"
    not_nocmodl_s = SOURCE.split("\n", 1)[1]  # nrnivmodl's own mod_func.cpp, for example
    given = _compile(tmp_path, not_nocmodl_s, header)
    assert "-include" not in given and not pch_folder.exists()
    _compile(tmp_path, SOURCE, header)  # builds the header
    conditional = SOURCE.replace("#define SCALE 3\n", "#if 1\n#endif\n")
    given = _compile(tmp_path, conditional, header)
    assert "-include" not in given
    other = SOURCE.replace("#include <math.h>\n", "#include <stdlib.h>\n")
    given = _compile(tmp_path, other, header)
    assert "-include" not in given


def test_without_a_folder_for_the_header_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.delenv(nrn_cxx.PCH_DIR, raising=False)
    arguments = ["-O2", "-c", str(tmp_path / "x.cpp"), "-o", "x.o"]
    assert nrn_cxx.arguments_for(["g++"], arguments) == (arguments, None)
    linking = ["-shared", "a.o", "-o", "libx.so"]
    monkeypatch.setenv(nrn_cxx.PCH_DIR, str(tmp_path / "pch"))
    assert nrn_cxx.arguments_for(["g++"], linking) == (linking, None)
