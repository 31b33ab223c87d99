"""The stock nnU-Net commands, unchanged, train and predict with nnUNetTrainerText (2D RGB and 3D CT)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_tiny_2d_dataset, make_tiny_3d_dataset, read_json

pytestmark = pytest.mark.slow


def run(cmd, env, **kw):
    t0 = time.time()
    kw.setdefault("timeout", 840)  # under the per-test limit: a hung command fails with its own name
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    print(f"{time.time() - t0:6.1f} s  {' '.join(cmd[:2])}")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def train(env, dataset, config, trainer="nnUNetTrainerText_Tiny", extra=()):
    run(["nnUNetv2_plan_and_preprocess", "-d", str(dataset), "-c", config, "-np", "1", "-npfp", "1",
         "--verify_dataset_integrity"], env)
    run(["nnUNetv2_train", str(dataset), config, "0", "-tr", trainer, "-device", "cpu", *extra],
        dict(env, nnUNet_n_proc_DA="0"))


def test_2d_train_resume_predict_and_predict_text(nnunet_env, tmp_path):
    raw = make_tiny_2d_dataset(Path(nnunet_env["nnUNet_raw"]))
    train(nnunet_env, 1, "2d", extra=("--npz",))
    model = Path(nnunet_env["nnUNet_results"]) / "Dataset001_Tiny2D" / "nnUNetTrainerText_Tiny__nnUNetPlans__2d"
    ckpt = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["network_weights"]["prompt_embeddings"].shape == (2, 384)
    plans = read_json(model / "plans.json")
    assert plans["nnunet_causal"]["prompts"] == {"lesion": ["lesion", "red spot"], "marker": ["marker", "blue square"]}
    assert (model / "fold_0" / "validation" / "summary.json").exists()  # nnU-Net's own final validation ran

    # --c resumes from the checkpoint (strict load of every buffer and parameter) with the model folder's text
    # settings, even after dataset.json's prompts changed; a conflicting encoder variable is an error
    pre_dj = Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset001_Tiny2D" / "dataset.json"  # what training reads
    original = pre_dj.read_text()
    dj = json.loads(original)
    dj["prompts"]["lesion"] = ["a reworded lesion"]
    pre_dj.write_text(json.dumps(dj))
    bad = subprocess.run(["nnUNetv2_train", "1", "2d", "0", "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu", "--c"],
                         env=dict(nnunet_env, nnUNet_n_proc_DA="0", nnUNet_causal_text_encoder="hf:/other/encoder"),
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "conflicts with the text encoder this model was trained with" in bad.stderr
    assert "Traceback" not in bad.stderr
    run(["nnUNetv2_train", "1", "2d", "0", "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu", "--c"],
        dict(nnunet_env, nnUNet_n_proc_DA="0"))
    assert read_json(model / "plans.json")["nnunet_causal"]["prompts"]["lesion"] == ["lesion", "red spot"]
    logs = "\n".join(f.read_text() for f in sorted((model / "fold_0").glob("training_log_*.txt")))
    assert "text settings model folder" in logs
    pre_dj.write_text(original)

    # stock prediction of the trained structures, probabilities included, without any text encoder
    out = tmp_path / "pred_stock"
    env_no_encoder = dict(nnunet_env, nnUNet_causal_text_encoder="hf:/nonexistent/encoder")
    run(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", "1", "-c", "2d", "-f", "0",
         "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu", "--save_probabilities"], env_no_encoder)
    from PIL import Image
    seg = np.asarray(Image.open(out / "tiny_008.png"))
    assert seg.shape == (32, 32) and set(np.unique(seg)) <= {0, 1, 2}
    assert np.load(out / "tiny_008.npz")["probabilities"].shape[0] == 3

    # text prompts: a trained name, a synonym seen only as a knowledge-base synonym, a merged prompt
    pf = tmp_path / "prompts.txt"
    pf.write_text("# test prompts\nlesion\nmarker | blue square\n")
    out_t = tmp_path / "pred_text"
    run(["nnUNetv2_predict_text", "-i", str(raw / "imagesTs"), "-o", str(out_t), "-d", "1", "-c", "2d", "-f", "0",
         "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu", "-prompt_file", str(pf), "-prompts", "red spot",
         "--save_binary", "--open_vocabulary", "--keep_absent_masks", "-npp", "1", "-nps", "1"], nnunet_env)
    side = read_json(out_t / "tiny_008.prompts.json")
    assert [p["prompt"] for p in side["prompts"]] == ["lesion", "marker", "red spot"]
    assert [p["label_value"] for p in side["prompts"]] == [1, 2, 3]
    assert side["prompts"][0]["source"] == "trained" and side["prompts"][0]["trained_structures"] == ["lesion"]
    for p in side["prompts"]:
        assert 0.0 <= p["max_probability"] <= 1.0 and p["voxel_count"] >= 0
        assert (out_t / p["binary_mask"]).exists()
    label_map = np.asarray(Image.open(out_t / "tiny_008.png"))
    assert set(np.unique(label_map)) <= {0, 1, 2, 3}
    assert not list(out_t.glob("*.npz"))  # only kept with --save_probabilities
    # the tiny model's presence head is untrained: its decision may go either way, but an absent one says why
    assert all(p["present"] is True or p["presence_reason"] for p in side["prompts"])
    # prompt 1 reuses the trained query: with masks kept whatever presence decides (--keep_absent_masks), its
    # binary mask equals stock prediction's label 1
    lesion = np.asarray(Image.open(out_t / side["prompts"][0]["binary_mask"])) > 0
    stock_probs = np.load(out / "tiny_008.npz")["probabilities"]
    assert np.array_equal(lesion, (stock_probs[1] > stock_probs[0]).reshape(lesion.shape))


    # bad input: a prompt that names nothing known, an image with the wrong channel count
    bad = subprocess.run(["nnUNetv2_predict_text", "-i", str(raw / "imagesTs"), "-o", str(tmp_path / "x"), "-d", "1",
                          "-c", "2d", "-f", "0", "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu", "-prompts",
                          "banana bread recipe"], env=nnunet_env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "nearest known terms" in bad.stderr and "--open_vocabulary" in bad.stderr
    gray = tmp_path / "gray"
    gray.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(gray / "g_0000.png")
    bad = subprocess.run(["nnUNetv2_predict_text", "-i", str(gray), "-o", str(tmp_path / "y"), "-d", "1", "-c", "2d",
                          "-f", "0", "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu", "-prompts", "lesion"],
                         env=nnunet_env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "g_0000.png" in bad.stderr and "channel" in bad.stderr
    assert not (tmp_path / "y" / "g.png").exists()

    # stock nnUNetv2_predict with reworded prompts (one line per trained structure)
    reword = tmp_path / "reword.txt"
    reword.write_text("lesion\nmarker\n")
    out_r = tmp_path / "pred_reworded"
    run(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(out_r), "-d", "1", "-c", "2d", "-f", "0",
         "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu"], dict(nnunet_env, nnUNet_causal_prompt_file=str(reword)))
    # the same wording as training reproduces the stock prediction
    assert np.array_equal(np.asarray(Image.open(out_r / "tiny_008.png")), seg)


def test_3d_fullres_train_and_predict(nnunet_env, tmp_path):
    raw = make_tiny_3d_dataset(Path(nnunet_env["nnUNet_raw"]))
    # partial labels (as the CHAOS / abdomen-composite converters write them): two cases annotate the liver only
    dj = read_json(raw / "dataset.json")
    dj["partial_labels"] = {"vol_000": ["liver"], "vol_001": ["liver"]}
    (raw / "dataset.json").write_text(json.dumps(dj))
    train(nnunet_env, 2, "3d_fullres")
    model = Path(nnunet_env["nnUNet_results"]) / "Dataset002_Tiny3D" / "nnUNetTrainerText_Tiny__nnUNetPlans__3d_fullres"
    log = "\n".join(f.read_text() for f in (model / "fold_0").glob("training_log_*.txt"))
    assert "partial labels: 2 case(s) annotate only some structures" in log
    out = tmp_path / "pred3d"
    run(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", "2", "-c", "3d_fullres", "-f", "0",
         "-tr", "nnUNetTrainerText_Tiny", "-device", "cpu", "--disable_tta"], nnunet_env)
    import SimpleITK as sitk
    ref = sitk.ReadImage(str(raw / "labelsTs" / "vol_005.nii.gz"))
    pred = sitk.ReadImage(str(out / "vol_005.nii.gz"))
    assert pred.GetSize() == ref.GetSize() and pred.GetSpacing() == ref.GetSpacing()
