"""Presence: "is this structure in this image?" for an abdominal CT text model -- measured on in-domain and
held-out-site phantoms and on real images of other body regions, side by side with a model trained without
the presence head (the ablation ``nnUNetTrainerText_NoPresence``), in one run.

Model: the project's synthetic abdominal CT phantoms (:mod:`nnunet_causal.synthetic.ct3d`, eight
TotalSegmentator structures; with ``reports=True`` the gallbladder, spleen and kidneys are each missing from
15 % of the cases), scanners A and B for training, 2D configuration, stock ``nnUNetv2_plan_and_preprocess``
and ``nnUNetv2_train`` with the default text trainer (presence head, calibration after validation) and its
``_NoPresence`` ablation on the same short schedule (``--epochs`` x 25 steps).

Test images:

* in-domain: test phantoms of scanners A and B;
* held-out site: phantoms of scanners C and D (other noise, kernel, slice thickness, contrast phase,
  streaks), never seen in training;
* other body region, real: the Colin27 T1 brain MRI (Debian ``mricron-data``, ``ch2.nii.gz``) and the
  pyradiomics brain1 / brain2 / breast1 MRIs; chest CT, real: pyradiomics lung1 / lung2 (whole axial chest
  CTs whose lowest slices may reach the upper abdomen; they carry no organ labels, so their abdominal pairs
  are reported apart).

Prompts: the eight trained structures, and brain structures the model never saw ("brain", "cerebellum",
"lateral ventricle", through ``--open_vocabulary``). Reported per model: presence precision / recall
against the phantoms' labels (a structure counts as present in a case when the label has a voxel of it;
for the model without presence, "decided present" = has a mask), the share of true-positive voxels of
present structures that the presence decisions keep (against the same model's unfiltered masks,
``--keep_absent_masks``), the share of abdominal prompt x image pairs decided absent on other-region
images, and the prediction time per prompt and image.

Usage: python benchmarks/presence_benchmark.py --work /tmp/presence_bench [--epochs 12] [--cases 12]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

DATASET_ID, DATASET = 978, "Dataset978_PresenceCT"
TRAINED = ["liver", "spleen", "stomach", "right kidney", "left kidney", "pancreas", "gallbladder", "aorta"]
LABEL_OF = {"liver": 1, "spleen": 2, "stomach": 3, "right kidney": 4, "left kidney": 5, "pancreas": 6,
            "gallbladder": 7, "aorta": 8}
ABDOMINAL = [p for p in TRAINED if p != "aorta"]   # the aorta runs through the chest too
NEVER_SEEN = ["brain", "cerebellum", "lateral ventricle"]
COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")
PYRADIOMICS = Path.home() / ".cache" / "nnunet_causal" / "downloads" / "pyradiomics-3.0.1.tar.gz"
OTHER_REGION = ("colin27_t1", "brain1_mr", "brain2_mr", "breast1_mr")
CHEST_CT = ("lung1_ct", "lung2_ct")

TRAINERS_PY = '''
import torch
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText


class nnUNetTrainerText_PresenceBench(nnUNetTrainerText):
    """The default text trainer (presence head) on a short CPU schedule."""
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = {epochs}, 25, 5


class nnUNetTrainerText_NoPresence_PresenceBench(nnUNetTrainerText_PresenceBench):
    presence_hidden_dim = None
'''


def make_images(work: Path, cases: int) -> dict:
    """Raw training set, test folders and the real images (NIfTI, one channel); returns the test folders."""
    import SimpleITK as sitk

    from nnunet_causal.synthetic.ct3d import make_ct_dataset

    raw = work / "raw" / DATASET
    if not (raw / "dataset.json").is_file():
        make_ct_dataset(raw, cases, ("scannerA", "scannerB"), test_fraction=0.25, seed=0, reports=True,
                        dataset_name=DATASET)
    held = work / "heldout"
    if not (held / "dataset.json").is_file():
        make_ct_dataset(held, 5, ("scannerC", "scannerD"), test_fraction=0.8, seed=1, reports=True,
                        dataset_name="heldout")
    real = work / "real"
    if not real.is_dir():
        tmp = work / "real.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(COLIN27)), sitk.sitkFloat32),
                        str(tmp / "colin27_t1_0000.nii.gz"))
        with tarfile.open(PYRADIOMICS) as tar:
            for name, member in (("brain1_mr", "brain1"), ("brain2_mr", "brain2"), ("breast1_mr", "breast1"),
                                 ("lung1_ct", "lung1"), ("lung2_ct", "lung2")):
                src = tmp / f"{member}.nrrd"
                src.write_bytes(tar.extractfile(f"pyradiomics-3.0.1/data/{member}_image.nrrd").read())
                sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(src)), sitk.sitkFloat32),
                                str(tmp / f"{name}_0000.nii.gz"))
                src.unlink()
        tmp.rename(real)
    return {"in-domain": (raw / "imagesTs", raw / "labelsTs"), "held-out site": (held / "imagesTs", held / "labelsTs"),
            "real": (real, None)}


def _run(cmd, env) -> float:
    print("+", " ".join(map(str, cmd)), flush=True)
    t = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def read_case(pred: Path, labels, case: str):
    import SimpleITK as sitk

    rows = json.loads((pred / f"{case}.prompts.json").read_text())["prompts"]
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / f"{case}.nii.gz")))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(labels / f"{case}.nii.gz"))) if labels else None
    return rows, seg, truth


def decided_present(row, seg, ignore_decisions: bool = False) -> bool:
    """The presence model's decision; a model without presence (``present`` null) "decides" by its mask."""
    if row["present"] is None or ignore_decisions:
        return bool((seg == row["label_value"]).any())
    return bool(row["present"]) and bool((seg == row["label_value"]).any())


def score_synthetic(pred: Path, raw_pred, labels: Path, ignore_decisions: bool = False) -> dict:
    """Presence precision / recall over (case, trained prompt) pairs, true-positive voxels kept."""
    tp = fp = fn = tn = 0
    kept = total = 0
    for sidecar in sorted(pred.glob("*.prompts.json")):
        case = sidecar.name[:-len(".prompts.json")]
        rows, seg, truth = read_case(pred, labels, case)
        raw_seg = read_case(raw_pred, labels, case)[1] if raw_pred else seg
        for row in rows:
            if row["prompt"] not in LABEL_OF:
                continue
            gt = truth == LABEL_OF[row["prompt"]]
            said = decided_present(row, seg, ignore_decisions)
            if gt.any():
                tp += said
                fn += not said
                kept += int(((seg == row["label_value"]) & gt).sum())
                total += int(((raw_seg == row["label_value"]) & gt).sum())
            else:
                fp += said
                tn += not said
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "pairs_present": tp + fn,
            "pairs_absent": fp + tn, "absent_decided_absent": tn / max(fp + tn, 1),
            "tp_voxels_kept": kept / max(total, 1)}


def score_real(pred: Path, images, prompts, ignore_decisions: bool = False) -> dict:
    """Share of (image, prompt) pairs decided absent (no mask for a model without presence), with reasons."""
    absent, reasons = [], {}
    for name in images:
        rows, seg, _ = read_case(pred, None, name)
        for row in rows:
            if row["prompt"] in prompts:
                said = decided_present(row, seg, ignore_decisions)
                absent.append(not said)
                if row.get("presence_reason") and not said and not ignore_decisions:
                    key = row["presence_reason"].split(":")[0].split("(")[0].strip()
                    reasons[key] = reasons.get(key, 0) + 1
    return {"decided_absent": float(np.mean(absent)) if absent else float("nan"), "pairs": len(absent),
            "reasons": reasons}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--epochs", type=int, default=12, help="training epochs of 25 steps (both models)")
    ap.add_argument("--cases", type=int, default=12, help="phantoms per training scanner (a quarter are test)")
    ap.add_argument("--train_ablation", action="store_true",
                    help="also train nnUNetTrainerText_NoPresence for the 'without presence' column (default: the "
                         "same model's unfiltered masks, --keep_absent_masks, with its decisions ignored)")
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()
    bin_dir = Path(sys.executable).parent
    from nnunet_causal.env_cli import ext_trainer_folder

    (work / "trainers").mkdir(parents=True, exist_ok=True)
    (work / "trainers" / "presence_bench_trainers.py").write_text(TRAINERS_PY.format(epochs=args.epochs))
    env = dict(os.environ, nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "pre"),
               nnUNet_results=str(work / "results"), nnUNet_compile="false", nnUNet_def_n_proc="1",
               nnUNet_n_proc_DA="1", nnUNet_extTrainer=os.pathsep.join([str(ext_trainer_folder()),
                                                                        str(work / "trainers")]))
    sets = make_images(work, args.cases)
    timings = json.loads((work / "timings.json").read_text()) if (work / "timings.json").is_file() else {}
    if not (work / "pre" / DATASET / "nnUNetPlans.json").is_file():
        timings["plan_and_preprocess_s"] = _run([bin_dir / "nnUNetv2_plan_and_preprocess", "-d", DATASET_ID, "-c",
                                                 "2d", "-np", "1", "-npfp", "1"], env)
    models = {}
    trainers = [("presence", "nnUNetTrainerText_PresenceBench")]
    if args.train_ablation:
        trainers.append(("no presence", "nnUNetTrainerText_NoPresence_PresenceBench"))
    for key, trainer in trainers:
        model = work / "results" / DATASET / f"{trainer}__nnUNetPlans__2d"
        if not (model / "fold_0" / "checkpoint_final.pth").is_file():
            resume = ["--c"] if any((model / "fold_0").glob("checkpoint_*.pth")) else []
            secs = _run([bin_dir / "nnUNetv2_train", DATASET_ID, "2d", "0", "-tr", trainer, "-device", "cpu",
                         *resume], env)
            timings[f"train {key} s"] = timings.get(f"train {key} s", 0) + secs
            (work / "timings.json").write_text(json.dumps(timings, indent=2))
        models[key] = model
    prompts = TRAINED + NEVER_SEEN
    results = {}
    for key, model in models.items():
        runs = [("filtered", [])] + ([("unfiltered", ["--keep_absent_masks"])] if key == "presence" else [])
        for run, extra in runs:
            for set_name, (images, _) in sets.items():
                if run == "unfiltered" and set_name == "real" and args.train_ablation:
                    continue
                out = work / "pred" / key.replace(" ", "_") / run / set_name.replace(" ", "_")
                n_images = len(list(images.glob("*_0000.nii.gz")))
                if not (out / "done").is_file():
                    secs = _run([bin_dir / "nnUNetv2_predict_text", "-i", images, "-o", out, "-m", model, "-f", "0",
                                 "-device", "cpu", "-prompts", *prompts, "--open_vocabulary",
                                 "--disable_progress_bar", "-npp", "1", "-nps", "1", *extra], env)
                    timings[f"predict {key} {run} {set_name}"] = {"s": secs, "images": n_images,
                                                                  "prompts": len(prompts)}
                    (work / "timings.json").write_text(json.dumps(timings, indent=2))
                    (out / "done").write_text("")
                results[(key, run, set_name)] = out
    if not args.train_ablation:   # without presence = the same weights, decisions ignored, masks unfiltered
        for set_name in sets:
            results[("no presence", "filtered", set_name)] = results[("presence", "unfiltered", set_name)]
    table = {}
    for key in ("no presence", "presence"):
        row = {}
        for set_name in ("in-domain", "held-out site"):
            raw = results.get((key, "unfiltered", set_name))
            row[set_name] = score_synthetic(results[(key, "filtered", set_name)], raw, sets[set_name][1],
                                            ignore_decisions=key == "no presence")
        real = results[(key, "filtered", "real")]
        ignore = key == "no presence"
        row["other region: abdominal prompts"] = score_real(real, OTHER_REGION, ABDOMINAL, ignore)
        row["other region: brain prompts"] = score_real(real, OTHER_REGION, NEVER_SEEN, ignore)
        row["chest CT: abdominal prompts"] = score_real(real, CHEST_CT, ABDOMINAL, ignore)
        row["chest CT: brain prompts"] = score_real(real, CHEST_CT, NEVER_SEEN, ignore)
        table[key] = row
    cal = json.loads((models["presence"] / "fold_0" / "presence_calibration.json").read_text())
    (work / "presence_results.json").write_text(json.dumps({"table": table, "timings": timings,
                                                            "calibration": {k: v for k, v in cal.items()
                                                                            if k != "domain"},
                                                            "domain": {k: v for k, v in cal["domain"].items()
                                                                       if k not in ("mean", "std")}}, indent=2))
    print_table(table, timings)
    return 0


def print_table(table: dict, timings: dict) -> None:
    a, b = table["no presence"], table["presence"]
    print(f"\n{'':52s}{'without presence':>18s}{'with presence':>16s}")
    for set_name in ("in-domain", "held-out site"):
        for metric in ("precision", "recall", "absent_decided_absent", "tp_voxels_kept"):
            print(f"{set_name + ': ' + metric:52s}{100 * a[set_name][metric]:17.1f}%{100 * b[set_name][metric]:15.1f}%")
        print(f"{set_name + ': pairs present / absent':52s}{a[set_name]['pairs_present']:>12d} / "
              f"{a[set_name]['pairs_absent']:<3d}")
    for name in ("other region: abdominal prompts", "other region: brain prompts", "chest CT: abdominal prompts",
                 "chest CT: brain prompts"):
        print(f"{name + ' decided absent (n=' + str(a[name]['pairs']) + ')':52s}"
              f"{100 * a[name]['decided_absent']:17.1f}%{100 * b[name]['decided_absent']:15.1f}%")
    print("reasons (with presence):", {k: v["reasons"] for k, v in b.items() if isinstance(v, dict) and "reasons" in v})
    for name, t in timings.items():
        if name.startswith("predict"):
            print(f"{name:44s}: {t['s']:.1f} s for {t['images']} images x {t['prompts']} prompts = "
                  f"{t['s'] / (t['images'] * t['prompts']):.3f} s per prompt and image")
    print({k: v for k, v in timings.items() if k.startswith("train") or k.startswith("plan")})


if __name__ == "__main__":
    sys.exit(main())
