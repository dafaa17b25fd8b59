"""The package structure: no import cycles (TYPE_CHECKING imports included), no repeated module names.

import-linter (``make lint``) checks the layering contracts in pyproject.toml; this test fails on any cycle,
wherever it is, naming the modules on it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grimp

import flame_sdk

PACKAGES = ("flame_sdk", "flame", "flamesdk")


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    edges = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    cycles = _strongly_connected(edges)
    assert not cycles, "import cycles (each line: modules importing each other in a loop):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_share_a_name() -> None:
    root = Path(flame_sdk.__file__).parent
    names = Counter(path.name for path in root.rglob("*.py") if path.name != "__init__.py")
    repeated = sorted(name for name, count in names.items() if count > 1)
    assert not repeated, f"module names used more than once in flame_sdk: {repeated}"
