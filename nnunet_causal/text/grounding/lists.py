"""Split a prompt that names several structures ("A and B", "A, B and C", "A as well as B", "A + B",
"A & B", "A/B", "A plus B", "A along with B").

Each part is grounded on its own by the resolver and the result is the union. Two kinds of
sharing between parts are undone here, before grounding, so that every part is a complete phrase:

* a part made only of modifiers borrows the noun of the next full part: "left and right kidney" ->
  "left kidney", "right kidney"; "fourth and fifth lumbar vertebrae" -> "fourth lumbar vertebrae", ...;
* laterality distributes *where written*: a side word that opens the first part is given to later parts
  that have no side of their own and are not the explicit plural of another noun ("left kidney and
  adrenal" -> "left adrenal", but "left kidney and adrenals" keeps both adrenals); a side that closes the last part ("kidney and adrenal on the left") is given to the earlier
  parts. A side written inside a middle part stays with that part;
* an organ word distributes to a later part that is a bare lesion noun: "renal cysts and tumours" ->
  "renal cysts", "renal tumours" (a tumour alone would be any tumour); the lesion noun of a last part
  "organ lesions" goes back to earlier one-word parts: "liver and kidney lesions" -> "liver lesions",
  "kidney lesions".

"or" is not a separator: "prostate or uterus" is one structure of AMOS, and "A or B" asks for one of them.
The resolver tries the whole prompt in the knowledge base first, so names that contain "and"
("portal vein and splenic vein") are never split.
"""
from __future__ import annotations

import re
from typing import List, Optional

from nnunet_causal.text.words import ARTICLES, FILLERS, ORDINALS, SIDE_WORDS, normalize

_SEPARATOR = re.compile(r"\s*(?:,|;|\+|&|/|\band also\b|\bas well as\b|\balong with\b|\btogether with\b"
                        r"|\bplus\b|\band\b)\s*", re.IGNORECASE)
_ORDINAL_FORM = re.compile(r"^(?:\d{1,2}(?:st|nd|rd|th)?)$")
#: nouns that name a lesion only together with the organ it is of
_LESION_NOUNS = {"tumor", "tumors", "tumour", "tumours", "cyst", "cysts", "lesion", "lesions", "mass", "masses",
                 "nodule", "nodules", "metastasis", "metastases", "cancer", "cancers", "stone", "stones"}


def has_separator(prompt: str) -> bool:
    return bool(_SEPARATOR.search(prompt))


def _is_modifier(word: str) -> bool:
    return word in SIDE_WORDS or word in ORDINALS or bool(_ORDINAL_FORM.match(word))


def _content(part: str) -> List[str]:
    return [w for w in normalize(part).split() if w not in ARTICLES]


def _plural(word: str) -> bool:
    return len(word) > 3 and word.endswith("s") and not word.endswith("ss")


def split_list(prompt: str) -> Optional[List[str]]:
    """The parts of a list prompt as self-contained phrases, or None when ``prompt`` is not a list
    (fewer than two non-empty parts). A part of filler words alone ("structure" of "Target structure: the
    liver") is no item: it is dropped, and the one part left is returned alone."""
    raw = [p for p in _SEPARATOR.split(prompt) if p and normalize(p)]
    if len(raw) < 2:
        return None
    items = [p for p in raw if not all(w in FILLERS for w in _content(p))]
    if len(items) == 1:
        return [" ".join(_content(items[0]))]
    raw = items
    if len(raw) < 2:
        return None
    words = [_content(p) for p in raw]
    # 1. modifier-only parts borrow the noun of the next full part
    for i, ws in enumerate(words):
        if ws and all(_is_modifier(w) for w in ws):
            nxt = next((w for w in words[i + 1:] if w and not all(_is_modifier(x) for x in w)), None)
            if nxt is not None:
                # skip the next part's own modifiers of the kinds this part gives ("3rd and 4th right ribs":
                # the ordinal is replaced, the side is shared)
                sides, numbers = any(w in SIDE_WORDS for w in ws), any(w not in SIDE_WORDS for w in ws)
                k = 0
                while k < len(nxt) and _is_modifier(nxt[k]) and (sides if nxt[k] in SIDE_WORDS else numbers):
                    k += 1
                words[i] = ws + nxt[k:]
    words = [ws for ws in words if ws]
    if len(words) < 2:
        return None
    # 2. laterality written at the start of the first part or at the end of the last part distributes
    sided = [any(w in SIDE_WORDS for w in ws) for ws in words]
    lead = words[0][0] if words[0][0] in SIDE_WORDS else None
    trail = None
    if words[-1][-1] in SIDE_WORDS and len(words[-1]) > 1:
        trail = words[-1][-1]
    for i, ws in enumerate(words):
        # an explicit plural of another structure keeps both sides ("left kidney and adrenals"); the plural
        # of a shared noun does not ("left 3rd and 4th ribs")
        if sided[i] or (_plural(ws[-1]) and ws[-1] != words[0][-1]):
            continue
        if lead is not None and i > 0:
            words[i] = [lead] + ws
        elif trail is not None and i < len(words) - 1:
            words[i] = ws + [trail]
    # 3. the organ words of the first part go to later parts that are a bare lesion noun
    organ = [w for w in words[0][:-1] if w not in SIDE_WORDS]
    if organ and words[0][-1] in _LESION_NOUNS:
        words = [ws if i == 0 or len(ws) != 1 or ws[0] not in _LESION_NOUNS else organ + ws
                 for i, ws in enumerate(words)]
    # 4. the lesion noun of a last part "organ lesions" goes back to earlier parts of one bare word
    elif len(normalize(raw[-1]).split()) == 2 and words[-1][-1] in _LESION_NOUNS \
            and words[-1][0] not in _LESION_NOUNS:   # "liver and the kidney tumour" is not shared
        noun = words[-1][-1]
        words = [ws + [noun] if len(ws) == 1 and ws[0] not in _LESION_NOUNS and ws[0] not in SIDE_WORDS else ws
                 for ws in words[:-1]] + [words[-1]]
    return [" ".join(ws) for ws in words]
