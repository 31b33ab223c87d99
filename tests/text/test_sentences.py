"""Sentences ground like the structure phrase they hold; parts widen with a note; sets stay sets; bad
prompts are one-line errors; a model refuses what it was not trained on."""
import json

import pytest

from nnunet_causal.errors import PromptError
from nnunet_causal.text.knowledge import knowledge_base
from nnunet_causal.text.resolver import resolve_phrase, resolve_prompt
from nnunet_causal.text.vocabulary import load_vocabulary, vocabulary_from_labels

SPINE = 26


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary("all")


@pytest.mark.parametrize("sentence,plain", [
    ("Segmentation of the left kidney on contrast-enhanced abdominal CT", "left kidney"),
    ("Outline the spleen in this MRI", "spleen"),
    ("Pancreas as depicted on portal-venous phase imaging", "pancreas"),
    ("Delineate the urinary bladder in pelvic CT", "urinary bladder"),
    ("Right femoral head anatomy in whole-body CT", "right femur"),
    ("Could you delineate the right lung in this chest X-ray?", "right lung"),
    ("Kidneys on T2-weighted MR images", "kidneys"),
    ("CT scan: portal vein", "portal vein"),
    ("celiac trunk MR", "celiac trunk"),
    ("the spleen along with the pancreas", "spleen and pancreas"),
    ("Segment the liver, which is enlarged", "liver"),
    ("3D segmentation of the lt femur in CT", "left femur"),
    ("brain MRI", "brain"),
])
def test_a_sentence_grounds_like_its_structure_phrase(sentence, plain, vocab):
    res = resolve_prompt(sentence, vocab)
    assert res.terms and res.terms == resolve_prompt(plain, vocab).terms, res.as_dict()


def test_context_words_are_recorded_not_matched(vocab):
    res = resolve_prompt("Segmentation of the left kidney on contrast-enhanced abdominal CT", vocab)
    e = res.as_dict()["explanation"]
    assert e["structure_words"] == ["kidney"] and e["side_words"] == ["left"]
    assert e["context"]["modality"] == ["ct"] and e["context"]["region"] == ["abdominal"]
    assert "segmentation" in e["context"]["task"] and e["contradictions"] == []
    assert json.loads(json.dumps(res.to_dict()))["explanation"] == e      # plain data


def test_a_contradicting_context_is_reported(vocab):
    res = resolve_prompt("Segment the brainstem on abdominal CT", vocab)
    assert res.terms == ["brainstem"] and "abdomen" in res.explanation["contradictions"][0]


@pytest.mark.parametrize("prompt,n", [("vertebral structures", SPINE), ("ribs", 24), ("the kidneys", 2),
                                      ("Segment all vertebrae on CT", SPINE), ("both lungs", 5)])
def test_plurals_and_collectives_are_the_whole_set(prompt, n, vocab):
    assert len(resolve_prompt(prompt, vocab).terms) == n


@pytest.mark.parametrize("prompt,terms,part", [
    ("urinary bladder wall", ["urinary_bladder"], "wall"), ("duodenal bulb", ["duodenum"], "bulb"),
    ("thyroid lobe", ["thyroid_gland"], "lobe"), ("head of the pancreas", ["pancreas"], "head"),
    ("cardiac silhouette", ["heart"], "silhouette"), ("femoral heads", ["femur_left", "femur_right"], "heads"),
])
def test_parts_widen_to_the_whole_and_say_so(prompt, terms, part, vocab):
    res = resolve_prompt(prompt, vocab)
    assert sorted(res.terms) == sorted(terms)
    assert res.explanation["widened"][0]["part_words"] == [part] and "widened" in res.message


def test_parts_the_vocabulary_has_are_themselves(vocab):
    assert resolve_prompt("liver segment 4", vocab).terms == ["liver_segment_4"]
    assert resolve_prompt("left ventricle cavity", vocab).terms == ["heart_ventricle_left"]
    assert resolve_prompt("portal and splenic veins", vocab).terms == ["portal_vein_and_splenic_vein"]


@pytest.mark.parametrize("prompt,terms", [
    ("R femur", ["femur_right"]), ("lt kidney", ["kidney_left"]), ("IVC", ["inferior_vena_cava"]),
    ("SMA", ["superior_mesenteric_artery"]), ("LV", ["heart_ventricle_left"]), ("RA", ["heart_atrium_right"]),
    ("CBD", ["common_bile_duct"]), ("Glnd_Submand_L", ["submandibular_gland_left"]), ("OpticChiasm", ["optic_chiasm"]),
    ("NCR/NET", ["necrotic_tumor_core"]), ("bilat parotids", ["parotid_gland_left", "parotid_gland_right"]),
])
def test_short_forms_and_label_map_names(prompt, terms, vocab):
    assert sorted(resolve_prompt(prompt, vocab).terms) == sorted(terms)


def test_a_lesion_is_never_its_organ(vocab):
    assert resolve_prompt("liver", vocab).terms == ["liver"]
    assert resolve_prompt("liver tumour", vocab).terms == ["liver_tumor"]
    organs = vocabulary_from_labels({"background": 0, "liver": 1, "kidney_left": 2})
    lesions = vocabulary_from_labels({"background": 0, "liver_tumor": 1})
    for model, prompt in [(organs, "liver tumour on CT"), (organs, "tumour in the liver"), (lesions, "the liver"),
                          (organs, "hepatic mass")]:
        res = resolve_prompt(prompt, model)
        assert res.terms == [], (prompt, res.terms)
    assert "does not hold" in resolve_prompt("liver tumour", organs).message


@pytest.mark.parametrize("prompt", ["kidney stone", "aortic valve", "femoral artery", "tumour in the stomach",
                                    "banana bread recipe on CT", "T1-weighted MRI", "gastric ulcer"])
def test_look_alikes_and_nonsense_are_refused_with_help(prompt, vocab):
    res = resolve_prompt(prompt, vocab)
    assert res.terms == [] and "nearest terms" in res.message


def test_a_refusal_names_the_words_not_understood(vocab):
    res = resolve_prompt("segment the purple dragon", vocab)
    assert res.terms == [] and "purple" in res.message and "dragon" in res.unknown


def test_a_model_without_a_structure_refuses_it_and_widens_a_part():
    model = vocabulary_from_labels({"background": 0, "liver": 1, "spleen": 2})
    assert "brainstem" in knowledge_base().terms
    res = resolve_prompt("brainstem on MRI", model)
    assert res.terms == [] and "brainstem" in res.message and "does not hold" in res.message
    res = resolve_prompt("liver segment 4", model)
    assert res.terms == ["liver"] and res.explanation["widened"][0]["to"] == ["liver"]


@pytest.mark.parametrize("prompt,what", [("", "empty"), ("   ", "empty"), ("x" * 400, "characters long"),
                                         ("liver\x07", "control character"), ("left right kidney", "both the left")])
def test_bad_prompts_are_one_line_errors_naming_the_prompt(prompt, what, vocab):
    with pytest.raises(PromptError, match=what) as err:
        resolve_prompt(prompt, vocab)
    assert "\n" not in str(err.value)


def test_left_and_right_is_a_list_not_a_contradiction(vocab):
    assert resolve_prompt("left and right kidney", vocab).terms == ["kidney_right", "kidney_left"]


def test_resolve_cli_reports_a_bad_prompt_and_resolves_the_others(capsys):
    from nnunet_causal.cli import main
    assert main(["resolve", "--no-embedding", "left right kidney", "Outline the spleen in this MRI"]) == 1
    out, err = capsys.readouterr()
    assert "left right kidney" in err and len(err.strip().splitlines()) == 1
    assert json.loads(out)["terms"] == ["spleen"]


def test_phrases_are_read_as_written():
    vocab = load_vocabulary("all")
    assert resolve_phrase("no spleen", vocab).terms == []            # span scanners keep their own words
    assert resolve_phrase("spleen", vocab).terms == ["spleen"]


def test_every_knowledge_base_name_grounds_to_itself():
    kb = knowledge_base()
    totalseg = load_vocabulary("totalseg")
    bad = [n for n in totalseg.terms if resolve_prompt(n, totalseg).terms != [n]]
    assert not bad
    assert len(totalseg.terms) >= 420 and len(load_vocabulary("total").terms) == 117
    for name in ("brats", "acdc", "kits", "lits", "msd", "han", "endoscopy"):
        sub = load_vocabulary(name)
        assert sub.terms and all(resolve_prompt(n, sub).terms == [n] for n in sub.terms), name
    assert all(t.lesion_of is None or t.parent is None for t in kb.terms.values())
