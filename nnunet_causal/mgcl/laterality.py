"""Laterality-swapped hard negatives for MGCL (an addition to seed 002, section III.C).

A caption of a paired organ names its side ("The left kidney is small."). Its *mirror caption* -- the same
sentence with left and right exchanged ("The right kidney is small.") -- differs from it only in the side
word, so it is the hardest possible negative for that organ: the organ -> caption InfoNCE of
:func:`~nnunet_causal.mgcl.losses.mgcl_loss` gets it as an extra negative of its own organ, and the text
encoder can lower that loss only by encoding the side. (The other organ's real captions are negatives too
when both organs are in the batch -- they are "the captions of the other organs" of the loss -- but one
kidney is often alone in a patch, absent, or paired with a sentence that also differs in size or lesion
words; the mirror caption isolates laterality.)

Choices, so that no mirror caption is a false negative:

* only captions of *lateral* structures are mirrored, i.e. labels whose name names a side
  (``kidney_left``, ``Left-Kidney``, ``Parotid_L``); "the right lobe of the liver" stays untouched;
* only captions naming exactly one side: "the left and right kidneys are normal" mirrored means the same;
* side words are the whole words ``left`` / ``right`` (case kept); ``sinister`` / ``dexter`` and
  abbreviations are not mirrored.
"""
from __future__ import annotations

import re
from typing import Iterable, List, Optional

from nnunet_causal.text.words import side_of_label

_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def is_lateral_label(label: str) -> bool:
    """Whether a label name names a side (``kidney_left``, ``Right-Kidney``, ``Parotid_L``;
    :func:`nnunet_causal.text.words.side_of_label`)."""
    return side_of_label(label) is not None


def mirror_caption(text: str) -> Optional[str]:
    """``text`` with ``left`` and ``right`` exchanged (case kept), or None when it names no side or both."""
    sides = {m.group(1).lower() for m in _SIDE.finditer(text)}
    if len(sides) != 1:
        return None

    def swap(m: re.Match) -> str:
        word = m.group(1)
        other = "right" if word.lower() == "left" else "left"
        return other.upper() if word.isupper() else (other.capitalize() if word[0].isupper() else other)

    return _SIDE.sub(swap, text)


def mirror_negatives(label: str, captions: Iterable[str]) -> List[str]:
    """The distinct mirror captions of a lateral structure's captions (empty for a non-lateral label)."""
    if not is_lateral_label(label):
        return []
    own = set(captions)
    out = [m for m in (mirror_caption(t) for t in own) if m is not None and m not in own]
    return sorted(set(out))
