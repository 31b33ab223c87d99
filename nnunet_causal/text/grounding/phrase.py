"""Ground one structure phrase: exact and knowledge stages, word order, part-of widening.

Tried in this order, each on the phrase as written and on its reordered form ("tumour of the liver" ->
"liver tumour", "head of the pancreas" -> "pancreas head"):

1. the exact and knowledge stages (:mod:`~nnunet_causal.text.grounding.lookup`) -- a part the knowledge
   base has ("liver segment 4", "left ventricle cavity") is found here, as itself;
2. part-of: the words naming a part ("lobe", "wall", "bulb", "head", "segment", "lumen", "cavity",
   "silhouette", ... in ``resources/prompt_words.json``) are removed and the rest must name a structure
   on its own ("urinary bladder wall" -> urinary bladder, "duodenal bulb" -> duodenum, "right femoral head"
   -> right femur), then also the words placing the part on its whole ("lower pole of the right kidney"
   -> right kidney); the result says which part was widened to which whole. Only such words are ever
   removed: "kidney stone", "liver tumour" and "aortic valve" keep their entity word and name nothing
   unless the knowledge base knows them whole;
3. location: "X in the Y" is X when X names a structure alone and Y a place ("lymph nodes in the
   mediastinum"); a lesion X only when it is a lesion of Y ("glioma in the brain", never "tumour in the
   stomach" -> a brain tumour).

Side words contradicting each other inside one phrase ("left right kidney") are an error
(:class:`~nnunet_causal.errors.PromptError`): guessing a side is a wrong answer half of the time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from nnunet_causal.errors import PromptError
from nnunet_causal.text.grounding.lookup import exact_lookup, knowledge_lookup
from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.words import FILLERS, SIDE_LETTERS, SIDE_WORDS, lexicon, normalize

_LIST_WORDS = {"and", "or", "plus", "as", "with"}


@dataclass
class PhraseHit:
    """Terms of the knowledge base a phrase names, and how."""
    terms: List[str]
    exact: bool = False
    #: the part words removed (part-of widening) and the text that was grounded instead
    part_words: List[str] = field(default_factory=list)
    grounded_text: str = ""


def check_sides(prompt: str, phrase: str) -> None:
    """:class:`PromptError` when one phrase (not a list) names both the left and the right side."""
    words = normalize(phrase).split()
    if _LIST_WORDS & set(words):
        return
    sides = {SIDE_WORDS.get(w) or (SIDE_LETTERS.get(w) if len(words) > 1 else None) for w in words}
    sides.discard(None)
    if {"left", "right"} <= sides:
        raise PromptError(f"prompt '{prompt}' names both the left and the right side of one structure; write "
                          f"'left X and right X' or 'both X'")


def reordered(phrase: str) -> Optional[str]:
    """"A of the B" / "A in the B" -> "B A" (None when the phrase has no such preposition)."""
    split = _preposition_split(phrase)
    return " ".join(split[1] + split[0]) if split else None


def _preposition_split(phrase: str):
    """``(A words, B words)`` of "A of / in / within / inside the B", or None."""
    words = normalize(phrase).split()
    for i, w in enumerate(words[1:], start=1):
        if w in ("of", "in", "within", "inside"):
            rest = [x for x in words[i + 1:] if x not in ("the", "a", "an")]
            if rest:
                return words[:i], rest
    return None


def _known(text: str, vocab: Vocabulary) -> Optional[PhraseHit]:
    term = exact_lookup(text, vocab)
    if term is not None:
        return PhraseHit([term], exact=True, grounded_text=text)
    terms = knowledge_lookup(text, vocab)
    return PhraseHit(terms, grounded_text=text) if terms else None


def ground_phrase(phrase: str, vocab: Vocabulary) -> Optional[PhraseHit]:
    """Knowledge-base terms named by ``phrase`` (stages in the module docstring), or None."""
    forms = [phrase]
    other = reordered(phrase)
    if other:
        # a filler head ("organs in the pelvis") says what kind of thing of the place is meant: the reordered
        # form ("pelvis organs") comes first, else the filler would drop and leave the place ("pelvis")
        head, place = _preposition_split(phrase)
        if all(w in FILLERS for w in head):
            forms.insert(0, " ".join(place + head[-1:]))   # "structure, organs in the pelvis" -> "pelvis organs"
        else:
            forms.append(other)
    for form in forms:
        hit = _known(form, vocab)
        if hit:
            return hit
    parts, positions = lexicon()["parts"], lexicon()["positions"]
    for form in forms:
        words = normalize(form).split()
        removed = [w for w in words if w in parts]
        kept = [w for w in words if w not in parts]
        while kept and kept[-1] in ("of", "the", "in"):
            kept.pop()
        while kept and kept[0] in ("of", "the"):
            kept.pop(0)
        if not removed:
            continue
        # the part words alone, then with the words placing the part on its whole ("lower pole")
        placed = [w for w in kept if w not in positions]
        for rest, dropped in ((kept, removed), (placed, removed + [w for w in kept if w in positions])):
            if rest and any(w not in SIDE_WORDS and w not in SIDE_LETTERS for w in rest):
                hit = _known(" ".join(rest), vocab)
                if hit and not any(vocab.terms[t].is_lesion for t in hit.terms if t in vocab.terms):
                    hit.part_words, hit.exact = dropped, False
                    return hit
    return _located(phrase, vocab)


def _located(phrase: str, vocab: Vocabulary) -> Optional[PhraseHit]:
    """"X in the Y": X when X names a structure on its own and Y names a place -- a lesion X only when it
    is a lesion of Y ("glioma in the brain"; "tumour in the stomach" names nothing)."""
    words = normalize(phrase).split()
    at = next((i for i, w in enumerate(words) if i and w in ("in", "within", "inside")), None)
    if at is None:
        return None
    head, place = _known(" ".join(words[:at]), vocab), _known(" ".join(words[at + 1:]), vocab)
    if head is None or place is None:
        return None
    where = {n for t in place.terms if t in vocab.terms
             for n in (t, vocab.terms[t].base, vocab.terms[t].parent) if n}
    lesions = [vocab.terms[t] for t in head.terms if t in vocab.terms and vocab.terms[t].is_lesion]
    if lesions and not all(t.lesion_of in where or t.lesion_of.replace("_", " ") in where for t in lesions):
        return None
    head.grounded_text, head.exact = " ".join(words[:at]), False
    return head
