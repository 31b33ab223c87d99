"""Prompt grounding on the development set and its stages."""
import json
from pathlib import Path

import pytest

from nnunet_causal.text.resolver import nearest_terms, resolve_prompt
from nnunet_causal.text.vocabulary import load_vocabulary, vocabulary_from_labels

# a copy of the project's development prompts (../shared/eval/prompts_dev.tsv), kept with the tests
DEV_COPY = Path(__file__).with_name("prompts_dev.tsv")


def dev_lines():
    src = DEV_COPY
    for line in src.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            prompt, answer = line.split("\t")
            yield prompt, answer


@pytest.fixture(scope="module")
def minilm():
    from nnunet_causal.text.embedding_cache import get_text_encoder
    return get_text_encoder("minilm")


@pytest.mark.parametrize("use_embedding", [False, True])
def test_development_set(use_embedding, minilm):
    vocab = load_vocabulary("all")
    failures = []
    for prompt, answer in dev_lines():
        res = resolve_prompt(prompt, vocab, encoder=minilm if use_embedding else None)
        if answer == "-":
            ok = res.terms == []
        else:
            ok = sorted(res.terms) in [sorted(a.split("+")) for a in answer.split("|")]
        if not ok:
            failures.append((prompt, res.terms))
    assert not failures


def test_vocabulary_sizes():
    assert len(load_vocabulary("total").terms) == 117
    assert len(load_vocabulary("btcv").terms) == 13
    assert len(load_vocabulary("amos").terms) == 15


@pytest.mark.parametrize("prompt,terms,method", [
    ("kidney_left", ["kidney_left"], "exact"),
    ("Left Kidney", ["kidney_left"], "exact"),
    ("kidney on the left", ["kidney_left"], "knowledge"),
    ("ren dexter", ["kidney_right"], "knowledge"),
    ("left lung", ["lung_upper_lobe_left", "lung_lower_lobe_left"], "knowledge"),
    ("twelfth thoracic vertebra", ["vertebrae_T12"], "knowledge"),
    ("3rd right rib", ["rib_right_3"], "knowledge"),
    ("both adrenals", ["adrenal_gland_right", "adrenal_gland_left"], "knowledge"),
])
def test_knowledge_stages(prompt, terms, method):
    res = resolve_prompt(prompt, load_vocabulary("all"))
    assert (res.terms, res.method) == (terms, method)


def test_laterality_never_confused(minilm):
    vocab = load_vocabulary("all")
    for side, other in (("left", "right"), ("right", "left")):
        for p in (f"{side} kidney", f"kidney {side}", f"{side}-sided kidney", f"the {side} renal organ"):
            assert resolve_prompt(p, vocab, encoder=minilm).terms == [f"kidney_{side}"], p


def test_embedding_stage_and_rejection(minilm):
    vocab = load_vocabulary("all")
    res = resolve_prompt("organ that stores bile", vocab, encoder=minilm)
    assert res.method == "embedding" and res.terms == ["gallbladder"]
    for junk in ("banana bread recipe", "the weather tomorrow", "football"):
        assert resolve_prompt(junk, vocab, encoder=minilm).terms == []


def test_restricted_vocabulary_rejects_known_structures_it_lacks(minilm):
    btcv = load_vocabulary("btcv")
    assert resolve_prompt("femur", btcv, encoder=minilm).terms == []
    assert resolve_prompt("kidneys", btcv).terms == ["kidney_right", "kidney_left"]


def test_model_vocabulary_maps_terms_to_label_names():
    vocab = vocabulary_from_labels({"background": 0, "left_kidney_custom": 1, "lesion": 2},
                                   {"left_kidney_custom": ["left kidney"], "lesion": ["red spot"]})
    assert vocab.label_for_term("kidney_left") == "left_kidney_custom"
    assert vocab.label_for_term("lesion") == "lesion"
    assert resolve_prompt("red spot", vocab).terms == ["lesion"]
    assert "lesion" in nearest_terms("lesoin", vocab)


def test_resolve_cli_prints_json_lines(capsys):
    from nnunet_causal.cli import main
    assert main(["resolve", "--no-embedding", "liver", "banana"]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert lines[0]["terms"] == ["liver"] and lines[1]["terms"] == []
    assert set(lines[0]) >= {"prompt", "terms", "score"}
