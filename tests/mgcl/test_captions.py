"""Organ-level caption extraction, the metadata filter, report sources and label captions."""
import json

import numpy as np
import pytest

from nnunet_causal.errors import DatasetError
from nnunet_causal.mgcl.captions import Caption, extract_captions, names_its_structure, split_sentences
from nnunet_causal.mgcl.label_captions import label_captions
from nnunet_causal.mgcl.reports import case_of_image, load_reports
from nnunet_causal.synthetic.ct3d import LABELS, PROMPTS
from nnunet_causal.text.vocabulary import vocabulary_from_labels

VOCAB = vocabulary_from_labels(LABELS, PROMPTS)


def by_structure(captions):
    out = {}
    for c in captions:
        out.setdefault(c.structure, []).append((c.text, c.negated))
    return out


def test_sentences_go_to_every_structure_they_name_with_laterality_and_negation():
    report = ("The kidney on the left side is small. No right renal organ is seen. Both kidneys are smooth. "
              "The liver is enlarged, without focal lesion; the spleen is absent. Bones are unremarkable.")
    assert len(split_sentences(report)) == 5
    got = by_structure(extract_captions(report, VOCAB))
    assert got["kidney_left"] == [("The kidney on the left side is small.", False),
                                  ("Both kidneys are smooth.", False)]
    assert got["kidney_right"] == [("No right renal organ is seen.", True), ("Both kidneys are smooth.", False)]
    liver_sentence = "The liver is enlarged, without focal lesion; the spleen is absent."
    assert got["liver"] == [(liver_sentence, False)]   # a negated finding, not a negated organ
    assert got["spleen"] == [(liver_sentence, True)]
    assert set(got) == {"kidney_left", "kidney_right", "liver", "spleen"}  # "bones" names nothing of the dataset


def test_filter_keeps_only_captions_that_name_their_structure():
    assert names_its_structure(Caption("kidney_left", "The kidney on the left side is small."), VOCAB)
    assert names_its_structure(Caption("liver", "Hepatic parenchyma is normal."), VOCAB)
    assert not names_its_structure(Caption("kidney_left", "The right kidney is small."), VOCAB)
    assert not names_its_structure(Caption("spleen", "The organ is enlarged."), VOCAB)


def test_report_files_map_to_cases_and_bad_files_are_one_clear_error(tmp_path):
    cases = {"scannerA_0000", "scannerA_0001"}
    assert case_of_image("/data/imagesTr/scannerA_0001_0000.nii.gz", cases) == "scannerA_0001"
    csv = tmp_path / "r.csv"
    csv.write_text("VolumeName,Findings_EN,Impressions_EN\nscannerA_0000.nii.gz,Liver normal.,No acute finding.\n"
                   "other_volume.nii.gz,Spleen large.,\n")
    assert load_reports(csv, cases) == {"scannerA_0000": "Liver normal. No acute finding."}
    bad = tmp_path / "bad.csv"
    bad.write_text("VolumeName,Findings\nscannerA_0000.nii.gz,Liver normal.\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) Findings_EN, Impressions_EN"):
        load_reports(bad, cases)
    empty = tmp_path / "e.jsonl"
    empty.write_text(json.dumps({"image": "scannerA_0000", "report": "Liver."}) + "\n"
                     + json.dumps({"image": "scannerA_0001", "report": "  "}) + "\n")
    with pytest.raises(DatasetError, match=r"e.jsonl, line 2: the report of 'scannerA_0001' .* is empty"):
        load_reports(empty, cases)
    nomatch = tmp_path / "n.jsonl"
    nomatch.write_text(json.dumps({"image": "x", "report": "Liver."}) + "\n")
    with pytest.raises(DatasetError, match="no row matches a case"):
        load_reports(nomatch, cases)
    nokey = tmp_path / "k.jsonl"
    nokey.write_text(json.dumps({"image": "scannerA_0000"}) + "\n")
    with pytest.raises(DatasetError, match=r"line 1: missing key\(s\) report"):
        load_reports(nokey, cases)


def test_label_captions_measure_presence_size_and_position():
    seg = np.zeros((1, 10, 20, 20), np.int16)
    seg[0, 7:9, 5:10, 14:18] = LABELS["kidney_left"]      # upper slices, large x = patient left
    structures = {"kidney_left": LABELS["kidney_left"], "spleen": LABELS["spleen"]}
    names = {"kidney_left": "left kidney", "spleen": "spleen"}
    caps = label_captions(seg, structures, names, {"kidney_left": 10.0, "spleen": 0.0})
    texts = {(c.text, c.negated) for c in caps}
    assert ("No spleen is seen.", True) in texts
    assert ("The left kidney is enlarged.", False) in texts                     # 40 voxels vs median 10
    assert ("The left kidney lies in the upper left part of the body.", False) in texts
