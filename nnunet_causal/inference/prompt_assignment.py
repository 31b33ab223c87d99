"""How each prompt of a prediction is segmented: the record written to the per-case sidecar
(:mod:`nnunet_causal.inference.case_outputs`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class PromptAssignment:
    """How one prompt is segmented; written to the per-case JSON sidecar."""
    prompt: str
    label_value: int
    terms: List[str]
    score: float
    method: str               # resolver stage: exact | knowledge | corrected | embedding | none
    source: str               # "trained" (stored queries of trained structures) or "open_vocabulary"
    trained_structures: List[str] = field(default_factory=list)
    used_words: List[str] = field(default_factory=list)      # prompt words that named the terms
    ignored_words: List[str] = field(default_factory=list)   # the other words (articles, unknown, ...)
    unknown_words: List[str] = field(default_factory=list)   # ignored words the vocabulary does not know
    corrected: Optional[str] = None                           # spelling-corrected prompt (method "corrected")
    resolution_message: str = ""                              # the resolver's note (correction, why none)
    explanation: Optional[dict] = None                        # the resolver's explanation, when it gives one


def explanation_of(resolution) -> Optional[dict]:
    """The resolver's explanation dict (an ``explanation`` attribute or ``to_dict()``), when it has one."""
    value = getattr(resolution, "explanation", None)
    if callable(value):
        value = value()
    if value is None and callable(getattr(resolution, "to_dict", None)):
        value = resolution.to_dict()
    return value if isinstance(value, dict) and value else None
