"""Lexical evidence for a match: the words a structure is named by, a prompt's head noun, and the words
that change the entity (seed 003: similarity alone "introduces new spurious correlations").

A prompt is read as a *head phrase* (up to the first preposition or relative pronoun: "large artery" in
"large artery from the heart") whose last word is the *head noun* and whose other words are its
*modifiers*, plus an optional "of" phrase naming the whole or the place ("cyst *of the kidney*", "cyst
*in the liver*"; other prepositional phrases, "*from* the heart", are context and checked for nothing). The embedding stage may only name
structure T (:func:`check_embedding_match`) when

1. no *entity word* of the head or "of" phrase is foreign to T. Entity words name something on their own:
   every single-word name and the head of every multi-word name in the knowledge base ("pulmonary",
   "artery", "vein", ...) plus :data:`OUTSIDE_ENTITIES`, findings and body parts that the vocabulary does
   not hold ("stone", "cyst", "tumour", "foot", ...): "kidney stone" is not the kidney;
2. no modifier is foreign to T: a vocabulary word that T's names lack ("femoral" artery is not the aorta)
   unless it is a mere :data:`DESCRIPTORS` word ("large", "main"); and, for a specific head, no modifier
   the vocabulary does not know ("coronary artery": in doubt, no match);
3. the head noun is known (a vocabulary or entity word) or generic ("organ"): an unknown head ("gastric
   ulcer", "guitar") is the real entity and unknown, so nothing matches;
4. and either the head agrees with T -- some name of T has the same head and the prompt has all of that
   name's non-descriptor modifiers (so "hepatic vein" does not agree with "hepatic portal vein"); a
   generic head agrees when another content word shares a stem with T's names ("organ that stores
   *bile*" / "*bili*ary") -- or T leads the runner-up structure by a margin.

Words that are not T's are reported as ``ignored``, those the vocabulary does not know also as ``unknown``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import FrozenSet, List, Optional, Sequence, Set, Tuple

from nnunet_causal.text.knowledge import Vocabulary
from nnunet_causal.text.label_text import label_to_text
from nnunet_causal.text.words import ARTICLES, FILLERS, ORDINALS, SIDE_WORDS, normalize, simple_singular

#: words that carry no content for grounding (besides the vocabulary's articles and fillers)
FUNCTION_WORDS = frozenset("""
    and or as well plus also along together with without that which who whose where what is are was be
    it from for by into onto near next behind above below under over between around inside outside within
    near from than then there here me i you we us please can could would should want like just only
    """.split())
#: generic heads: they say "some structure" and agree with any
GENERIC_HEADS = frozenset(FILLERS | {"thing", "system", "tube", "piece", "bit", "object", "anatomy"})
#: entity words the vocabulary does not hold: findings and body parts that must never be read as the
#: organ they sit in (a match to the bare organ is blocked)
OUTSIDE_ENTITIES = frozenset("""
    stone stones calculus calculi cyst cysts tumour tumours tumor tumors mass masses lesion lesions nodule
    nodules cancer carcinoma metastasis metastases abscess haematoma hematoma hemorrhage haemorrhage bleed
    infarct infarction aneurysm thrombus clot embolus plaque fracture stent implant catheter drain pacemaker
    graft transplant prosthesis fluid effusion ascites gas air fat artery arteries vein veins nerve nerves
    duct ducts ligament tendon lymph node nodes vessel vessels valve wall lumen mucosa capsule cortex
    medulla pelvis ureter urethra appendix rectum anus cecum caecum ovary ovaries testis testicle
    larynx pharynx tonsil tongue tooth teeth jaw mandible maxilla eye eyes orbit ear nose sinus mouth lip
    lips face neck head scalp skin hair nail breast nipple axilla armpit shoulder arm forearm elbow wrist
    hand finger thumb palm leg thigh knee shin calf ankle foot feet heel toe toes buttock groin navel
    tibia fibula patella radius ulna ilium ischium pubis coccyx talus calcaneus carpal tarsal phalanx
    """.split())


#: modifiers of size and rank that do not change which structure is meant
DESCRIPTORS = frozenset("""large small big little main major minor great greater lesser whole entire complete
    total normal human adult native common principal primary""".split())
#: prepositions whose phrase names the whole or the place of the head ("cyst *of the kidney*", "cyst *in the
#: liver*"): its entity words must be the structure's too
LOCATIVES = frozenset("of in within inside on at".split())
#: words that end the head phrase
BOUNDARIES = frozenset("""of from to that which who whose where with without near in on at for by around
    behind above below under over between inside outside within into onto next beside along""".split())


def stem(word: str) -> str:
    """A crude stem for sharing tests: plural and a final vowel removed ("bile" -> "bil")."""
    w = simple_singular(word)
    return w[:-1] if len(w) > 3 and w[-1] in "aeiouy" else w


def content_words(text: str) -> List[str]:
    """Words of ``text`` that may carry meaning: not articles, fillers, sides, ordinals or function words."""
    return [w for w in normalize(text).split()
            if w not in ARTICLES and w not in FILLERS and w not in SIDE_WORDS and w not in FUNCTION_WORDS
            and w not in ORDINALS and not w.isdigit()]


@lru_cache(maxsize=8)
def _entity_words_cached(key: int, names: Tuple[Tuple[str, ...], ...]) -> FrozenSet[str]:
    out = set(OUTSIDE_ENTITIES)
    for name in names:
        ws = content_words(" ".join(name))
        if len(ws) == 1:
            out.add(ws[0])
        if ws:
            out.add(head_of(list(name)) or ws[-1])
    return frozenset(out - GENERIC_HEADS)


def _all_names(vocabulary: Vocabulary) -> List[Tuple[str, ...]]:
    names = []
    for t in vocabulary.terms.values():
        for s in [label_to_text(t.name), *t.synonyms]:
            names.append(tuple(normalize(s).split()))
    for base, syns in vocabulary.bases.items():
        for s in [base, *syns]:
            names.append(tuple(normalize(s).split()))
    for g in vocabulary.groups:
        names.append(tuple(normalize(g).split()))
    return names


def entity_words(vocabulary: Vocabulary) -> FrozenSet[str]:
    """Words that name an entity on their own (module docstring, rule 1)."""
    def build():
        names = tuple(sorted(set(_all_names(vocabulary))))
        return _entity_words_cached(hash(names), names)
    return vocabulary.memo("entity words", build)


def head_of(words: Sequence[str], known: Optional[Set[str]] = None) -> Optional[str]:
    """Head noun of a phrase: the last content word (restricted to ``known`` words when given) before
    "of" if the phrase has one, else of the whole phrase."""
    words = list(words)
    if "of" in words[1:]:
        words = words[: words.index("of", 1)]
    ws = content_words(" ".join(words))
    if known is not None:
        ws = [w for w in ws if w in known or simple_singular(w) in known]
    return ws[-1] if ws else None


def term_words(vocabulary: Vocabulary, terms: Sequence[str]) -> Set[str]:
    """Every word of the names of ``terms``: synonyms, readable label, base names and the groups that
    contain them (singular forms added)."""
    words: Set[str] = set()
    wanted = set(terms)
    for name in terms:
        t = vocabulary.terms.get(name)
        if t is None:
            continue
        texts = [label_to_text(name), name, *t.synonyms]
        if t.base:
            texts += [t.base, *vocabulary.bases.get(t.base, [])]
        for text in texts:
            words.update(normalize(text).split())
    for g, spec in vocabulary.groups.items():
        target = vocabulary.groups.get(spec["alias"], {}) if "alias" in spec else spec
        if wanted & set(target.get("all", [])):
            words.update(normalize(g).split())
    return words | {simple_singular(w) for w in words}


def supports(word: str, words: Set[str]) -> bool:
    """``word`` (or its singular) is one of ``words``, or shares a stem of >= 3 letters with one."""
    if word in words or simple_singular(word) in words:
        return True
    s = stem(word)
    return len(s) >= 3 and any(w.startswith(s) for w in words if len(w) >= len(s))


def _tokens(words: Sequence[str]) -> List[str]:
    return [w for w in words if w not in ARTICLES and w not in BOUNDARIES and w not in SIDE_WORDS and w not in ORDINALS
            and not w.isdigit() and w not in FUNCTION_WORDS]


def phrases(text: str) -> Tuple[List[str], List[str]]:
    """``(head phrase, of phrase)`` of ``text`` as word lists (articles, sides and numbers removed); the
    head noun is the last word of the head phrase, the "of" phrase follows a :data:`LOCATIVES` word."""
    words = normalize(text).split()
    first = next((i for i, w in enumerate(words) if w not in ARTICLES), len(words))
    cut = next((i for i, w in enumerate(words) if i > first and w in BOUNDARIES), len(words))
    head, of = words[:cut], []
    if cut < len(words) and words[cut] in LOCATIVES:
        rest = words[cut + 1:]
        end = next((i for i, w in enumerate(rest) if w in BOUNDARIES), len(rest))
        of = rest[:end]
    return _tokens(head), _tokens(of)


def _names_of(vocabulary: Vocabulary, term: str) -> List[str]:
    t = vocabulary.terms[term]
    names = [label_to_text(term), *t.synonyms]
    if t.base:
        names += [t.base, *vocabulary.bases.get(t.base, [])]
    return names


@dataclass
class Evidence:
    """Outcome of :func:`check_embedding_match` and the word accounting shown to the user."""
    accepted: bool
    reason: str = ""
    head: Optional[str] = None
    used: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    unknown: List[str] = field(default_factory=list)
    blocking: List[str] = field(default_factory=list)


def account_words(prompt: str, vocabulary: Vocabulary, terms: Sequence[str]) -> Tuple[List[str], List[str], List[str]]:
    """``(used, ignored, unknown)`` words of ``prompt`` for a match to ``terms``: used are the words of
    the terms' names, side words and numbers; unknown are content words the vocabulary does not know."""
    own = term_words(vocabulary, terms)
    known = vocabulary.words | entity_words(vocabulary)
    used, ignored, unknown = [], [], []
    content = set(content_words(prompt))
    for w in normalize(prompt).split():
        if w in SIDE_WORDS or w in ORDINALS or any(c.isdigit() for c in w) or supports(w, own):
            used.append(w)
        else:
            ignored.append(w)
            if w in content and w not in known and simple_singular(w) not in known:
                unknown.append(w)
    return used, ignored, unknown


def _is_known(word: str, known: Set[str]) -> bool:
    return word in known or simple_singular(word) in known


def _head_agrees(head: str, prompt_words: Set[str], vocabulary: Vocabulary, term: str) -> bool:
    """Some name of ``term`` has ``head`` as head noun and all its non-descriptor modifiers are in the prompt."""
    for name in _names_of(vocabulary, term):
        name_head, _ = phrases(name)
        name_head = [w for w in name_head if w not in GENERIC_HEADS] or name_head
        if not name_head or not supports(head, {name_head[-1], simple_singular(name_head[-1])}):
            continue
        if all(w in DESCRIPTORS or supports(w, prompt_words) for w in name_head[:-1]):
            return True
    return False


#: prepositions whose phrase says where a structure runs or comes from, not what it is ("the tube *from
#: the throat* to the stomach" is not the throat)
DIRECTIONAL = frozenset("from to into toward towards between via through".split())


def _describing_words(prompt: str) -> List[str]:
    """Content words of ``prompt`` outside directional phrases (:data:`DIRECTIONAL`)."""
    out, skip = [], False
    for w in normalize(prompt).split():
        if w in DIRECTIONAL:
            skip = True
        elif w in BOUNDARIES or w in ("that", "which", "who"):
            skip = False
        if not skip:
            out.append(w)
    return content_words(" ".join(out))


def check_embedding_match(prompt: str, vocabulary: Vocabulary, term: str, margin: float,
                          min_margin: float) -> Evidence:
    """May the embedding stage name ``term`` for ``prompt``? ``margin`` is its similarity lead over the
    best structure of another base (rules 1-4 in the module docstring)."""
    own = term_words(vocabulary, [term])
    entities = entity_words(vocabulary)
    known = set(vocabulary.words) | entities
    used, ignored, unknown = account_words(prompt, vocabulary, [term])
    ev = Evidence(False, used=used, ignored=ignored, unknown=unknown)
    head_phrase, of_phrase = phrases(prompt)
    if not head_phrase:
        ev.reason = "the prompt has no content word"
        return ev
    head, modifiers = head_phrase[-1], [w for w in head_phrase[:-1] if w not in GENERIC_HEADS]
    generic = head in GENERIC_HEADS
    ev.head = head
    # 1. entity words foreign to the structure
    ev.blocking = [w for w in head_phrase + of_phrase if _is_known(w, entities) and not supports(w, own)]
    # 2. modifiers foreign to the structure (known and not descriptors; unknown, for a specific head)
    ev.blocking += [w for w in modifiers if w not in ev.blocking and not supports(w, own) and w not in DESCRIPTORS
                    and (_is_known(w, known) or not generic)]
    if ev.blocking:
        ev.reason = f"{', '.join(repr(w) for w in ev.blocking)} may name something other than {term}"
        return ev
    # 3. an unknown head noun is the real entity
    if not generic and not _is_known(head, known):
        ev.reason = f"head noun {head!r} is not a known structure word"
        return ev
    # 4. head agreement, or a margin over the runner-up
    words = set(normalize(prompt).split())
    if generic:
        agree = any(supports(w, own) for w in _describing_words(prompt) if w not in GENERIC_HEADS)
    else:
        agree = _head_agrees(head, words, vocabulary, term)
    if agree or margin >= min_margin:
        ev.accepted = True
        return ev
    ev.reason = (f"head noun {head!r} does not agree with {term} and its lead over the runner-up "
                 f"({margin:.2f}) is below {min_margin:.2f}")
    return ev
