"""Optional LLM caption extractor (OpenVocabCT, seed 002, III.B: few-shot prompting + a metadata filter).

The model receives the dataset's structure names, two worked examples and the report, and must answer
with JSON following :data:`SCHEMA_TEXT`::

    {"captions": [{"structure": "liver", "caption": "The liver is enlarged.", "absent": false}, ...]}

Backends:

* an **OpenAI-compatible HTTP endpoint** or a **local transformers folder**, through the package's one LLM
  client (:mod:`nnunet_causal.text.llm_client`; URL and model from the arguments or
  ``$nnUNet_causal_llm_url`` / ``$nnUNet_causal_llm_model``, key ``$nnUNet_causal_llm_api_key``).

An unreachable endpoint, an HTTP error, an answer without text or an answer that is not JSON of this schema
is a :class:`~nnunet_causal.errors.TextEncoderError` (one message, nothing written). Single captions that
fail the checks -- an unknown structure, an empty text, an ``absent`` that is not a yes/no, or a text that
does not name its structure (the seed's substring filter,
:func:`~nnunet_causal.mgcl.captions.names_its_structure`) -- are dropped and counted
(:attr:`LLMExtractor.dropped`). ``absent`` is read as JSON ``true`` / ``false`` or, as models often write
it, the strings ``"true"`` / ``"false"`` / ``"yes"`` / ``"no"`` and the numbers 1 / 0; left out, it is false.
"""
from __future__ import annotations

import json
import re
from typing import Dict, List, Optional

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.mgcl.captions import Caption, names_its_structure
from nnunet_causal.text.llm_client import URL_VARIABLE, HttpChatClient, LocalChatModel, endpoint_from_environment
from nnunet_causal.text.vocabulary import Vocabulary

SCHEMA_TEXT = ('{"captions": [{"structure": <one of the given structure names>, "caption": <one short sentence '
               'about that structure, taken from the report>, "absent": <true if the report says the structure '
               'is not there>}]}')
FEW_SHOT = [
    ("structures: liver, spleen, kidney_left, kidney_right\nreport: The liver is enlarged with a hypodense lesion. "
     "Spleen unremarkable. Status post left nephrectomy; the right kidney is normal.",
     {"captions": [{"structure": "liver", "caption": "The liver is enlarged with a hypodense lesion.", "absent": False},
                   {"structure": "spleen", "caption": "The spleen is unremarkable.", "absent": False},
                   {"structure": "kidney_left", "caption": "The left kidney has been removed.", "absent": True},
                   {"structure": "kidney_right", "caption": "The right kidney is normal.", "absent": False}]}),
    ("structures: polyp\nreport: A small sessile polyp at the upper left of the frame. No bleeding.",
     {"captions": [{"structure": "polyp", "caption": "A small sessile polyp at the upper left of the frame.",
                    "absent": False}]}),
]


def build_messages(report: str, structures: List[str]) -> List[dict]:
    """Chat messages: instructions with the schema, the few-shot examples, then this report."""
    messages = [{"role": "system", "content": "You split radiology reports into organ-level captions. Answer with "
                                              "JSON only, following this schema: " + SCHEMA_TEXT + ". Mention the "
                                              "structure by name in every caption. Leave out structures the "
                                              "report does not describe."}]
    for question, answer in FEW_SHOT:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": json.dumps(answer)}]
    messages.append({"role": "user", "content": f"structures: {', '.join(structures)}\nreport: {report}"})
    return messages


_YES, _NO = ("true", "yes", "1"), ("false", "no", "0", "")


def read_absent(value) -> Optional[bool]:
    """An answer's ``absent`` field as a bool: JSON booleans, ``"true"`` / ``"false"`` / ``"yes"`` / ``"no"``
    (any case), 1 / 0, a missing field (None) = False; anything else is None (unreadable)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _YES:
            return True
        if word in _NO:
            return False
    return None


def parse_answer(text: str, source: str) -> List[dict]:
    """The ``captions`` list of an answer (code fences allowed); anything off-schema raises."""
    if not isinstance(text, str):
        raise TextEncoderError(f"{source} answered without text ({type(text).__name__}); expected {SCHEMA_TEXT}")
    body = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text.strip())
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        raise TextEncoderError(f"{source} answered off-schema (not JSON: {e.msg}); expected {SCHEMA_TEXT}; the "
                               f"answer began {text[:120]!r}") from e
    items = obj.get("captions") if isinstance(obj, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("structure"), str)
                                              and isinstance(i.get("caption"), str) for i in items):
        raise TextEncoderError(f"{source} answered off-schema (needs a 'captions' list of objects with string "
                               f"'structure' and 'caption'); expected {SCHEMA_TEXT}; got {text[:120]!r}")
    return items


class LLMExtractor:
    """``extract(report) -> [Caption]`` through an HTTP endpoint (``url`` + ``model``) or a local ``folder``."""

    def __init__(self, vocabulary: Vocabulary, url: Optional[str] = None, model: Optional[str] = None,
                 folder: Optional[str] = None, timeout_s: float = 60.0, max_new_tokens: int = 512):
        self.vocabulary = vocabulary
        self.folder = folder
        if folder:
            self.client = LocalChatModel(folder, max_new_tokens, error=TextEncoderError)
        elif url or endpoint_from_environment():
            self.client = HttpChatClient(url, model, timeout_s, error=TextEncoderError)
        else:
            raise TextEncoderError(f"the LLM extractor needs an endpoint (--llm-url or ${URL_VARIABLE}) or a local "
                                   f"transformers folder (--llm-folder)")
        self.structures = sorted(set(vocabulary.labels.values()) or set(vocabulary.terms))
        self.dropped: Dict[str, int] = {}

    @property
    def id(self) -> str:
        """Names the backend and model; keys the caption cache (holds no URL: see ``HttpChatClient.id``)."""
        return f"llm:{self.client.id}"

    # ------------------------------------------------------------------ extraction
    def extract(self, report: str) -> List[Caption]:
        messages = build_messages(report, self.structures)
        answer = self.client.complete(messages)
        out = []
        for item in parse_answer(answer, f"LLM {self.id}"):
            structure, text = item["structure"].strip(), item["caption"].strip()
            reason, absent = None, read_absent(item.get("absent"))
            if structure not in self.structures:
                reason = "unknown structure"
            elif not text:
                reason = "empty caption"
            elif absent is None:
                reason = "'absent' is not true or false"
            else:
                caption = Caption(structure, text, absent, "llm")
                if not names_its_structure(caption, self.vocabulary):
                    reason = "does not name its structure"
            if reason:
                self.dropped[reason] = self.dropped.get(reason, 0) + 1
                continue
            out.append(caption)
        return out
