"""Imports inside raydal.models and raydal.query run one way (no circles).

A static check of the import graph: every ``import`` / ``from ... import`` in the
package's source, at module level, inside functions or under ``TYPE_CHECKING``,
is an edge. A circle (e.g. registry -> net -> backbones -> registry) means a
module cannot be imported on its own and the layering has a knot.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "raydal"
ACYCLIC_PACKAGES = ("raydal.models", "raydal.query")


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the raydal modules it imports (``from pkg import submodule`` points at the submodule)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # ``import raydal.models.net as x`` style
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]], within: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected components of more than one module among the modules under ``within``."""
    nodes = [n for n in graph if n.startswith(within)]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in nodes:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_circle():
    graph = {"raydal.models.a": {"raydal.models.b"}, "raydal.models.b": {"raydal.models.c"},
             "raydal.models.c": {"raydal.models.a"}, "raydal.models.d": {"raydal.models.a"}}
    assert cycles(graph, ("raydal.models",)) == [["raydal.models.a", "raydal.models.b", "raydal.models.c"]]


def test_the_graph_has_the_known_edges():
    graph = import_graph()
    assert "raydal.models.registry" in graph["raydal.models.backbones"]
    assert "raydal.query.candidates" in graph["raydal.query.base"]
    assert "raydal.query.base" in graph["raydal.query.scoring"]


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_no_import_circles(package):
    assert cycles(import_graph(), (package,)) == []


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_models_and_query_import_no_ray(package):
    graph = import_graph()
    assert not any(t.startswith("raydal.distributed") for n, ts in graph.items() if n.startswith(package) for t in ts)
