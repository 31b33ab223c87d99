"""Words of a prompt: normalisation, the word classes grounding needs, and the checks a prompt must pass.

The bottom floor of the text side: it imports nothing of :mod:`nnunet_causal.text` (the floors above are
:mod:`~nnunet_causal.text.knowledge`, :mod:`~nnunet_causal.text.grounding` and
:mod:`~nnunet_causal.text.vocabulary`). The word lists that are knowledge rather than code -- imaging
modalities, MR sequences, contrast phases, body regions, views, verbs and nouns of delineation, part-of
words, short forms of sides -- live in ``resources/prompt_words.json`` (:func:`lexicon`).
"""
from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional

from nnunet_causal.errors import PromptError

#: longest prompt accepted, in characters (a prompt is a structure or a sentence, not a report)
MAX_PROMPT_CHARS = 300
ARTICLES = {"the", "a", "an", "this", "that", "its", "his", "her", "their", "my", "our", "your", "please",
            "segment", "show", "find", "mask", "outline", "delineate", "contour"}
FILLERS = {"region", "regions", "area", "areas", "organ", "organs", "structure", "structures", "tissue", "zone",
           "part", "parenchyma", "portion", "of", "on", "side", "sided", "in", "at", "to", "proper", "whole",
           "entire", "body", "segment", "territory"}
SIDE_WORDS = {"left": "left", "lt": "left", "sinister": "left", "sinistra": "left", "sinistral": "left",
              "sin": "left", "levo": "left", "right": "right", "rt": "right", "dexter": "right", "dextra": "right",
              "dextral": "right", "dex": "right", "both": "both", "bilateral": "both", "bilaterally": "both",
              "paired": "both", "all": "both", "bilat": "both"}
#: single letters read as a side only next to a structure word and not before a number ("L kidney", "Parotid_R")
SIDE_LETTERS = {"l": "left", "r": "right"}
ORDINALS = {w: i for i, w in enumerate(["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh",
                                        "eighth", "ninth", "tenth", "eleventh", "twelfth"])}
REGION_LETTER = {"cervical": "C", "thoracic": "T", "dorsal": "T", "lumbar": "L", "sacral": "S"}
#: a lower-case letter followed by a capital starts a new word ("OpticChiasm"), except before a closing run of
#: two or more capitals ("BraTS", "dMRI" stay one word; "KidneyL" splits)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])(?![A-Z]{2,}\b)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def normalize(text: str) -> str:
    """Lower case, punctuation and underscores to spaces, collapsed whitespace."""
    text = text.lower().replace("_", " ").replace("/", " ").replace("-", " ")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def prompt_words(text: str) -> List[str]:
    """The words of a prompt as grounding reads them: :func:`normalize` after splitting camel case
    ("OpticChiasm" -> "optic chiasm", as dataset label maps write names)."""
    return normalize(_CAMEL.sub(" ", text)).split()


def check_prompt(text: str) -> str:
    """``text`` if it can be grounded; else :class:`PromptError` naming the prompt and what is wrong
    (empty or whitespace only, longer than :data:`MAX_PROMPT_CHARS`, control characters)."""
    if not isinstance(text, str):
        raise PromptError(f"prompt {text!r} is not text")
    if not text.strip():
        raise PromptError(f"prompt {text!r} is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"prompt '{text[:40]}...' is {len(text)} characters long (at most {MAX_PROMPT_CHARS})")
    bad = _CONTROL.search(text.replace("\t", " ").replace("\n", " ").replace("\r", " "))
    if bad or any(unicodedata.category(c) == "Cs" for c in text):
        raise PromptError(f"prompt {text!r} contains a control character")
    if not normalize(text):
        raise PromptError(f"prompt {text!r} has no words")
    return text


def singular(word: str, known: FrozenSet[str]) -> str:
    """``word`` in the singular when that form is one of ``known`` ("kidneys" -> "kidney", "vertebrae" ->
    "vertebra", "arteries" -> "artery", "humeri" -> "humerus"), also when the plural is itself a known
    word ("veins" in "pulmonary veins"); unchanged otherwise."""
    if len(word) <= 3:
        return word
    for suffix, repl in (("ies", "y"), ("ae", "a"), ("es", ""), ("s", ""), ("i", "us")):
        if word.endswith(suffix) and (word[: -len(suffix)] + repl) in known and not word.endswith(("ss", "us", "is")):
            return word[: -len(suffix)] + repl
    return word


def simple_singular(word: str) -> str:
    """Plural ``-ies`` / ``-s`` removed without a word list (for stems and head nouns)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def ordinal(word: Optional[str]) -> Optional[int]:
    """3, "3rd", "third" -> 3; None for anything else."""
    if word is None:
        return None
    if word.isdigit():
        return int(word)
    m = re.match(r"^(\d+)(st|nd|rd|th)$", word)
    return int(m.group(1)) if m else ORDINALS.get(word)


def resource_path(name: str) -> Path:
    """A file of ``nnunet_causal/resources``."""
    return Path(str(resources.files("nnunet_causal") / "resources" / name))


@lru_cache(maxsize=1)
def lexicon() -> Dict[str, object]:
    """``resources/prompt_words.json``: word lists as frozensets, mappings as dicts."""
    data = json.loads(resource_path("prompt_words.json").read_text(encoding="utf-8"))
    return {k: (frozenset(v) if isinstance(v, list) else v) for k, v in data.items() if k != "about"}


def side_of(word: str) -> Optional[str]:
    """The side a (full) side word names: left / right / both, else None."""
    return SIDE_WORDS.get(word)


_LABEL_TOKENS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")


def side_of_label(name: str) -> Optional[str]:
    """The side a label *name* is on: ``left`` / ``right``, else None. A side word (:data:`SIDE_WORDS`:
    ``kidney_left``, ``Right-Kidney``, ``Lt_Kidney``) or a lone ``L`` / ``R`` token (``Parotid_L``,
    ``OpticNrv_R``) names it; ``L5`` in ``vertebrae_L5`` does not (a token with a digit is not a side)."""
    for token in _LABEL_TOKENS.split(str(name)):
        side = SIDE_WORDS.get(token.lower()) or SIDE_LETTERS.get(token.lower())
        if side in ("left", "right"):
            return side
    return None

