"""No import cycle in the ``nnunet_causal`` package.

Rule: the imports that run when a module is imported -- statements at module level, including those
inside module-level ``if`` / ``try`` blocks, excluding ``if TYPE_CHECKING:`` -- form a graph over the
package's modules, read statically with :mod:`ast` (nothing is imported). ``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg``; importing ``a.b.c`` also runs ``a`` and
``a.b``, but a package's ``__init__`` is an edge only when it is imported itself. Imports inside functions
run late, on purpose (optional extras, sub-commands), and are not edges. The graph must have no cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "nnunet_causal"


def _modules() -> Dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _module_level(body: List[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _module_level(block)
        elif isinstance(node, (ast.With,)):
            yield from _module_level(node.body)


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    graph: Dict[str, Set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _module_level(tree.body):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                for a in node.names:
                    full = f"{prefix}.{a.name}"
                    targets.append(full if full in modules else prefix)
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
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
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_the_text_floors():
    graph = import_graph()
    assert "nnunet_causal.text.words" in graph["nnunet_causal.text.knowledge"]
    assert "nnunet_causal.text.resolver" in graph["nnunet_causal.text.vocabulary"]


def test_no_import_cycle_in_the_package():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (module-level imports): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_text_reads_one_way():
    """words -> knowledge -> grounding -> resolver -> vocabulary: no floor imports one above it."""
    floors = ["nnunet_causal.text.words", "nnunet_causal.text.knowledge", "nnunet_causal.text.grounding",
              "nnunet_causal.text.resolver", "nnunet_causal.text.vocabulary"]

    def floor(m: str) -> int:
        return max((i for i, f in enumerate(floors) if m == f or m.startswith(f + ".")), default=-1)

    graph = import_graph()
    upward = [(m, t) for m, ts in graph.items() for t in ts if floor(m) >= 0 and floor(t) > floor(m)]
    assert not upward, upward
