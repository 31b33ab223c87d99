"""Model vocabularies: the structures a named subset of the knowledge base, or a trained model, holds.

The top floor of the text side. :func:`load_vocabulary` gives a named subset of the knowledge base
(:mod:`nnunet_causal.text.knowledge`: ``total``, ``totalseg``, ``btcv``, ``amos``, ``chaos``, ``brats``,
``acdc``, ``kits``, ``lits``, ``msd``, ``han``, ``endoscopy``, ``all``) or the vocabulary of a trained
model folder; :func:`vocabulary_from_labels` builds a model's vocabulary from its labels, grounding each
label name with the resolver (:mod:`nnunet_causal.text.resolver`). A model's vocabulary holds only what the
model was trained on: a structure the knowledge base knows but the model does not is refused, saying so.

``Vocabulary``, ``Term``, ``normalize`` and the word classes are re-exported from the floors below for
callers that import them from here.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Mapping, Optional, Sequence

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.text.knowledge import VOCABULARY_NAMES, Term, Vocabulary, knowledge_base, named_vocabulary
from nnunet_causal.text.label_text import label_to_text
from nnunet_causal.text.resolver import resolve_phrase
from nnunet_causal.text.words import ARTICLES, FILLERS, ORDINALS, REGION_LETTER, SIDE_WORDS, normalize

__all__ = ["VOCABULARY_NAMES", "Term", "Vocabulary", "load_vocabulary", "vocabulary_from_labels",
           "vocabulary_from_model_folder", "knowledge_base", "normalize", "ARTICLES", "FILLERS", "ORDINALS",
           "REGION_LETTER", "SIDE_WORDS"]


def load_vocabulary(name: str = "all") -> Vocabulary:
    """A named vocabulary, or the vocabulary of a trained model folder (its plans' prompts / dataset.json)."""
    if name in VOCABULARY_NAMES:
        return named_vocabulary(name)
    folder = Path(name)
    if folder.is_dir():
        return vocabulary_from_model_folder(folder)
    raise NnunetCausalError(f"unknown vocabulary '{name}': use one of {', '.join(VOCABULARY_NAMES)} or a trained "
                            f"model folder")


def vocabulary_from_labels(labels: Mapping[str, object], prompts: Optional[Mapping[str, Sequence[str]]] = None
                           ) -> Vocabulary:
    """A model's vocabulary: each foreground label becomes a term -- the canonical term when its name (or,
    failing that, one of its prompts) resolves exactly to one, otherwise a term of its own whose synonyms
    are its prompts. ``label_for_term`` then maps terms back to label names."""
    full = knowledge_base()
    terms, label_of = {}, {}
    for name in labels:
        if name in ("background", "ignore"):
            continue
        texts = list((prompts or {}).get(name, []))
        canonical = name if name in full.terms else None
        if canonical is None:
            for candidate in [label_to_text(name), *texts]:
                if not normalize(candidate):
                    continue
                res = resolve_phrase(candidate, full)
                if len(res.terms) == 1 and res.method == "exact":
                    canonical = res.terms[0]
                    break
        if canonical is not None:
            t = copy.deepcopy(full.terms[canonical])
            t.synonyms = list(dict.fromkeys([*texts, *t.synonyms]))
        else:
            canonical = name
            t = Term(name, list(dict.fromkeys([label_to_text(name), *texts])))
        terms[canonical] = t
        label_of[canonical] = name
    return Vocabulary(terms, full.bases, full.groups, label_of)


def vocabulary_from_model_folder(folder: Path) -> Vocabulary:
    """Vocabulary of a trained model folder (``plans.json`` prompts, else ``dataset.json`` labels)."""
    plans, dj = folder / "plans.json", folder / "dataset.json"
    if not dj.exists():
        raise NnunetCausalError(f"{folder} is not a trained model folder (no dataset.json)")
    dataset_json = json.loads(dj.read_text())
    prompts = None
    if plans.exists():
        prompts = (json.loads(plans.read_text()).get("nnunet_causal") or {}).get("prompts")
    return vocabulary_from_labels(dataset_json["labels"], prompts or dataset_json.get("prompts"))
