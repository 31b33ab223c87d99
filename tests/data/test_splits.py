"""Leave-one-domain-out splits: fold order, contents, errors, atomic writing and the make-splits command."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest

from nnunet_causal.data import splits_cli
from nnunet_causal.data.splits import make_leave_one_domain_out_splits, write_splits
from nnunet_causal.errors import DatasetError


def _dataset_json(domain_of: dict) -> dict:
    return {"file_ending": ".png", "domains": {c: {"domain": d, "modality": "endoscopy", "style": f"site {d}"}
                                               for c, d in domain_of.items()}}


def test_one_fold_per_domain_in_sorted_order():
    domain_of = {"c1": "siteB", "c2": "siteA", "c3": "siteC", "c4": "siteA", "c5": "siteB"}
    dj = _dataset_json(domain_of)
    dj["domains"]["test_9"] = {"domain": "siteZ", "modality": "endoscopy", "style": "z"}  # not a training case
    splits, domains = make_leave_one_domain_out_splits(dj, list(domain_of))
    assert domains == ["siteA", "siteB", "siteC"]
    assert splits[0] == {"train": ["c1", "c3", "c5"], "val": ["c2", "c4"]}
    assert splits[1] == {"train": ["c2", "c3", "c4"], "val": ["c1", "c5"]}
    assert splits[2] == {"train": ["c1", "c2", "c4", "c5"], "val": ["c3"]}
    for s in splits:
        assert sorted(s["train"] + s["val"]) == sorted(domain_of)


def test_errors_single_domain_missing_record_duplicates():
    with pytest.raises(DatasetError, match="single domain 'siteA'"):
        make_leave_one_domain_out_splits(_dataset_json({"a": "siteA", "b": "siteA"}), ["a", "b"])
    with pytest.raises(DatasetError, match="case_07"):
        make_leave_one_domain_out_splits(_dataset_json({"a": "siteA", "b": "siteB"}), ["a", "b", "case_07"])
    with pytest.raises(DatasetError, match="no 'domains' key"):
        make_leave_one_domain_out_splits({"labels": {}}, ["a"])
    with pytest.raises(DatasetError, match="duplicate"):
        make_leave_one_domain_out_splits(_dataset_json({"a": "s1", "b": "s2"}), ["a", "b", "a"])


def test_write_splits_nnunet_format(tmp_path):
    splits = [{"train": ["a"], "val": ["b"]}, {"train": ["b"], "val": ["a"]}]
    path = write_splits(tmp_path, splits)
    assert path == tmp_path / "splits_final.json"
    assert json.loads(path.read_text()) == splits
    with pytest.raises(DatasetError, match="fold 1"):
        write_splits(tmp_path, [{"train": ["a"], "val": ["b"]}, {"train": ["a"], "val": []}])
    assert json.loads(path.read_text()) == splits            # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["splits_final.json"]   # no temporary left behind
    with pytest.raises(DatasetError, match="does not exist"):
        write_splits(tmp_path / "missing", splits)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A synthetic 3-site raw dataset and its 'preprocessed' folder (dataset.json copied, as nnU-Net does)."""
    from nnunet_causal.synthetic.endoscopy2d import make_endoscopy_dataset

    raw, pre = tmp_path / "raw", tmp_path / "pre"
    for var, path in (("nnUNet_raw", raw), ("nnUNet_preprocessed", pre), ("nnUNet_results", tmp_path / "res")):
        path.mkdir()
        monkeypatch.setenv(var, str(path))
    folder = make_endoscopy_dataset(raw / "Dataset042_Sites", 3, ("siteB", "siteA", "siteC"), image_size=(16, 16),
                                    test_fraction=0.34)
    (pre / folder.name).mkdir()
    shutil.copy(folder / "dataset.json", pre / folder.name / "dataset.json")
    return raw / folder.name, pre / folder.name


def _args(*argv):
    parser = argparse.ArgumentParser()
    splits_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["make-splits", *argv])


def test_cli_writes_splits_from_raw_cases(env, capsys):
    raw, pre = env
    assert splits_cli.run_make_splits(_args("-d", "42", "--leave-one-domain-out")) == 0
    splits = json.loads((pre / "splits_final.json").read_text())
    assert [s["val"] for s in splits] == [["siteA_0000", "siteA_0001"], ["siteB_0000", "siteB_0001"],
                                          ["siteC_0000", "siteC_0001"]]      # test cases (_0002) excluded
    out = capsys.readouterr().out
    assert "fold 0: holds out domain 'siteA'" in out and "fold 2: holds out domain 'siteC'" in out


def test_cli_prefers_preprocessed_case_list(env):
    raw, pre = env
    data = pre / "nnUNetPlans_2d"
    data.mkdir()
    for case in ("siteA_0000", "siteB_0001", "siteC_0000"):
        (data / f"{case}.pkl").write_bytes(b"")
        (data / f"{case}.b2nd").write_bytes(b"")
    splits_cli.run_make_splits(_args("-d", "Dataset042_Sites", "--leave-one-domain-out"))
    splits = json.loads((pre / "splits_final.json").read_text())
    assert splits == [{"train": ["siteB_0001", "siteC_0000"], "val": ["siteA_0000"]},
                      {"train": ["siteA_0000", "siteC_0000"], "val": ["siteB_0001"]},
                      {"train": ["siteA_0000", "siteB_0001"], "val": ["siteC_0000"]}]


def test_cli_errors(env, monkeypatch):
    raw, pre = env
    with pytest.raises(DatasetError, match="dataset '77' not found"):
        splits_cli.run_make_splits(_args("-d", "77", "--leave-one-domain-out"))
    with pytest.raises(DatasetError, match="--leave-one-domain-out"):
        splits_cli.run_make_splits(_args("-d", "42"))
    dj = json.loads((pre / "dataset.json").read_text())
    del dj["domains"]["siteB_0001"]
    (pre / "dataset.json").write_text(json.dumps(dj))
    with pytest.raises(DatasetError, match="siteB_0001"):
        splits_cli.run_make_splits(_args("-d", "42", "--leave-one-domain-out"))
    (pre / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="nnUNetv2_plan_and_preprocess"):
        splits_cli.run_make_splits(_args("-d", "42", "--leave-one-domain-out"))
    assert not (pre / "splits_final.json").exists()
    monkeypatch.delenv("nnUNet_preprocessed")
    with pytest.raises(DatasetError, match="nnUNet_preprocessed"):
        splits_cli.run_make_splits(_args("-d", "42", "--leave-one-domain-out"))


def test_split_by_another_record_field():
    dj = _dataset_json({"ct1": "btcv", "ct2": "amos", "mr1": "amos", "mr2": "chaos"})
    for case, mod in {"ct1": "CT", "ct2": "CT", "mr1": "MRI", "mr2": "MRI"}.items():
        dj["domains"][case]["modality"] = mod
    splits, domains = make_leave_one_domain_out_splits(dj, ["ct1", "ct2", "mr1", "mr2"], key="modality")
    assert domains == ["CT", "MRI"] and splits[1] == {"train": ["ct1", "ct2"], "val": ["mr1", "mr2"]}
    with pytest.raises(DatasetError, match="have no 'scanner' field"):
        make_leave_one_domain_out_splits(dj, ["ct1", "ct2"], key="scanner")
