"""The import rules of docs/architecture.md hold: every import in src/lct (at module level and inside functions)
goes to an allowed layer, and the module graph has no cycle. The table below is the doc's table, parsed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"
FRAMEWORKS = ("lightning", "pytorch_lightning", "hydra", "omegaconf")

# layer: (the lct layers it may import, the frameworks it may import); its own layer is always allowed.
LAYERS = {
    "base": (set(), set()),
    "core": ({"base"}, set()),
    "nn": ({"base", "core"}, set()),
    "data": ({"base", "core"}, {"lightning"}),
    "builders": ({"base", "core", "nn", "data"}, {"hydra", "omegaconf"}),
    "io": ({"base", "core", "nn", "data", "builders"}, {"omegaconf"}),
    "train": ({"base", "core", "nn", "data", "builders", "io"}, {"lightning", "hydra", "omegaconf"}),
    "eval": ({"base", "core", "nn", "data", "builders", "io"}, {"lightning"}),
    "tools": ({"base", "core", "nn", "data", "eval"}, set()),
    "cli": (
        {"base", "core", "nn", "data", "builders", "io", "train", "eval", "tools"},
        {"lightning", "hydra", "omegaconf"},
    ),
    "entry": ({"cli", "tools"}, set()),
}
PACKAGES = {"core", "nn", "data", "io", "train", "eval", "tools", "cli"}


def module_name(path: Path) -> str:
    """src/lct/eval/run.py -> lct.eval.run; a package's __init__.py is the package."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer of an lct module, by its path: the table's `Modules` column."""
    parts = module.split(".")
    if parts[-1] == "__main__" or (len(parts) == 2 and parts[1] not in PACKAGES | {"errors", "builders"}):
        return "entry"  # lct/<command>.py and lct/train/__main__.py: `python -m lct.<command>`
    if len(parts) == 1 or parts[1] == "errors":
        return "base"
    return parts[1]


MODULES = {module_name(p): p for p in sorted((SRC / "lct").rglob("*.py"))}


def imports(module: str) -> list[tuple[str, int]]:
    """(imported name, line) of every import in the module, absolute; `from a import b` is a.b when a.b is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in MODULES else base, node.lineno))
    return found


def lct_target(name: str) -> str | None:
    """The lct module an imported name lives in (its longest module prefix), None outside lct."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in MODULES:
            return ".".join(parts[:cut])
    return None


def graph() -> dict[str, set[str]]:
    return {m: {t for name, _ in imports(m) if (t := lct_target(name)) and t != m} for m in MODULES}


def doc_table() -> dict[str, tuple[set[str], set[str]]]:
    """docs/architecture.md's layer table: layer -> (May import, Frameworks)."""
    text = DOC.read_text().split("## Layers and what may import what", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in text.splitlines() if r.startswith("|") and not r.startswith("|---")][1:]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        words = lambda cell: set(re.findall(r"[a-z_]+", cell.replace("—", "")))  # noqa: E731
        table[cells[0]] = (words(cells[3]), words(cells[4]))
    return table


def test_the_doc_states_the_tests_table():
    assert doc_table() == LAYERS


def test_every_module_has_a_layer_of_the_table():
    assert {layer_of(m) for m in MODULES} <= set(LAYERS)
    assert layer_of("lct.sample") == layer_of("lct.train.__main__") == "entry"
    assert layer_of("lct.errors") == "base" and layer_of("lct.io.checkpoint") == "io"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layer_rules(module):
    layer = layer_of(module)
    allowed, frameworks = LAYERS[layer]
    bad = []
    for name, line in imports(module):
        target = lct_target(name)
        if target is not None and layer_of(target) not in allowed | {layer}:
            bad.append(f"line {line}: {name} ({layer_of(target)})")
        top = name.split(".")[0]
        if target is None and top in FRAMEWORKS and top not in frameworks:
            bad.append(f"line {line}: {name} (framework)")
    assert not bad, f"{module} ({layer}) may import {sorted(allowed)} and {sorted(frameworks)}, not: " + "; ".join(bad)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_layers_are_an_order():
    assert find_cycle({layer: allowed for layer, (allowed, _) in LAYERS.items()}) is None


def test_the_module_graph_has_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
