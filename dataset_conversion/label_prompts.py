"""Prompts for converted labels: each canonical label name as text plus synonyms from the anatomical vocabulary
(:mod:`nnunet_causal.text.vocabulary`), written into dataset.json's ``prompts`` by every converter."""
from __future__ import annotations

from typing import Dict, Iterable, List

_ADJECTIVE_ENDINGS = ("ic", "al", "ar", "ous")


def prompts_for(names: Iterable[str], max_synonyms: int = 3) -> Dict[str, List[str]]:
    """``{label name: [readable name, synonym, ...]}`` from the anatomical vocabulary.

    The first prompt is the label name as text (``kidney_left`` -> ``left kidney``); up to ``max_synonyms``
    more come from the vocabulary entry of the name (a sided entry puts its side before its base organ's
    synonyms, e.g. ``left renal organ``).
    """
    from nnunet_causal.text.label_text import label_to_text
    from nnunet_causal.text.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    out: Dict[str, List[str]] = {}
    for name in names:
        texts = [label_to_text(name)]
        term = vocabulary.terms.get(name)
        if term is not None:
            extra = list(term.synonyms)
            if term.side and term.base:
                extra += [f"{term.side} {b}" for b in vocabulary.bases.get(term.base, [])]
            for t in extra:
                if t.split()[-1].endswith(_ADJECTIVE_ENDINGS) or t.split()[-1] in ("ren", "hepar"):
                    continue  # "hepatic", "left renal": adjectives and Latin stems name no structure alone
                if t not in texts and len(texts) <= max_synonyms:
                    texts.append(t)
        out[name] = texts
    return out
