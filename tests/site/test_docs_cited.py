"""Every `docs/...` file the project cites exists, with the sections cited in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A path under the checkout's docs/ (not a URL's /docs/), and what follows on its line.
CITATION = re.compile(r"(?<![\w/.-])docs/([\w./-]*\w)([^\n]*)")
# "§5.4, §5.5" or "section 2" right after the path, before the citation's end.
SECTIONS = re.compile(r"§(\d+(?:\.\d+)*)|section (\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#+\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
CITING_SUFFIXES = {".py", ".html", ".toml", ".md", ".example", ".cfg", ".txt", ".yml"}


def _project_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = [ROOT / name for name in filter(None, listed.split("\0"))]
    return [
        path
        for path in files
        if path.is_file() and (path.suffix in CITING_SUFFIXES or path.name == "Makefile")
    ]


def _citations() -> list[tuple[str, str, list[str]]]:
    """(where, cited path, cited sections) for every citation in the project's files."""
    found = []
    for path in _project_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            rest = re.split(r"[)\]`]|\. ", match.group(2), maxsplit=1)[0]
            sections = [a or b for a, b in SECTIONS.findall(rest)]
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1), sections))
    return found


def test_the_code_cites_the_documents():
    cited = {target for _, target, _ in _citations()}

    assert {"nsg-protocol.md", "optimisation-folder.md"} <= cited


def test_every_cited_document_and_section_exists():
    missing = []
    for where, target, sections in _citations():
        document = ROOT / "docs" / target
        if not document.is_file():
            missing.append(f"{where}: docs/{target} does not exist")
            continue
        headings = set(HEADING.findall(document.read_text(encoding="utf-8")))
        missing += [
            f"{where}: docs/{target} has no section {section}"
            for section in sections
            if section not in headings
        ]

    assert missing == []
