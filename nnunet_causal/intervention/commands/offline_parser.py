"""The default, offline command parser: a grammar over the vocabulary and the causal knowledge base.

Steps (each documented where it lives):

1. the text is screened for prompt injection and out-of-scope requests (:data:`~.lexicon.INJECTION_PATTERNS`);
   a hit refuses the whole command -- it is data, never executed or used as a path;
2. sentences are split at ``. ! ? ;``; a question ("is the liver too small?") is not an edit, but a polite
   request is ("could you shrink the liver?": :data:`~.lexicon.REQUEST_PREFIX` is removed first);
3. sentences are split into clauses (:data:`~.lexicon.CLAUSE_SPLIT`), reasons ("because of the glare") kept
   apart, and each clause analysed (:mod:`.clause_analysis`);
4. clauses become actions: a clause without a cue lends its structures to its neighbour ("remove the
   spleen and the stomach"; "the liver and the spleen are too big"), a clause with only strength or
   location words refines the previous action, "it" / "them" refer to the last structures named, a
   removal or addition of part of a structure is a shrink / expand, an ignore verb or a statement about
   the acquisition ("this is a low-dose scan") is ``ignore_confounder`` resolved by causal retrieval;
5. a cue with no structure is an error naming the nearest known terms (or, for a one-structure model, that
   structure).

Choices where the seed is silent: a single ``refused`` string explains every empty result; a confounder
mentioned as the reason for a structure edit adds an ``ignore_confounder`` action on the same structures.
"""
from __future__ import annotations

import re
from typing import List, Optional

from nnunet_causal.errors import PromptError
from nnunet_causal.intervention.commands import lexicon as L
from nnunet_causal.intervention.commands.causal_knowledge import CausalKnowledge, find_phrases, load_causal_knowledge
from nnunet_causal.intervention.commands.causal_retrieval import resolve_confounder
from nnunet_causal.intervention.commands.clause_analysis import Clause, analyse_clause
from nnunet_causal.intervention.commands.schema import check_command_text
from nnunet_causal.text.resolver import nearest_terms
from nnunet_causal.text.vocabulary import Vocabulary

_SENTENCE = re.compile(r"(?<!\d)[.!?;]+|[.!?;]+(?!\d)|\n+")
_PARTIAL_ACTION = {"add": "expand", "remove": "shrink"}
_COMPONENT = re.compile(r"\b(?:island|islands|blob|blobs|speck|specks|fragment|fragments|spot|spots|component|"
                        r"components|piece|pieces|bit|bits|patch|patches|false positive|chunk|lump|lumps)\b")


def screen_injection(text: str) -> Optional[str]:
    """A refusal reason when ``text`` looks like prompt injection or an out-of-scope request."""
    low = text.lower()
    for pattern in L.INJECTION_PATTERNS:
        m = re.search(pattern, low)
        if m:
            return (f"refused: '{m.group(0).strip()}' is not a segmentation edit (the text looks like an "
                    f"instruction to the system; commands may only expand, shrink, remove, add structures or "
                    f"ignore an imaging confounder)")
    return None


def _sentences(text: str):
    pos = 0
    for m in list(_SENTENCE.finditer(text)) + [None]:
        end = m.start() if m else len(text)
        piece = text[pos:end]
        if piece.strip():
            yield piece, bool(m and "?" in m.group(0))
        if m:
            pos = m.end()


def _is_question(sentence: str, asked: bool) -> bool:
    if re.match(r"^(?:can|could|would|will)\b", sentence):
        return False  # "could the gallbladder be made larger?" is a polite request
    if re.match(L.QUESTION_START, sentence) and not re.match(r"^\w+ not\b", sentence):
        return True
    return asked


def _new_action(action: str, clause: Clause) -> dict:
    return {"action": action, "target": [], "strength": clause.strength or "moderate",
            "location": clause.location(), "confounder": None, "why": None, "_clause": clause}


def _clause_action(clause: Clause) -> Optional[tuple]:
    """``(action, cue)`` of a clause, or None when it has no cue (``ignore_confounder`` for statements)."""
    cues = clause.cues
    if not cues:
        if clause.confounder_words:  # "this is a low-dose scan", "the polyp is under a lot of glare"
            return "ignore_confounder", None
        return None
    cue = next((c for c in cues if c.kind == "override"), cues[0])
    confounder_cue = next((c for c in cues if c.action == "ignore_confounder"), None)
    if confounder_cue is not None:
        if clause.confounder_words or not clause.targets:
            return "ignore_confounder", confounder_cue
        return "remove", confounder_cue  # "ignore the spleen": leave it out
    if clause.confounder_words and cue.kind in ("pre", "any") and cue.action in ("remove", "add", "shrink"):
        first_structure = min((s.start for s in clause.structures), default=len(clause.tokens))
        after = " ".join(clause.tokens[cue.end:first_structure])
        if find_phrases(after, [w for w in clause.confounder_words]):
            return "ignore_confounder", cue  # "remove the glare on the polyp", "there is metal in the hip"
    action = cue.action
    if action in _PARTIAL_ACTION and clause.partial and not _COMPONENT.search(clause.text):
        action = _PARTIAL_ACTION[action]
    return action, cue


def _unknown_error(command: str, clause: Clause, vocabulary: Vocabulary, encoder) -> PromptError:
    phrase = " ".join(clause.unknown_words)
    near = nearest_terms(phrase, vocabulary, k=5, encoder=encoder)
    return PromptError(f"command '{command}': '{phrase}' is not a structure this vocabulary knows; nearest known "
                       f"terms: {', '.join(near)}")


def _not_in_model_error(command: str, clause: Clause, vocabulary: Vocabulary, encoder) -> Optional[PromptError]:
    missing = [s for s in clause.structures if not s.in_model]
    if not missing:
        return None
    near = nearest_terms(missing[0].text, vocabulary, k=5, encoder=encoder)
    return PromptError(f"command '{command}': '{missing[0].text}' ({', '.join(missing[0].terms)}) is not among the "
                       f"structures of this model; nearest known terms: {', '.join(near)}")


def parse_offline(command: str, vocabulary: Vocabulary, confounders=None, style_description: Optional[str] = None,
                  encoder=None, knowledge: Optional[CausalKnowledge] = None) -> dict:
    """Parse one command with the grammar (see the module docstring). Returns the schema's dict."""
    text = check_command_text(command)
    refusal = screen_injection(text)
    if refusal:
        return {"command": text, "actions": [], "refused": refusal}
    kb = knowledge or load_causal_knowledge()
    actions: List[dict] = []
    reasons = set()
    last_targets: List[str] = []
    for raw, asked in _sentences(text):
        sentence = L.prepare_clause(raw)
        stripped = re.sub(L.REQUEST_PREFIX, "", sentence.lstrip(", "))
        request = stripped != sentence
        if not stripped:
            continue
        if not request and _is_question(stripped, asked):
            reasons.add("question")  # not an edit, but "it" in the next sentence may mean what it names
            named = [t for part in re.split(L.CLAUSE_SPLIT, stripped) if part.strip(" ,")
                     for s in analyse_clause(" ".join(part.split()), vocabulary, kb, encoder).targets for t in s.terms]
            if named:
                last_targets[:] = named
            continue
        clauses = []
        for part in re.split(L.CLAUSE_SPLIT, stripped):
            pieces = re.split(f"({L.REASON_SPLIT})", part)
            clauses.append(analyse_clause(" ".join(pieces[0].split()), vocabulary, kb, encoder))
            for j in range(2, len(pieces), 2):
                clauses.append(analyse_clause(" ".join(pieces[j].split()), vocabulary, kb, encoder, reason=True))
        clauses = [c for c in clauses if c.tokens]
        _assemble(text, clauses, actions, reasons, last_targets, vocabulary, encoder)
    for a in actions:
        clause = a.pop("_clause")
        if a["action"] == "ignore_confounder":
            choice = resolve_confounder(clause.text, style_description, confounders, kb, encoder)
            a["confounder"], a["why"] = choice.entry, choice.why
        elif a["why"] is None:
            a["why"] = f"'{clause.text}': {a['action']} {', '.join(a['target'])}"
    actions = _merge(actions)
    refused = None
    if not actions:
        refused = _why_nothing(text, reasons)
    return {"command": text, "actions": actions, "refused": refused}


def _assemble(command: str, clauses: List[Clause], actions: List[dict], reasons: set, last_targets: List[str],
              vocabulary: Vocabulary, encoder) -> None:
    pending: List[str] = []
    previous: Optional[dict] = None  # the action of the previous clause of this sentence
    previous_pre = False
    for clause in clauses:
        error = _not_in_model_error(command, clause, vocabulary, encoder)
        if error:
            raise error
        targets = [t for s in clause.targets for t in s.terms]
        found = _clause_action(clause)
        if clause.negated and found is None:
            reasons.add("negated")
        if found is None:
            if any(re.search(p, clause.text) for p in L.APPROVAL_PATTERNS):
                reasons.add("approval")
                previous = None
                continue
            if targets and re.match(r"^(?:not|except|apart from|other than|excluding|without|but not)\b", clause.text):
                continue  # "shrink the liver but not the spleen"
            if targets:
                if previous is not None and previous_pre:
                    previous["target"] += targets
                    last_targets[:] = previous["target"]
                else:
                    pending += targets
            elif clause.unknown_words and previous is not None and previous_pre and not clause.strength \
                    and not clause.locations:
                raise _unknown_error(command, clause, vocabulary, encoder)
            elif previous is not None:
                if clause.strength:
                    previous["strength"] = clause.strength
                if clause.location():
                    previous["location"] = ", ".join(filter(None, [previous["location"], clause.location()]))
            continue
        action_name, cue = found
        if (action_name == "ignore_confounder" and not clause.confounder_words and not targets and previous
                is not None and previous["action"] == "ignore_confounder"):
            if clause.strength:  # "the image is very noisy, ignore that": one action
                previous["strength"] = clause.strength
            continue
        action = _new_action(action_name, clause)
        if action_name == "ignore_confounder":
            action["target"] = targets or (list(last_targets) if clause.reason else [])
        else:
            action["target"] = pending + targets
            if not action["target"]:
                action["target"] = _fallback_targets(command, clause, last_targets, vocabulary, encoder)
                action["location"] = clause.location()
        pending = []
        actions.append(action)
        if action_name != "ignore_confounder" and clause.confounder_words:
            # "the streak artefact from the implant made the bladder look too big": the cause is named too
            extra = _new_action("ignore_confounder", clause)
            extra["target"] = list(action["target"])
            actions.append(extra)
        if action["target"]:
            last_targets[:] = action["target"]
        previous = action
        previous_pre = cue is not None and cue.kind in ("pre", "confounder") and (
            not clause.targets or cue.start < clause.targets[0].start)
    if pending and previous is not None:
        previous["target"] += pending


def _other_side(clause: Clause, last_targets: List[str], vocabulary: Vocabulary) -> List[str]:
    """"the right one" after "the left kidney": the same base structure on the side named (the side word
    is then no longer a location)."""
    sides = [w for w in clause.locations if w in ("left", "right")]
    if not clause.pronoun or len(sides) != 1:
        return []
    bases = list(dict.fromkeys(vocabulary.terms[t].base for t in last_targets
                               if t in vocabulary.terms and vocabulary.terms[t].base))
    out = [m for b in bases for m in vocabulary.expand("base", b, sides[0])]
    if out:
        clause.locations.remove(sides[0])
    return out


def _fallback_targets(command: str, clause: Clause, last_targets: List[str], vocabulary: Vocabulary,
                      encoder) -> List[str]:
    swapped = _other_side(clause, last_targets, vocabulary)
    if swapped:
        return swapped
    if re.search(r"\b(?:everything|all (?:the )?(?:structures|organs|labels|masks|segmentations|of them)|"
                 r"every (?:structure|organ|label|mask)|each (?:structure|organ|label|mask))\b", clause.text):
        return list(vocabulary.terms)  # "shrink everything a bit"
    if clause.unknown_words and not clause.pronoun:
        raise _unknown_error(command, clause, vocabulary, encoder)
    if last_targets:
        return list(last_targets)
    if len(vocabulary.terms) == 1:
        return list(vocabulary.terms)
    if clause.unknown_words:
        raise _unknown_error(command, clause, vocabulary, encoder)
    shown = ", ".join(list(vocabulary.terms)[:8]) + (", ..." if len(vocabulary.terms) > 8 else "")
    raise PromptError(f"command '{command}': '{clause.text}' does not say which structure to change; name one "
                      f"(known: {shown})")


def _merge(actions: List[dict]) -> List[dict]:
    """One action per (action, targets): later strength / location words refine the first."""
    out: List[dict] = []
    for a in actions:
        a["target"] = list(dict.fromkeys(a["target"]))
        same = next((b for b in out if b["action"] == a["action"] and b["target"] == a["target"]
                     and b["confounder"] == a["confounder"]), None)
        if same is None:
            out.append(a)
            continue
        if a["strength"] != "moderate":
            same["strength"] = a["strength"]
        if a["location"] and a["location"] != same["location"]:
            same["location"] = ", ".join(filter(None, [same["location"], a["location"]]))
    return out


def _why_nothing(text: str, reasons: set) -> str:
    if "question" in reasons:
        return "no edit: the command is a question (ask for a change, e.g. \"shrink the liver a bit\")"
    if "approval" in reasons:
        return "no edit: the command accepts the result as it is"
    if "negated" in reasons:
        return "no edit: the command only says what not to change"
    return ("no edit: found no action (expand, shrink, remove, add, ignore a confounder) with a structure in "
            f"'{text}'")
