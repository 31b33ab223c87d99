"""Presence decisions on held-out cases (issue 14): absent structures and never-held prompts get no mask,
present structures are kept -- measured and printed side by side with the raw masks in one run.

Synthetic 2D frames (textured background; a reddish disc "lesion" and a bluish square "marker", each in a
frame with probability 0.6 in training, so the training set itself has absent structures). The held-out
test frames are drawn the same way with each structure removed with probability 0.5. Prompts: the two
trained structures plus structures the dataset never holds ("brain", "liver", "heart", through
``--open_vocabulary``). Pipeline: stock ``nnUNetv2_plan_and_preprocess``, stock ``nnUNetv2_train`` with
``nnUNetTrainerTextPresence_CPULong`` (1000 steps; 75 minutes for training on the heavily shared CPU of session 6; ``--trainer
nnUNetTrainerTextPresence_CPUDemo`` for 300; nnU-Net's validation, then the presence calibration on the
validation fold), ``nnUNetv2_predict_text`` twice (with presence filtering, and ``--keep_absent_masks`` for
the raw masks).

Reported per prompt kind: masks for absent (case, prompt) pairs (target <= 5%), present structures kept
(target >= 98%), raw-mask rates for comparison.

Usage: python benchmarks/presence_benchmark.py --work /tmp/presence_bench [--train 60] [--test 100]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TRAINER = "nnUNetTrainerTextPresence_CPULong"
NEVER_HELD = ("brain", "liver", "heart")


def _frame(rng, size, p_lesion, p_marker):
    from scipy.ndimage import gaussian_filter

    img = 110 + 25 * gaussian_filter(rng.normal(size=(size, size, 3)), (3, 3, 0)) + rng.normal(0, 8, (size, size, 3))
    seg = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    if rng.random() < p_lesion:
        c, r = rng.integers(10, size - 10, 2), rng.integers(4, 9)
        disc = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r ** 2
        img[disc] = img[disc] * 0.5 + np.array([190, 80, 80]) * 0.5
        seg[disc] = 1
    if rng.random() < p_marker:
        x, y, w = *rng.integers(3, size - 12, 2), rng.integers(4, 9)
        square = np.zeros_like(seg, bool)
        square[x:x + w, y:y + w] = True
        square &= seg == 0
        img[square] = img[square] * 0.5 + np.array([60, 80, 200]) * 0.5
        seg[square] = 2
    return np.clip(img, 0, 255).astype(np.uint8), seg


def make_dataset(raw: Path, n_train: int, n_test: int, size: int = 64, seed: int = 0) -> Path:
    from PIL import Image

    from nnunet_causal.data.raw_dataset import write_dataset_json

    folder = raw / "Dataset977_PresenceBench"
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        split, p = ("Tr", 0.6) if i < n_train else ("Ts", 0.5)
        img, seg = _frame(rng, size, p, p)
        Image.fromarray(img).save(folder / f"images{split}" / f"f{i:03d}_0000.png")
        Image.fromarray(seg).save(folder / f"labels{split}" / f"f{i:03d}.png")
    write_dataset_json(folder, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "lesion": 1, "marker": 2}, n_train,
                       ".png", prompts={"lesion": ["lesion", "red spot"], "marker": ["marker", "blue square"]},
                       imaging_family="endoscopy")
    return folder


def _run(cmd, env):
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def score(pred: Path, labels: Path, prompts) -> dict:
    from PIL import Image

    out = {"trained": {"absent": [], "present": []}, "never_held": {"absent": []}}
    for sidecar in sorted(pred.glob("*.prompts.json")):
        case = sidecar.name[:-len(".prompts.json")]
        truth = np.asarray(Image.open(labels / f"{case}.png"))
        seg = np.asarray(Image.open(pred / f"{case}.png"))
        for rec in json.loads(sidecar.read_text())["prompts"]:
            has_mask = bool((seg == rec["label_value"]).any())
            if rec["prompt"] in NEVER_HELD:
                out["never_held"]["absent"].append(has_mask)
            else:
                value = {"lesion": 1, "marker": 2}[rec["prompt"]]
                key = "present" if (truth == value).any() else "absent"
                out["trained"][key].append(has_mask)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--train", type=int, default=60)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--trainer", default=TRAINER)
    args = ap.parse_args(argv)
    work = Path(args.work)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "pre"),
               nnUNet_results=str(work / "results"), nnUNet_compile="false", nnUNet_def_n_proc="2")
    from nnunet_causal.env_cli import ext_trainer_folder
    env["nnUNet_extTrainer"] = str(ext_trainer_folder())
    raw = make_dataset(work / "raw", args.train, args.test)
    model = work / "results" / raw.name / f"{args.trainer}__nnUNetPlans__2d"
    if not (model / "fold_0" / "presence_calibration.json").is_file():
        _run([str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", "977", "-c", "2d", "-np", "2", "-npfp", "2"], env)
        _run([str(bin_dir / "nnUNetv2_train"), "977", "2d", "0", "-tr", args.trainer, "-device", "cpu"],
             dict(env, nnUNet_n_proc_DA="2"))
    prompts = ["lesion", "marker", *NEVER_HELD]
    results = {}
    for name, extra in (("presence", []), ("raw", ["--keep_absent_masks"])):
        out = work / f"pred_{name}"
        _run([str(bin_dir / "nnUNetv2_predict_text"), "-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(model),
              "-f", "0", "-device", "cpu", "-prompts", *prompts, "--open_vocabulary", "--disable_progress_bar",
              "-npp", "1", "-nps", "1", *extra], env)
        results[name] = score(out, raw / "labelsTs", prompts)
    cal = json.loads((model / "fold_0" / "presence_calibration.json").read_text())

    def rate(xs):
        return (100 * float(np.mean(xs)) if xs else float("nan")), len(xs)
    print(f"\npresence calibration (validation fold): {cal}")
    print(f"{'pairs':44s}{'with presence':>16s}{'raw masks':>12s}{'n':>6s}")
    rows = (("trained structure absent: has a mask (<=5%)", "trained", "absent"),
            ("never-held prompt: has a mask (<=5%)", "never_held", "absent"),
            ("trained structure present: kept (>=98%)", "trained", "present"))
    table = {}
    for label, kind, key in rows:
        (p, n), (r, _) = rate(results["presence"][kind][key]), rate(results["raw"][kind][key])
        table[label] = {"with_presence_percent": p, "raw_percent": r, "n": n}
        print(f"{label:44s}{p:15.1f}%{r:11.1f}%{n:6d}")
    (work / "presence_results.json").write_text(json.dumps({"calibration": cal, "table": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
