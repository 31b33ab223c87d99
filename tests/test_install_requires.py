"""Every third-party module the package imports (converters and commands included, lazy imports too) is
installed by ``pip install nnunet_causal``: it is declared in setup.cfg's ``install_requires`` -- or, for the
optional cluster backends of ``nnunet_causal study``, in the ``cluster`` extra and imported only inside
functions (so that nothing else needs it)."""
from __future__ import annotations

import ast
import configparser
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nnunet_causal", "dataset_conversion")


#: optional extras and the only folder whose modules may import what they add (the rest of the package must
#: work with ``install_requires`` alone)
EXTRA_FOLDERS = {"viewer": "nnunet_causal/viewer/", "dicom": "nnunet_causal/formats/"}


def declared_requirements(extra: str | None = None) -> set:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    text = cfg["options.extras_require"][extra] if extra else cfg["options"]["install_requires"]
    lines = [ln.strip() for ln in text.splitlines()]
    return {canonicalize_name(Requirement(ln).name) for ln in lines if ln and not ln.startswith("#")}


def declared_extra(name: str) -> set:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [ln.strip() for ln in cfg["options.extras_require"][name].splitlines()]
    return {canonicalize_name(Requirement(ln).name) for ln in lines if ln and not ln.startswith("#")}


def imported_modules(top_level_only: bool = False) -> dict:
    """``{top-level module: [file, ...]}`` of every absolute import outside the standard library (with
    ``top_level_only``: only the imports run when the module is imported, i.e. outside functions)."""
    found: dict = {}
    for package in PACKAGES:
        for f in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
            nodes = ast.walk(tree)
            if top_level_only:
                nodes = [n for n in ast.walk(tree) if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                inside = {id(m) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                          for m in ast.walk(fn) if m is not fn}
                nodes = [n for n in nodes if id(n) not in inside]
            for node in nodes:
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, []).append(str(f.relative_to(ROOT)))
    return found


def test_every_import_is_declared_in_install_requires():
    declared = declared_requirements()
    cluster = declared_extra("cluster")
    eager = imported_modules(top_level_only=True)
    distributions = packages_distributions()
    missing = []
    for module, files in sorted(imported_modules().items()):
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        extras = [e for e, folder in EXTRA_FOLDERS.items() if all(f.startswith(folder) for f in files)]
        allowed = declared.union(*(declared_requirements(e) for e in extras))
        if not dists:
            missing.append(f"{module} (not installed here; imported by {files[0]})")
        elif not dists & allowed and dists & cluster and module not in eager:
            continue  # an optional cluster backend's library, imported only when that backend runs
        elif not dists & allowed:
            missing.append(f"{module} -> {'/'.join(sorted(dists))} (imported by {', '.join(sorted(set(files))[:3])})")
    assert not missing, "add to install_requires in setup.cfg: " + "; ".join(missing)


def test_the_viewer_extra_holds_the_web_packages_and_only_the_viewer_imports_them():
    assert {"fastapi", "uvicorn"} <= declared_requirements("viewer")
    users = {f for m in ("fastapi", "uvicorn", "starlette") for f in imported_modules().get(m, [])}
    assert users and all(f.startswith(EXTRA_FOLDERS["viewer"]) for f in users), sorted(users)


def test_the_converters_dependencies_are_among_them():
    declared = declared_requirements()
    assert {"pydicom", "tifffile", "simpleitk", "pillow"} <= declared
