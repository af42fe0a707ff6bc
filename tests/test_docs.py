"""The docs cannot rot: no references to documents outside the repository, and every `lct.…` name that
docs/*.md puts in backticks resolves."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join(["SP" + "EC", "STY" + "LE", "AUTHORS" + "_CODE", r"\.no" + "tes", "CON" + "TRACT"]))
NAME = re.compile(r"`[^`\n]*?\b(lct(?:\.[A-Za-z_]\w*)+)")


def tracked_text_files():
    """Every tracked text file except .gitignore (which keeps private notes directories out of git)."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in out.splitlines():
        path = ROOT / rel
        if path.is_file() and rel != ".gitignore":
            try:
                yield rel, path.read_text()
            except UnicodeDecodeError:  # binary assets
                continue


def resolve(dotted: str):
    """The object a dotted name means: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_no_references_outside_the_repository():
    hits = [
        f"{rel}:{n}: {line.strip()}"
        for rel, text in tracked_text_files()
        for n, line in enumerate(text.splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "references to documents outside the repository:\n" + "\n".join(hits)


DOC_NAMES = sorted({(md.name, m) for md in (ROOT / "docs").glob("*.md") for m in NAME.findall(md.read_text())})


def test_docs_name_code():
    assert {doc for doc, _ in DOC_NAMES} == {"method.md", "architecture.md", "records.md"}


@pytest.mark.parametrize("doc,name", DOC_NAMES, ids=[f"{d}:{n}" for d, n in DOC_NAMES])
def test_docs_names_resolve(doc, name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"docs/{doc} names `{name}`, which does not resolve: {err}")
