"""``synth --reports``: one report per case written from the organ facts; the default datasets are unchanged."""
import json

import numpy as np
import SimpleITK as sitk

from nnunet_causal.mgcl.captions import extract_captions
from nnunet_causal.synthetic.ct3d import LABELS, PROMPTS, make_ct_dataset
from nnunet_causal.synthetic.endoscopy2d import make_endoscopy_dataset
from nnunet_causal.synthetic.reports import HELD_OUT_NAMES
from nnunet_causal.text.vocabulary import normalize, vocabulary_from_labels


def read(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_ct_reports_state_the_facts_and_leave_default_outputs_alone(tmp_path):
    plain = make_ct_dataset(tmp_path / "plain", 4, ("scannerA",), shape=(10, 32, 32), test_fraction=0.25)
    rep = make_ct_dataset(tmp_path / "rep", 4, ("scannerA",), shape=(10, 32, 32), test_fraction=0.25, reports=True)
    assert "reports" not in json.loads((plain / "dataset.json").read_text()) and not (plain / "reports.jsonl").exists()
    assert json.loads((rep / "dataset.json").read_text())["reports"] == "reports.jsonl"
    rows = [json.loads(line) for line in (rep / "reports.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    vocab = vocabulary_from_labels(LABELS, PROMPTS)
    held_out = {normalize(n) for names in HELD_OUT_NAMES.values() for n in names}
    for row in rows:
        split = "Tr" if (rep / "labelsTr" / f"{row['image']}.nii.gz").exists() else "Ts"
        label = read(rep / f"labels{split}" / f"{row['image']}.nii.gz")
        caps = extract_captions(row["report"], vocab)
        for organ, fact in row["facts"].items():
            assert fact["present"] == bool((label == LABELS[organ]).any())
            stated = [c for c in caps if c.structure == organ]
            assert stated and all(c.negated != fact["present"] for c in stated), (organ, row["report"])
        assert not any(f" {h} " in f" {normalize(row['report'])} " for h in held_out)
    # a case with every organ present has the same label map as the plain dataset (same random stream)
    full = [r for r in rows if all(f["present"] for f in r["facts"].values())]
    for r in full:
        split = "Tr" if (plain / "labelsTr" / f"{r['image']}.nii.gz").exists() else "Ts"
        assert np.array_equal(read(plain / f"labels{split}" / f"{r['image']}.nii.gz"),
                              read(rep / f"labels{split}" / f"{r['image']}.nii.gz"))


def test_endoscopy_reports_describe_the_polyps(tmp_path):
    out = make_endoscopy_dataset(tmp_path / "e", 6, ("siteA",), image_size=(32, 32), reports=True)
    rows = [json.loads(line) for line in (out / "reports.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for r in rows:
        assert ("polyp" in r["report"].lower()) and (r["facts"]["polyp"]["present"] == (r["facts"]["polyp"]["count"] > 0))
