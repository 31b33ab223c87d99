"""Command sets with expected parses (the TSV format of ``tests/intervention/data/commands_dev.tsv``) and
the comparison the parsing benchmark uses.

A row is ``category <TAB> command <TAB> expected [<TAB> style]``; ``expected`` is ``-`` (no actions), ``!``
(a :class:`PromptError`), or actions joined by `` ; `` written ``action|targets|strength|location|confounder``
(targets ``+``-joined, order-free; empty location / confounder = none; the confounder is a fragment that
the chosen dictionary entry must contain). Actions are compared as a multiset; ``why`` is not compared.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from nnunet_causal.errors import DatasetError, PromptError


@dataclass
class CommandCase:
    category: str
    command: str
    expected: str
    style: Optional[str]
    line: int


def load_command_set(path) -> List[CommandCase]:
    path = Path(path)
    cases = []
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cols = raw.split("\t")
        if len(cols) < 3:
            raise DatasetError(f"{path}, line {no}: expected category, command, expected (tab-separated)")
        cases.append(CommandCase(cols[0].strip(), cols[1], cols[2].strip(),
                                 cols[3].strip() if len(cols) > 3 and cols[3].strip() else None, no))
    return cases


def _expected_actions(expected: str) -> List[tuple]:
    out = []
    for spec in expected.split(" ; "):
        parts = (spec.split("|") + [""] * 5)[:5]
        action, targets, strength, location, confounder = (p.strip() for p in parts)
        out.append((action, frozenset(t for t in targets.split("+") if t), strength, location or None,
                    confounder or None))
    return out


def _matches(action: dict, want: tuple) -> bool:
    name, targets, strength, location, confounder = want
    if (action["action"], frozenset(action["target"]), action["strength"]) != (name, targets, strength):
        return False
    if (action["location"] or None) != location:
        return False
    if confounder is None:
        return True
    return action["confounder"] is not None and confounder.lower() in action["confounder"].lower()


def check_case(case: CommandCase, parse) -> tuple:
    """``(correct, what happened)``; ``parse(command, style)`` returns a parse dict or raises PromptError."""
    try:
        got = parse(case.command, case.style)
    except PromptError as e:
        return case.expected == "!", f"PromptError: {e}"
    if case.expected == "!":
        return False, f"no error: {got['actions']}"
    if case.expected == "-":
        return not got["actions"], f"actions {got['actions']}" if got["actions"] else "no actions"
    want = _expected_actions(case.expected)
    actions = list(got["actions"])
    if len(actions) != len(want):
        return False, f"{len(actions)} actions {actions}"
    for w in want:
        hit = next((a for a in actions if _matches(a, w)), None)
        if hit is None:
            return False, f"no action matches {w}: {actions}"
        actions.remove(hit)
    return True, "ok"
