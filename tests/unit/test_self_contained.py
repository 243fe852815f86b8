"""The repository is self-contained: no line of the README, docs, source, tests, examples, benchmarks, studies or
configs points at a file outside it (a sibling `shared` folder, the project's private spec or audit, an absolute
path)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT

TREES = ("README.md", "docs", "src", "tests", "examples", "benchmarks", "studies", "configs", "mkdocs.yml")
SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg"}
# built from pieces so that this file does not match itself
OUTSIDE = re.compile("|".join([
    r"\.\./" + "shared",
    r"\b" + "SPEC" + r"\.md\b",
    r"\b" + "SPEC" + r" §",
    "FIDELITY" + "-AUDIT",
    r"(?<![\w.~])/(?:" + "|".join(["work", "root", "home", "tmp", "Users"]) + r")/",
]))


def _files() -> list[Path]:
    out: list[Path] = []
    for name in TREES:
        p = ROOT / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES]
    return sorted(out)


def test_no_reference_outside_the_repository():
    files = _files()
    assert len(files) > 50 and any(f.name == "papers.md" for f in files)
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()[:120]}" for f in files
            for i, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert hits == [], "\n".join(hits)
