"""The study package's shape: evaluation/ imports nothing from it, its modules import each other one way
(no circle, lazy imports included), and no module is over 400 lines."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "nnunet_causal"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_evaluation_imports_nothing_from_the_study_package():
    offenders = {str(f.name): sorted(m for m in _imports(f) if m.startswith("nnunet_causal.study"))
                 for f in (ROOT / "evaluation").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}, offenders
    assert not (ROOT / "evaluation" / "study.py").exists()


def test_study_modules_import_one_way_and_stay_small():
    files = sorted((ROOT / "study").rglob("*.py"))
    modules = {_module_name(f): f for f in files}
    graph = {m: {i for i in _imports(f) if i in modules and i != m} for m, f in modules.items()}
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for n in graph[m]:
            if state.get(n) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack + [m, n]))
            if n not in state:
                visit(n, stack + [m])
        state[m] = "done"

    for m in modules:
        if m not in state:
            visit(m, [])
    assert len(modules) >= 12
    sizes = {f.name: len(f.read_text().splitlines()) for f in files}
    assert max(sizes.values()) <= 400, sizes
