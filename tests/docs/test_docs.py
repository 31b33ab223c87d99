"""The documentation: a short README that links pages which exist, no history in docs or results, and the
cheap commands of every page run as written."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = sorted((ROOT / "benchmarks").glob("RESULTS_*.md"))

#: sub-commands that need no data, model or network: their documented lines are run
CHEAP = {"resolve", "simulators", "trainers", "env"}
HISTORY = re.compile(r"\b[Ss]ession \d|\b[Ii]ssue \d|\bbefore (this|the) change|\bsince (session|issue|commit)"
                     r"|\bcommit [0-9a-f]{7,40}\b|--before [0-9a-f]{7,40}\b")


def _commands(page: Path) -> List[Tuple[int, str]]:
    """``(line number, command)`` of the ``nnunet_causal`` lines inside fenced code blocks of ``page``."""
    out, fenced = [], False
    for no, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced and line.startswith("nnunet_causal "):
            out.append((no, line))
    return out


def _cheap(command: str) -> bool:
    if command.rstrip().endswith("\\"):   # continued on the next line: not a whole command
        return False
    words = shlex.split(command, comments=True)
    if not words[1:] or any(w.startswith("$") or "[" in w for w in words):
        return False
    if words[-1] == "--help" or words[1:] == ["--help"]:
        return True
    if words[1] == "parse-command":   # the offline parser; -m and --llm-* need a model or a server
        return not any(w.startswith(("-m", "--llm")) for w in words[2:])
    return words[1] in CHEAP


def _documented_cheap_commands():
    return [pytest.param(command, id=f"{page.name}:{no}") for page in PAGES for no, command in _commands(page)
            if _cheap(command)]


def test_readme_is_short_and_keeps_the_quick_start_block():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "## Quick start\n\n```bash\n./scripts/demo.sh\n./scripts/test.sh\n```" in text   # CI runs this block


def test_every_relative_link_of_the_docs_points_to_a_file():
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_no_history_in_docs_or_results():
    found = [f"{p.relative_to(ROOT)}:{no}: {line.strip()[:80]}" for p in PAGES + RESULTS
             for no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if HISTORY.search(line)]
    assert not found, found


def test_the_documented_commands_are_found():
    commands = _documented_cheap_commands()
    assert len(commands) >= 5, commands   # --help, resolve, trainers, parse-command, convert --help, ...


@pytest.mark.parametrize("command", _documented_cheap_commands())
def test_documented_cheap_command_runs_as_written(command, tmp_path):
    words = shlex.split(command, comments=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "nnUNet_causal_cache": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "nnunet_causal.cli", *words[1:]], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0, f"{command}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    assert run.stdout.strip(), command
