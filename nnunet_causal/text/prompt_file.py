"""Prompt files: the plain-text way to tell ``nnUNetv2_predict_text`` what to segment.

Grammar (UTF-8)::

    # a comment; blank lines are ignored
    liver                              <- one structure per line
    renal organs | kidneys | both kidneys   <- synonyms of one structure, separated by '|'
    spleen   # a trailing comment

The first entry of a line is the structure's prompt (its name in outputs); the others are synonyms that
are embedded and averaged with it on the open-vocabulary path. Errors name the file and the line: an
empty entry (``a || b``, a trailing ``|``), a prompt given twice, a file that is not UTF-8, or a file
without any prompt.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, List, Optional

from nnunet_causal.errors import PromptError


@dataclass(frozen=True)
class PromptSpec:
    """One structure to segment: its prompt ``text``, optional ``synonyms`` and where it was written."""
    text: str
    synonyms: List[str] = field(default_factory=list)
    line: Optional[int] = None
    source: Optional[str] = None


def _parse_entry(raw: str, where: str, line: Optional[int], source: Optional[str]) -> PromptSpec:
    parts = [p.strip() for p in raw.split("|")]
    if any(not p for p in parts):
        raise PromptError(f"{where}: empty prompt in '{raw.strip()}' (nothing between or after '|')")
    return PromptSpec(parts[0], parts[1:], line, source)


def _check_duplicates(specs: List[PromptSpec], where_of) -> None:
    seen = {}
    for s in specs:
        key = " ".join(s.text.lower().split())
        if key in seen:
            raise PromptError(f"{where_of(s)}: prompt '{s.text}' is given twice (first at {where_of(seen[key])})")
        seen[key] = s


def read_prompt_file(path: os.PathLike | str) -> List[PromptSpec]:
    """Parse a prompt file (grammar in the module docstring)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            content = f.read().decode("utf-8")
    except FileNotFoundError:
        raise PromptError(f"prompt file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise PromptError(f"{path}: not a UTF-8 text file ({e})") from None
    specs = []
    for no, line in enumerate(content.splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            specs.append(_parse_entry(text, f"{path}, line {no}", no, path))
    if not specs:
        raise PromptError(f"{path}: no prompts (every line is empty or a comment)")
    _check_duplicates(specs, lambda s: f"{s.source}, line {s.line}")
    return specs


def parse_prompts(prompts: Iterable[str], source: str = "command line") -> List[PromptSpec]:
    """Command-line prompts with the same rules (``"kidneys|renal organs"`` gives synonyms)."""
    specs = []
    for i, p in enumerate(prompts, start=1):
        if not p or not p.strip():
            raise PromptError(f"{source}: prompt {i} is empty")
        specs.append(_parse_entry(p, f"{source}, prompt {i}", i, source))
    _check_duplicates(specs, lambda s: f"{s.source}, prompt {s.line}")
    return specs
