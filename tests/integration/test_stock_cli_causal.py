"""The causal, GIN/IPA and parameter-efficient trainers through the stock nnU-Net commands (tiny 2D data)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import make_tiny_2d_dataset, read_json
from tests.integration.test_stock_cli_text import run

pytestmark = pytest.mark.slow


def test_causal_gin_and_frozen_encoder_trainers(nnunet_env, tmp_path):
    make_tiny_2d_dataset(Path(nnunet_env["nnUNet_raw"]), n_train=10)
    run(["nnUNetv2_plan_and_preprocess", "-d", "1", "-c", "2d", "-np", "1", "-npfp", "1"], nnunet_env)
    out = run(["nnunet_causal", "make-splits", "-d", "1", "--leave-one-domain-out"], nnunet_env).stdout
    assert "fold 0: holds out domain 'site0'" in out and "fold 1: holds out domain 'site1'" in out
    env_tr = dict(nnunet_env, nnUNet_n_proc_DA="0")
    results = Path(nnunet_env["nnUNet_results"]) / "Dataset001_Tiny2D"

    run(["nnUNetv2_train", "1", "2d", "1", "-tr", "nnUNetTrainerCausalText_Tiny", "-device", "cpu"], env_tr)
    folder = results / "nnUNetTrainerCausalText_Tiny__nnUNetPlans__2d"
    ckpt = torch.load(folder / "fold_1" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    z = ckpt["network_weights"]["bottleneck.confounder_embeddings"]
    assert z.shape[0] >= 12 and torch.allclose(z.norm(dim=1), torch.ones(z.shape[0]), atol=1e-4)
    plans = read_json(folder / "plans.json")
    assert plans["nnunet_causal"]["causal"]["layers"] == 3
    log = next((folder / "fold_1").glob("training_log_*.txt")).read_text()
    assert "causal intervention switched on" in log
    # counterfactual views from the dictionary, and every causal term logged per epoch with a finite value
    assert re.search(r"counterfactual views: \d+ of \d+ dictionary entries have a simulator", log)
    terms = re.findall(r"causal terms: seg_loss (-?[\d.]+), l_causal ([\d.]+), l_contrast ([\d.]+), "
                       r"l_lad ([\d.]+), gate ([\d.]+)", log)
    assert len(terms) == 2 and [t[-1] for t in terms] == ["0.0000", "1.0000"]
    assert all(float(v) > 0 for t in terms for v in t[1:4])
    assert (folder / "fold_1" / "progress_causal.png").stat().st_size > 1000
    assert len(ckpt["logging"]["l_causal"]) == 2
    # nnU-Net's own final validation on the held-out domain (site1) ran
    summary = read_json(folder / "fold_1" / "validation" / "summary.json")
    validated = [Path(c["reference_file"]).name for c in summary["metric_per_case"]]
    assert validated and all(int(n[len("tiny_"):-len(".png")]) % 2 == 1 for n in validated)  # site1's cases only
    assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0

    # paired factual / counterfactual views: the consistency term is logged beside the causal terms
    run(["nnUNetv2_train", "1", "2d", "1", "-tr", "nnUNetTrainerCausalText_Paired_Tiny", "-device", "cpu"], env_tr)
    paired = results / "nnUNetTrainerCausalText_Paired_Tiny__nnUNetPlans__2d" / "fold_1"
    paired_log = next(paired.glob("training_log_*.txt")).read_text()
    consistency = [float(v) for v in re.findall(r"l_consistency ([\d.]+)", paired_log)]
    assert len(consistency) == 2 and all(0 < v < 10 for v in consistency)
    assert "l_consistency" not in log  # off by default
    paired_ckpt = torch.load(paired / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert len(paired_ckpt["logging"]["l_consistency"]) == 2

    run(["nnUNetv2_train", "1", "2d", "1", "-tr", "nnUNetTrainerGINIPA_Tiny", "-device", "cpu"], env_tr)
    run(["nnUNetv2_train", "1", "2d", "1", "-tr", "nnUNetTrainerCounterfactual_Tiny", "-device", "cpu"], env_tr)
    cf_log = "\n".join(f.read_text() for f in (results / "nnUNetTrainerCounterfactual_Tiny__nnUNetPlans__2d" /
                                               "fold_1").glob("training_log_*.txt"))
    assert "per sample p=1.0" in cf_log and "frame unit" in cf_log

    # parameter-efficient mode needs the pretrained encoder; without it: a clear error
    bad = subprocess.run(["nnUNetv2_train", "1", "2d", "1", "-tr", "nnUNetTrainerCausalText_FrozenEncoder_Tiny",
                          "-device", "cpu"], env=env_tr, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "nnUNet_causal_pretrained_encoder" in bad.stderr
    env_peft = dict(env_tr, nnUNet_causal_pretrained_encoder=str(folder / "fold_1" / "checkpoint_final.pth"))
    run(["nnUNetv2_train", "1", "2d", "1", "-tr", "nnUNetTrainerCausalText_FrozenEncoder_Tiny", "-device", "cpu"],
        env_peft)
    peft = results / "nnUNetTrainerCausalText_FrozenEncoder_Tiny__nnUNetPlans__2d" / "fold_1"
    # the failed run above left its own log in the same folder: read every log, not whichever glob lists first
    log = "\n".join(f.read_text() for f in sorted(peft.glob("training_log_*.txt")))
    fraction = float(re.search(r"trainable parameters [\d,]+ of [\d,]+ \(([\d.]+)%\)", log).group(1))
    assert 0 < fraction < 100
    frozen = torch.load(peft / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    key = next(k for k in frozen if k.startswith("backbone.encoder.") and k.endswith("weight"))
    torch.testing.assert_close(frozen[key], ckpt["network_weights"][key])  # encoder did not move
