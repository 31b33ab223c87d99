"""Presence: "is this structure in this image?" for an abdominal CT text model -- measured on in-domain and
held-out-site phantoms and on real images of other body regions, side by side with what a model without the
presence head reports, in one run.

Model: the project's synthetic abdominal CT phantoms (:mod:`nnunet_causal.synthetic.ct3d`, eight
TotalSegmentator structures; with ``reports=True`` the gallbladder, spleen and kidneys are each missing from
15 % of the cases), scanners A and B for training, 2D configuration, stock ``nnUNetv2_plan_and_preprocess``
and ``nnUNetv2_train`` with the default text trainer (presence head, calibration after validation) and
optionally its ``_NoPresence`` ablation on the same short schedule (``--epochs`` x 25 steps).

Test images:

* in-domain: test phantoms of scanners A and B;
* held-out site: phantoms of scanners C and D (other noise, kernel, slice thickness, contrast phase,
  streaks), never seen in training;
* other body region, real: the Colin27 T1 brain MRI (Debian ``mricron-data``, ``ch2.nii.gz``) and the
  pyradiomics brain1 / brain2 / breast1 MRIs; chest CT, real: pyradiomics lung1 / lung2 (whole axial chest
  CTs whose lowest slices may reach the upper abdomen; they carry no organ labels, so their abdominal pairs
  are reported apart).

Prompts: the eight trained structures, and brain structures the model never saw ("brain", "cerebellum",
"lateral ventricle", through ``--open_vocabulary``). One ``nnUNetv2_predict_text`` run per image set
(``--keep_absent_masks``, mirroring off): the sidecar holds the presence decisions, the label map the
unfiltered masks. Reported side by side: "without presence" -- a structure is "found" when it has a mask, what
a model without the presence head reports (by default the same weights; ``--train_ablation`` trains the
``_NoPresence`` model for it) -- and "with presence" -- the sidecar's ``present``. Per column: presence
precision / recall against the phantoms' labels (a structure is present in a case when its label has a voxel),
the share of true-positive voxels of present structures kept (a structure decided absent loses its voxels;
one decided present keeps them), the share of abdominal and brain prompt x image pairs decided absent on the
real images, and the prediction time per prompt and image.

Usage: python benchmarks/presence_benchmark.py --work /tmp/presence_bench [--epochs 8] [--train_ablation]
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


def decided_present(row, seg, use_presence: bool) -> bool:
    """With presence: the model's decision (``present``; a structure decided absent has no voxel in the label
    map, which the tests check). Without: the structure has a mask in the unfiltered label map."""
    if use_presence and row["present"] is not None:
        return bool(row["present"])
    return bool((seg == row["voxels_label_value" if "voxels_label_value" in row else "label_value"]).any())


def score_synthetic(pred: Path, labels: Path, use_presence: bool) -> dict:
    """Presence precision / recall over (case, trained prompt) pairs (a structure is present when its label
    has a voxel), and the share of true-positive voxels of present structures kept: those of structures
    decided present, in the unfiltered label map (a structure decided present keeps all its voxels)."""
    tp = fp = fn = tn = 0
    kept = total = 0
    for sidecar in sorted(pred.glob("*.prompts.json")):
        case = sidecar.name[:-len(".prompts.json")]
        rows, seg, truth = read_case(pred, labels, case)
        for row in rows:
            if row["prompt"] not in LABEL_OF:
                continue
            gt = truth == LABEL_OF[row["prompt"]]
            said = decided_present(row, seg, use_presence)
            if gt.any():
                tp += said
                fn += not said
                voxels = int(((seg == row["label_value"]) & gt).sum())
                total += voxels
                kept += voxels if said else 0
            else:
                fp += said
                tn += not said
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "pairs_present": tp + fn,
            "pairs_absent": fp + tn, "absent_decided_absent": tn / max(fp + tn, 1),
            "tp_voxels_kept": kept / max(total, 1)}


def score_real(pred: Path, images, prompts, use_presence: bool) -> dict:
    """Share of (image, prompt) pairs decided absent (no mask, without presence), with the reasons."""
    absent, reasons = [], {}
    for name in images:
        rows, seg, _ = read_case(pred, None, name)
        for row in rows:
            if row["prompt"] in prompts:
                said = decided_present(row, seg, use_presence)
                absent.append(not said)
                if use_presence and not said and row.get("presence_reason"):
                    key = row["presence_reason"].split(":")[0].split("(")[0].strip()
                    reasons[key] = reasons.get(key, 0) + 1
    return {"decided_absent": float(np.mean(absent)) if absent else float("nan"), "pairs": len(absent),
            "reasons": reasons}


def head_cost(model: Path, prompts, repeats: int = 30) -> dict:
    """Seconds per sliding-window tile: the network's forward pass (backbone, decoder, text head for every
    prompt) and the presence head on its embeddings for the same prompts, in this process."""
    import torch

    from nnunet_causal.inference.text_predictor import nnUNetTextPredictor

    torch.set_num_threads(1)
    p = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model), (0,))
    p.set_prompts(prompts, open_vocabulary=True)
    net = p.network.eval()
    x = torch.randn(1, 1, *p.configuration_manager.patch_size)
    with torch.inference_mode():
        feats = net.voxel_features(x)
        text = net.inference_embeddings
        net(x)
        t = time.perf_counter()
        for _ in range(repeats):
            net(x)
        t_net = (time.perf_counter() - t) / repeats
        t = time.perf_counter()
        for _ in range(repeats):
            net.presence(feats, text)
        t_head = (time.perf_counter() - t) / repeats
    return {"network_s_per_tile": t_net, "presence_head_s_per_tile": t_head, "prompts": len(prompts),
            "rows": int(text.shape[0])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--epochs", type=int, default=8, help="training epochs of 25 steps (both models)")
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
    preds = {}
    for key, model in models.items():
        for set_name, (images, _) in sets.items():
            # one run per set: decisions in the sidecar, unfiltered masks in the label map (no mirroring)
            out = work / "pred" / key.replace(" ", "_") / set_name.replace(" ", "_")
            n_images = len(list(images.glob("*_0000.nii.gz")))
            if not (out / "done").is_file():
                secs = _run([bin_dir / "nnUNetv2_predict_text", "-i", images, "-o", out, "-m", model, "-f", "0",
                             "-device", "cpu", "-prompts", *prompts, "--open_vocabulary", "--disable_tta",
                             "--keep_absent_masks", "--disable_progress_bar", "-npp", "1", "-nps", "1"], env)
                timings[f"predict {key} {set_name}"] = {"s": secs, "images": n_images, "prompts": len(prompts)}
                (work / "timings.json").write_text(json.dumps(timings, indent=2))
                (out / "done").write_text("")
            preds[(key, set_name)] = out
    table = {}
    for column, key, use in (("without presence", "no presence" if args.train_ablation else "presence", False),
                             ("with presence", "presence", True)):
        row = {}
        for set_name in ("in-domain", "held-out site"):
            row[set_name] = score_synthetic(preds[(key, set_name)], sets[set_name][1], use)
        real = preds[(key, "real")]
        row["other region: abdominal prompts"] = score_real(real, OTHER_REGION, ABDOMINAL, use)
        row["other region: brain prompts"] = score_real(real, OTHER_REGION, NEVER_SEEN, use)
        row["chest CT: abdominal prompts"] = score_real(real, CHEST_CT, ABDOMINAL, use)
        row["chest CT: brain prompts"] = score_real(real, CHEST_CT, NEVER_SEEN, use)
        table[column] = row
    cal = json.loads((models["presence"] / "fold_0" / "presence_calibration.json").read_text())
    scores = {}
    for set_name in sets:
        for sidecar in sorted(preds[("presence", set_name)].glob("*.prompts.json")):
            rows = json.loads(sidecar.read_text())["prompts"]
            scores[sidecar.name[:-len(".prompts.json")]] = {
                "domain_ratio": rows[0].get("presence_domain_ratio"),
                **{r["prompt"]: [r["presence_score"], r["present"], r.get("presence_reason")] for r in rows}}
    (work / "presence_results.json").write_text(json.dumps(
        {"table": table, "timings": timings, "calibration": {k: v for k, v in cal.items() if k != "domain"},
         "domain": {k: v for k, v in cal["domain"].items() if k not in ("mean", "std")}, "cases": scores}, indent=2))
    cost = head_cost(models["presence"], prompts)
    data = json.loads((work / "presence_results.json").read_text())
    (work / "presence_results.json").write_text(json.dumps({**data, "head_cost": cost}, indent=2))
    print_table(table, timings, "same weights, --keep_absent_masks" if not args.train_ablation else "ablation")
    print(f"per tile: network {1000 * cost['network_s_per_tile']:.2f} ms ({cost['prompts']} prompts), presence head "
          f"{1000 * cost['presence_head_s_per_tile']:.3f} ms = "
          f"{100 * cost['presence_head_s_per_tile'] / cost['network_s_per_tile']:.1f} % of it, "
          f"{1e6 * cost['presence_head_s_per_tile'] / cost['prompts']:.1f} us per prompt")
    return 0


def print_table(table: dict, timings: dict, baseline: str) -> None:
    a, b = table["without presence"], table["with presence"]
    print(f"\n{'':52s}{'without presence':>18s}{'with presence':>16s}   (without: {baseline})")
    for set_name in ("in-domain", "held-out site"):
        for metric in ("precision", "recall", "absent_decided_absent", "tp_voxels_kept"):
            print(f"{set_name + ': ' + metric:52s}{100 * a[set_name][metric]:17.1f}%{100 * b[set_name][metric]:15.1f}%")
        print(f"{set_name + ': pairs present / absent':52s}{a[set_name]['pairs_present']:>12d} / "
              f"{a[set_name]['pairs_absent']:<3d}")
    for name in ("other region: abdominal prompts", "other region: brain prompts", "chest CT: abdominal prompts",
                 "chest CT: brain prompts"):
        print(f"{name + ' decided absent (n=' + str(a[name]['pairs']) + ')':52s}"
              f"{100 * a[name]['decided_absent']:17.1f}%{100 * b[name]['decided_absent']:15.1f}%")
    print("reasons (with presence):", {k: v["reasons"] for k, v in b.items() if "reasons" in v})
    for name, t in timings.items():
        if name.startswith("predict"):
            print(f"{name:44s}: {t['s']:.1f} s for {t['images']} images x {t['prompts']} prompts = "
                  f"{t['s'] / (t['images'] * t['prompts']):.3f} s per prompt and image")
    print({k: v for k, v in timings.items() if not k.startswith("predict")})


if __name__ == "__main__":
    sys.exit(main())
