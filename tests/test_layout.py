"""Where things live, checked on the source: networks/ are pure, os.environ is changed only by command-line
entry points, environment variables have one casing, and no module reaches into another's private names."""
from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnunet_causal"


def _modules() -> List[Tuple[str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        out.append((rel, ast.parse(path.read_text(encoding="utf-8"), rel)))
    return out


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name) \
        and node.value.id == "os"


def test_networks_read_no_environment_and_load_no_text_encoder():
    bad = []
    for rel, tree in _modules():
        if not rel.startswith("nnunet_causal/networks/"):
            continue
        for node in ast.walk(tree):
            if _is_os_environ(node) or (isinstance(node, ast.Attribute) and node.attr in ("getenv", "putenv")):
                bad.append(f"{rel}:{node.lineno} reads the environment")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n and (n.endswith("embedding_cache") or n.endswith("text.encoders") or n == "get_text_encoder")
                       for n in names):
                    bad.append(f"{rel}:{node.lineno} imports a text encoder loader")
    assert not bad, bad


#: command-line entry points may set the environment of the process they own (and of the commands they run)
def _is_entry(rel: str) -> bool:
    from nnunet_causal.cli import SUBCOMMANDS

    module = rel[:-3].replace("/", ".")
    return rel.endswith(("/cli.py", "_cli.py", "_entry.py")) or module in {m for m, _ in SUBCOMMANDS.values()}


#: modules outside an entry point that still change os.environ, and why (this list only ever shrinks)
KNOWN_ENVIRON_WRITERS: Dict[str, str] = {
    "nnunet_causal/study/checks.py": "the study's preflight runs nnU-Net's path checks under the study's "
                                     "environment (nnunetv2 reads its path variables from os.environ)",
}


def _environ_writes(tree: ast.Module) -> List[int]:
    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for t in targets:
            if isinstance(t, ast.Subscript) and _is_os_environ(t.value):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if _is_os_environ(f.value) and f.attr in ("update", "pop", "clear", "setdefault", "popitem"):
                lines.append(node.lineno)
            if isinstance(f.value, ast.Name) and f.value.id == "os" and f.attr in ("putenv", "unsetenv"):
                lines.append(node.lineno)
    return lines


def test_only_command_line_entry_points_change_os_environ():
    found = {rel: lines for rel, tree in _modules() if (lines := _environ_writes(tree)) and not _is_entry(rel)}
    unexpected = {rel: lines for rel, lines in found.items() if rel not in KNOWN_ENVIRON_WRITERS}
    assert not unexpected, unexpected
    assert set(KNOWN_ENVIRON_WRITERS) <= set(found), "a known writer was fixed: take it off the list"


def test_environment_variables_have_one_casing_and_old_names_still_work(monkeypatch):
    from nnunet_causal import environment

    pattern = re.compile(r"\b(NNUNET_CAUSAL_[A-Z_]+|nnunet_causal_[a-z]+_[a-z_]+)\b")
    bad = []
    for rel, tree in _modules():
        if rel == "nnunet_causal/environment.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                bad += [f"{rel}:{node.lineno} {m}" for m in pattern.findall(node.value)
                        if not m.startswith("nnunet_causal_") or m.upper() == m]
    assert not bad, bad
    monkeypatch.delenv("nnUNet_causal_llm_url", raising=False)
    monkeypatch.setenv("NNUNET_CAUSAL_LLM_URL", "http://old")
    with pytest.warns(DeprecationWarning, match="NNUNET_CAUSAL_LLM_URL is deprecated: set nnUNet_causal_llm_url"):
        assert environment.read_variable("nnUNet_causal_llm_url") == "http://old"
    monkeypatch.setenv("nnUNet_causal_llm_url", "http://new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert environment.read_variable("nnUNet_causal_llm_url") == "http://new"


# ------------------------------------------------------------------ private names across modules
def _defined_private_names(tree: ast.Module) -> Set[str]:
    """Private names a module defines itself: functions, classes, attributes it assigns, parameters."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_")}


def _private_reaches(rel: str, tree: ast.Module) -> List[str]:
    own = _defined_private_names(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nnunet_causal"):
            out += [f"{rel}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                continue
            if node.attr in own:   # the module's own private attribute on another instance of its own class
                continue
            out.append(f"{rel}:{node.lineno} .{node.attr}")
    return out


def _all_private_reaches() -> Dict[str, List[str]]:
    found = {}
    for rel, tree in _modules():
        hits = _private_reaches(rel, tree)
        if hits:
            found[rel] = hits
    return found


OWNED = ("nnunet_causal/inference/", "nnunet_causal/viewer/case_state.py", "nnunet_causal/viewer/model_context.py",
         "nnunet_causal/viewer/cases.py", "nnunet_causal/cli.py", "nnunet_causal/environment.py",
         "nnunet_causal/intervention/modulation/intervene_cli.py", "nnunet_causal/intervention/modulation/session.py",
         "nnunet_causal/audit/audit_cli.py")


#: private names of other libraries the package uses on purpose, and why (this list only ever shrinks)
THIRD_PARTY_PRIVATE: Dict[str, Set[str]] = {
    # nnU-Net's trainer hook that every trainer variant overrides; the benchmark asks it as nnU-Net does
    "nnunet_causal/benchmarking/perf.py": {"._get_deep_supervision_scales"},
    # numpy's array-rebuild function, allow-listed for torch.load(weights_only=True) of numpy arrays
    "nnunet_causal/files.py": {"._reconstruct"},
    # namedtuple's documented copy-with-changes method (urllib.parse.SplitResult)
    "nnunet_causal/text/llm_client.py": {"._replace"},
    # torch.compile's wrapper keeps the compiled module under _orig_mod (nnU-Net reads it the same way)
    "nnunet_causal/training/text/nnUNetTrainerText.py": {"._orig_mod"},
}


def test_no_module_reaches_into_a_private_name_of_another():
    """Across the whole package: no ``obj._name`` of an object another module defines, no import of another
    module's private name; third-party names used on purpose are listed with the reason."""
    found = _all_private_reaches()
    unexpected = {rel: [h for h in hits if h.split(" ", 1)[1] not in THIRD_PARTY_PRIVATE.get(rel, set())]
                  for rel, hits in found.items()}
    assert not {k: v for k, v in unexpected.items() if v}, unexpected


def test_the_prediction_and_case_modules_reach_into_no_private_name_of_another_module():
    found = {rel: hits for rel, hits in _all_private_reaches().items() if rel.startswith(OWNED)}
    allowed: Dict[str, Set[str]] = {}
    unexpected = {rel: [h for h in hits if h.split(" ", 1)[1] not in allowed.get(rel, set())]
                  for rel, hits in found.items()}
    assert not {k: v for k, v in unexpected.items() if v}, unexpected


def test_one_limit_per_input_in_one_place():
    """The prompt-length and command-length limits are assigned once; every input checks against them."""
    assigned: Dict[str, List[str]] = {}
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    if isinstance(t, ast.Name) and t.id in ("MAX_PROMPT_CHARS", "MAX_COMMAND_CHARS", "MAX_PROMPTS"):
                        assigned.setdefault(t.id, []).append(rel)
    assert assigned == {"MAX_PROMPT_CHARS": ["nnunet_causal/text/words.py"],
                        "MAX_COMMAND_CHARS": ["nnunet_causal/intervention/commands/schema.py"],
                        "MAX_PROMPTS": ["nnunet_causal/viewer/case_state.py"]}, assigned
