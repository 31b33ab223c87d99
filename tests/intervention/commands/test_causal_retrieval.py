"""Causal retrieval: the knowledge base file, ranking by shared causes (embeddings only break ties), vague
commands resolved from the case's style, and the exemplar bank."""
from __future__ import annotations

import pytest
import torch

from nnunet_causal.errors import DatasetError
from nnunet_causal.intervention.commands.causal_knowledge import find_phrases, load_causal_knowledge
from nnunet_causal.intervention.commands.causal_retrieval import ExemplarBank, rank_causes, resolve_confounder


class KeywordEncoder:
    """Fake text encoder: texts containing ``favourite`` point one way, everything else another."""

    def __init__(self, favourite: str):
        self.favourite = favourite

    def encode(self, texts):
        rows = [[1.0, 0.0] if self.favourite in t.lower() else [0.0, 1.0] for t in texts]
        rows[0] = [0.8, 0.6]  # the query
        return torch.tensor(rows)


def test_shipped_knowledge_base_covers_the_causes_the_issue_names():
    kb = load_causal_knowledge()
    names = {c.name for c in kb.causes}
    assert {"metal implant", "low dose", "contrast phase", "narrow-band imaging", "breathing motion",
            "bowel preparation", "specular reflection"} <= names
    metal = kb.cause("metal implant")
    assert "streaks" in metal.effects and "metal_streaks" in metal.simulators
    words = metal.terms + metal.effects["streaks"]
    assert find_phrases("streaks from a hip prosthesis", words) == ["prosthesis", "streak"]
    assert find_phrases("low noise, no specular highlights", ["noise", "specular highlights"]) == []


def test_command_cause_beats_embedding_similarity():
    # the encoder prefers the metal cause, but the command names low dose: shared causes decide
    choice = resolve_confounder("this is a low-dose scan", encoder=KeywordEncoder("metal"))
    assert choice.cause == "low dose" and "low-dose" in choice.entry


def test_embedding_similarity_breaks_ties_only():
    # "noise" is an effect of low dose (CT), low signal (MRI) and sensor noise (endoscopy): a tie
    ranked = rank_causes("ignore the noise")
    tied = [r.cause.name for r in ranked if r.key[:4] == ranked[0].key[:4]]
    assert {"low dose", "low signal", "compression and sensor noise"} <= set(tied)
    assert resolve_confounder("ignore the noise", encoder=KeywordEncoder("low signal")).cause == "low signal"
    assert resolve_confounder("ignore the noise", encoder=KeywordEncoder("low dose")).cause == "low dose"
    # the style's family is a shared cause, not a tie-break: an endoscopy frame means sensor noise
    choice = resolve_confounder("ignore the noise", "white-light colonoscope frame, high noise",
                                encoder=KeywordEncoder("low dose"))
    assert choice.cause == "compression and sensor noise"


def test_vague_command_resolved_from_the_style_with_reasoning():
    style = "scanner scannerB, portal venous phase, moderate noise, sharp kernel, metal streak artefacts"
    choice = resolve_confounder("ignore the artefact", style)
    assert choice.cause == "metal implant" and choice.entry == "a CT scan with metal streak artefacts"
    assert "vaguely" in choice.why and "metal" in choice.why and "streaks" in choice.why
    choice = resolve_confounder("this is an arterial phase scan")
    assert choice.entry == "an arterial-phase contrast-enhanced CT scan"


def test_restricted_dictionary_and_text_only_entries(tmp_path):
    own = tmp_path / "dictionary.txt"
    own.write_text("a frame with stool residue and poor bowel preparation\nan overexposed frame :: exposure\n")
    choice = resolve_confounder("the bowel prep was bad", confounders=str(own))
    assert choice.entry == "a frame with stool residue and poor bowel preparation"
    assert resolve_confounder("ignore the metal streaks", confounders=str(own)).entry is None


@pytest.mark.parametrize("body, message", [
    ("causes: {}\n", "non-empty 'causes'"),
    ("causes:\n  x:\n    kind: weird\n    families: [ct]\n    terms: [a]\n", "kind 'weird'"),
    ("causes:\n  x:\n    families: [ct]\n    terms: [a]\n    confounders: [no_such_sim]\n", "no_such_sim"),
    ("causes:\n  x:\n    families: [pet]\n    terms: [a]\n", "families must be"),
    ("causes:\n  x:\n    families: [ct]\n    terms: []\n", "at least one term"),
    ("causes: [\n", "not readable YAML"),
])
def test_broken_knowledge_base_names_file_and_cause(tmp_path, body, message):
    path = tmp_path / "kb.yaml"
    path.write_text(body)
    with pytest.raises(DatasetError, match=message) as err:
        load_causal_knowledge(str(path))
    assert str(path) in str(err.value)


def test_exemplar_bank_ranks_by_shared_causes():
    bank = ExemplarBank.from_dataset_json({"domains": {
        "case_a": {"domain": "siteA", "style": "scanner A, metal streak artefacts, high noise"},
        "case_b": {"domain": "siteB", "style": "scanner B, hip prosthesis, quantum noise"},
        "case_c": {"domain": "siteC", "style": "scanner C, metal clips"},
        "case_d": {"domain": "siteD", "style": "scanner D, low noise, sharp"}}})
    assert bank.causes_of("case_a") == {"metal implant": ["streak", "metal"], "low dose": ["noise"]}  # CT only
    hits = bank.retrieve("case_a")
    assert [(h["case"], h["shared_causes"]) for h in hits] == [("case_b", ["low dose", "metal implant"]),
                                                               ("case_c", ["metal implant"])]  # d: "low noise"
    with pytest.raises(DatasetError, match="no 'domains'"):
        ExemplarBank.from_dataset_json({"labels": {}})
    with pytest.raises(DatasetError, match="no case 'zzz'"):
        bank.style_of("zzz")
