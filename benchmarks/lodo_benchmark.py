"""Leave-one-domain-out benchmark with a spurious cue (synthetic colonoscopy, held-out site D).

For each seed: generate the dataset (sites A-C sources, site D held out: specular highlights on polyps in
the sources, elsewhere in D, plus D's NBI-like colours), plan and preprocess with the stock command,
write leave-one-domain-out splits, then train every trainer on the fold that holds out site D with the
stock ``nnUNetv2_train`` (CPU, the *_CPUDemo schedule: 12 epochs x 25 iterations). Held-out Dice is
nnU-Net's own final validation on site D (``fold_k/validation/summary.json``, foreground mean); in-domain
Dice is stock ``nnUNetv2_predict`` on the sources' test images scored with :func:`nnunet_causal.evaluation`.
Prints mean +- std over seeds side by side and writes ``results.json`` / ``results.md`` in the work folder.

Usage: python benchmarks/lodo_benchmark.py --work /tmp/lodo --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAINERS = ("nnUNetTrainer_CPUDemo", "nnUNetTrainerGIN_CPUDemo", "nnUNetTrainerGINIPA_CPUDemo",
            "nnUNetTrainerText_CPUDemo", "nnUNetTrainerCausalText_CPUDemo",
            "nnUNetTrainerCausalText_NoImageIntervention_CPUDemo")
SITES = ("siteA", "siteB", "siteC", "siteD")
HELDOUT = "siteD"


def run(cmd, env, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise RuntimeError(f"failed: {' '.join(cmd)} (see {log})")


def bin_(name):
    return str(Path(sys.executable).parent / name)


def one_seed(work: Path, seed: int, trainers, log: Path) -> dict:
    from nnunet_causal.env_cli import ext_trainer_folder
    from nnunet_causal.evaluation.evaluate_folder import evaluate_folders

    root = work / f"seed{seed}"
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
               nnUNet_results=str(root / "results"), nnUNet_extTrainer=str(ext_trainer_folder()),
               nnUNet_compile="false", nnUNet_def_n_proc="2", HF_HUB_OFFLINE="1")
    did = 980 + seed
    name = f"Dataset{did}_LODOSeed{seed}"
    raw = root / "raw" / name
    if not (root / "pre" / name / "splits_final.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        run([sys.executable, "-m", "nnunet_causal.cli", "synth", "endoscopy2d", "-d", str(did), "-o", str(raw),
             "-n", "30", "--test-fraction", "0.2", "--domains", *SITES, "--heldout", HELDOUT, "--spurious-cue", "specular",
             "--size", "64", "64", "--seed", str(seed)], env, log)
        run([bin_("nnUNetv2_plan_and_preprocess"), "-d", str(did), "-c", "2d", "-np", "2", "-npfp", "2"], env, log)
        run([sys.executable, "-m", "nnunet_causal.cli", "make-splits", "-d", str(did), "--leave-one-domain-out"],
            env, log)
    dj = json.loads((raw / "dataset.json").read_text())
    splits = json.loads((root / "pre" / name / "splits_final.json").read_text())
    fold = next(i for i, s in enumerate(splits) if dj["domains"][s["val"][0]]["domain"] == HELDOUT)
    src_inputs = root / "inputs_sources"
    if not src_inputs.exists():
        src_inputs.mkdir(parents=True)
        (root / "labels_sources").mkdir()
        for img in (raw / "imagesTs").glob("*_0000.png"):
            case = img.name[:-9]
            if dj["domains"][case]["domain"] != HELDOUT:
                shutil.copy(img, src_inputs / img.name)
                shutil.copy(raw / "labelsTs" / f"{case}.png", root / "labels_sources" / f"{case}.png")
    out = {}
    for tr in trainers:
        t0 = time.time()
        model = root / "results" / name / f"{tr}__nnUNetPlans__2d"
        summary = model / f"fold_{fold}" / "validation" / "summary.json"
        if not summary.exists():
            run([bin_("nnUNetv2_train"), str(did), "2d", str(fold), "-tr", tr, "-device", "cpu"],
                dict(env, nnUNet_n_proc_DA="2"), log)
        heldout = json.loads(summary.read_text())["foreground_mean"]["Dice"]
        pred = root / "pred_sources" / tr
        if not (pred / "evaluation.json").exists():
            run([bin_("nnUNetv2_predict"), "-i", str(src_inputs), "-o", str(pred), "-d", str(did), "-c", "2d",
                 "-f", str(fold), "-tr", tr, "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"],
                env, log)
            evaluate_folders(root / "labels_sources", pred, raw / "dataset.json", num_processes=1)
        in_domain = json.loads((pred / "evaluation.json").read_text())["summary"]["mean"]["dice"]
        out[tr] = {"heldout_dice": heldout, "in_domain_dice": in_domain}
        print(f"seed {seed} {tr:52s} held-out {heldout:.3f}  in-domain {in_domain:.3f}  ({time.time() - t0:.0f} s)",
              flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/nnunet_causal_lodo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {s: one_seed(work, s, a.trainers, work / "commands.log") for s in a.seeds}
    lines = ["| trainer | held-out site D Dice | in-domain (A-C) Dice |", "|---|---|---|"]
    for tr in a.trainers:
        h = np.array([results[s][tr]["heldout_dice"] for s in a.seeds])
        d = np.array([results[s][tr]["in_domain_dice"] for s in a.seeds])
        lines.append(f"| {tr} | {h.mean():.3f} ± {h.std():.3f} | {d.mean():.3f} ± {d.std():.3f} |")
    table = "\n".join(lines)
    print(f"\n{len(a.seeds)} seeds, mean ± std\n{table}")
    (work / "results.json").write_text(json.dumps(results, indent=1))
    (work / "results.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
