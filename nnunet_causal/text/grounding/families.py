"""Whole families named by a kind of structure and, optionally, a body region: "all bones", "the skeleton",
"blood vessels", "arteries of the neck", "pelvic veins", "muscles of the left arm".

The last step of the knowledge stage (:func:`~nnunet_causal.text.grounding.lookup.knowledge_lookup`), tried
only when no name, group or part matched. Members come from the knowledge base's own attributes
(``resources/vocabulary.json``: ``system``, ``region``, ``side``, ``parent``, ``lesion_of``), never from
surface similarity:

* kind -- ``bones`` / ``skeleton``: the skeletal system without cartilages and discs; ``muscles`` /
  ``musculature``: the muscular system; ``vessels`` / ``blood vessels`` / ``vasculature``: cardiovascular
  structures named as an artery, a vein, the aorta, a vena cava, a trunk or a sinus (not the heart, its
  chambers, valves or the pericardium); ``arteries`` and ``veins``: the two halves of that;
* region -- an adjective or noun before the kind ("pelvic veins") or after "of" / "in" ("arteries of the
  neck"): head, neck, head and neck, chest / thorax, abdomen, pelvis, back / spine, arm / upper limb,
  leg / lower limb. None: the whole body;
* side -- "left" / "right" keeps the members of that side;
* lesions, labels that are the union of their parts, and parts whose whole is already a member are
  left out.

A kind noun must be plural, follow "all" / "every", or be a collective ("skeleton"): "the bone" names
nothing. Curated families that attributes cannot express (the head-and-neck organs at risk, the abdominal
organs) are groups of the knowledge base, found before this step.
"""
from __future__ import annotations

from typing import List, Optional

from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.words import simple_singular

#: kind word -> (kind, collective: names the whole set in the singular)
KINDS = {"bone": ("bone", False), "skeleton": ("bone", True), "muscle": ("muscle", False),
         "musculature": ("muscle", True), "vessel": ("vessel", False), "blood vessel": ("vessel", False),
         "vasculature": ("vessel", True), "artery": ("artery", False), "vein": ("vein", False)}
#: region words -> regions of the knowledge base
REGIONS = {"head": ("head",), "cranial": ("head",), "neck": ("neck",), "cervical": ("neck",),
           "head and neck": ("head", "neck"), "chest": ("thorax",), "thoracic": ("thorax",), "thorax": ("thorax",),
           "abdomen": ("abdomen",), "abdominal": ("abdomen",), "pelvis": ("pelvis",), "pelvic": ("pelvis",),
           "back": ("spine",), "spine": ("spine",), "spinal": ("spine",), "arm": ("upper_limb",),
           "upper limb": ("upper_limb",), "upper extremity": ("upper_limb",), "leg": ("lower_limb",),
           "lower limb": ("lower_limb",), "lower extremity": ("lower_limb",)}
_QUANTIFIERS = {"all", "every", "each", "entire", "whole"}
_DROPPED = {"the", "of", "in", "within", "a", "an"}
_ARTERY = ("arter", "aorta", "trunk")
_VEIN = ("vein", "vena", "venous")


def _split(words: List[str]):
    """``(kind, region words, counted)`` of a family phrase, or None."""
    counted = any(w in _QUANTIFIERS for w in words)
    words = [w for w in words if w not in _QUANTIFIERS and w not in _DROPPED]
    for n in (2, 1):   # kind last ("pelvic veins") or first ("arteries of the neck")
        for kind_words, region_words in ((words[-n:], words[:-n]), (words[:n], words[n:])):
            if len(kind_words) < n:
                continue
            singular = [simple_singular(w) for w in kind_words]
            key = " ".join(singular)
            if key in KINDS:
                plural = singular != kind_words
                return KINDS[key], " ".join(region_words), counted or plural
    return None


def _is_kind(name: str, system: Optional[str], kind: str) -> bool:
    if kind == "bone":
        return system == "skeletal" and "cartilage" not in name and "disc" not in name
    if kind == "muscle":
        return system == "muscular"
    if system != "cardiovascular":
        return False
    artery, vein = any(k in name for k in _ARTERY), any(k in name for k in _VEIN)
    if kind == "artery":
        return artery
    if kind == "vein":
        return vein
    return artery or vein or "vessel" in name or "sinus" in name


def family_terms(words: List[str], side: Optional[str], vocab: Vocabulary) -> Optional[List[str]]:
    """Terms of ``vocab`` in the family ``words`` name (normalised, side words removed), or None."""
    split = _split(words)
    if split is None:
        return None
    (kind, collective), region_text, counted = split
    if not (counted or collective) or (region_text and region_text not in REGIONS):
        return None
    regions = REGIONS.get(region_text)
    members = [t for t in vocab.terms.values()
               if _is_kind(t.name, t.system, kind) and not t.is_lesion and not t.union
               and (regions is None or t.lies_in(regions))
               and (side not in ("left", "right") or t.side == side)]
    names = {t.name for t in members}
    kept = [t.name for t in members if not any(a in names for a in vocab.ancestors_of(t.name))]
    return vocab.order(kept) or None
