"""MGCL text encoder vs the default encoder on synthetic CT phantoms with reports, side by side in one run.

Pipeline (every step is the package's or nnU-Net's own command / function):

1. ``make_ct_dataset(..., reports=True)``: phantoms of 3 scanners with a report per case written from the
   organ facts (absent organs, size words, lesions) in the *training wording* only
   (``nnunet_causal.synthetic.reports.REPORT_NAMES``);
2. ``nnUNetv2_plan_and_preprocess -c 2d`` and a short ``nnUNetv2_train`` of ``nnUNetTrainerText`` (stage 1:
   the segmentation encoder);
3. ``pretrain_text`` twice on the same frozen encoder, same epochs, same seed:
   * **MGCL**: MiniLM tuned (``--tune full`` by default) + image projection;
   * **default**: MiniLM frozen (``--tune none``), only the image projection learns -- the default encoder
     given the same chance to map organ features into its space;
4. evaluation on the *test* phantoms (imagesTs, never seen by either stage; preprocessed with nnU-Net's
   ``DefaultPreprocessor``), every slice with >= 2 structures: organ retrieval top-1 = for a text query,
   is the organ feature it scores highest among the organs of that slice its own organ? Queries: the
   held-out synonyms and paraphrases of ``HELD_OUT_NAMES`` (never in a report), alone and in an unseen
   sentence, and, for reference, the training names. Plus the laterality cosines and seconds per epoch.
5. ``--dice``: stage 3 (``nnUNetTrainerText_FrozenEncoders`` on the MGCL encoder, same schedule as stage 1)
   and Dice of stock ``nnUNetv2_predict`` with every structure reworded by a held-out synonym
   (``nnUNet_causal_prompt_file``), against the stage-1 model (default encoder) reworded the same way.

    python benchmarks/mgcl_benchmark.py --work /tmp/mgcl_bench    # defaults sized for a shared 2-core CPU
    python benchmarks/mgcl_benchmark.py --size 12 48 48 --seg-epochs 20 --seg-iterations 25 --mgcl-epochs 20 --dice
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASET_ID, DATASET = 991, "Dataset991_SynthCT"
TRAINER_MODULE = '''
import torch
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
from nnunet_causal.mgcl.frozen_encoders_trainer import nnUNetTrainerText_FrozenEncoders


class _Bench:
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = 2


class nnUNetTrainerText_Bench(_Bench, nnUNetTrainerText):
    text_embed_dim = 16


class nnUNetTrainerText_FrozenEncoders_Bench(_Bench, nnUNetTrainerText_FrozenEncoders):
    text_embed_dim = 16
'''
UNSEEN_SENTENCE = "an image in which the {} can be seen"


def run(cmd, env):
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    print(f"  {time.time() - t0:6.1f} s  {' '.join(cmd[:4])}", flush=True)


def environment(work: Path, args) -> dict:
    extra = work / "extra_trainers"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / "mgcl_bench_trainers.py").write_text(TRAINER_MODULE.format(epochs=args.seg_epochs,
                                                                        iterations=args.seg_iterations))
    sys.path.insert(0, str(ROOT))
    from nnunet_causal.env_cli import ext_trainer_folder
    env = {"nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
           "nnUNet_results": str(work / "results"), "nnUNet_compile": "false", "nnUNet_def_n_proc": "1",
           "nnUNet_extTrainer": os.pathsep.join([str(ext_trainer_folder()), str(extra)]),
           "nnUNet_causal_cache": str(work / "text_cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for k, v in env.items():
        os.environ[k] = v
        if k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            Path(v).mkdir(parents=True, exist_ok=True)
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")])
    full["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full.get("PATH", "")
    return full


def test_slices(raw: Path, info: dict, structures: dict, min_voxels: int):
    """Preprocessed test volumes (nnU-Net's DefaultPreprocessor) -> 2D slices with >= 2 structures."""
    import torch
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(info["plans"])
    cm = pm.get_configuration(info["configuration"])
    pre = DefaultPreprocessor(verbose=False)
    xs, segs = [], []
    for img in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        case = img.name[:-len("_0000.nii.gz")]
        data, seg, _ = pre.run_case([str(img)], str(raw / "labelsTs" / f"{case}.nii.gz"), pm, cm,
                                    info["dataset_json"])
        for z in range(data.shape[1]):
            s = seg[0, z]
            if sum(int((s == v).sum()) >= min_voxels for v in structures.values()) >= 2:
                xs.append(data[:, z])
                segs.append(s[None])
    patch = cm.patch_size
    def fit(a):
        out = np.zeros((a.shape[0], *patch), a.dtype)
        h, w = min(a.shape[1], patch[0]), min(a.shape[2], patch[1])
        out[:, :h, :w] = a[:, :h, :w]
        return out
    return (torch.from_numpy(np.stack([fit(x) for x in xs])).float(),
            torch.from_numpy(np.stack([fit(s) for s in segs]).astype(np.int64)))


def evaluate(folder: Path, info: dict, x, seg, structures: dict, min_voxels: int) -> dict:
    """Retrieval top-1 per query set and the laterality cosines for one encoder folder."""
    import torch
    from nnunet_causal.mgcl.encoder_folder import load_image_head
    from nnunet_causal.mgcl.image_features import build_frozen_encoder, pool_features
    from nnunet_causal.synthetic.reports import HELD_OUT_NAMES, REPORT_NAMES
    from nnunet_causal.text.encoders import create_text_encoder

    encoder, _ = build_frozen_encoder(info)
    projection, _, _ = load_image_head(folder)
    text = create_text_encoder(f"mgcl:{folder}")
    labels, values = list(structures), list(structures.values())
    with torch.no_grad():
        organ, present = [], []
        for i in range(0, len(x), 16):
            o, p, _ = pool_features(encoder(x[i:i + 16]), seg[i:i + 16], values, min_voxels)
            organ.append(projection(o))
            present.append(p)
        organ, present = torch.cat(organ), torch.cat(present)
    sets = {"held-out synonyms": lambda n: HELD_OUT_NAMES[n],
            "held-out synonyms in an unseen sentence": lambda n: [UNSEEN_SENTENCE.format(q) for q in HELD_OUT_NAMES[n]],
            "training names": lambda n: REPORT_NAMES[n]}
    out = {}
    for name, queries_of in sets.items():
        hits, total, chance = 0, 0, 0.0
        for k, label in enumerate(labels):
            queries = queries_of(label)
            q = text.encode(queries)                                     # (Q, D)
            for s in torch.nonzero(present[:, k]).flatten().tolist():
                cand = torch.nonzero(present[s]).flatten()
                scores = q @ organ[s, cand].t()                          # (Q, n_cand)
                hits += int((cand[scores.argmax(1)] == k).sum())
                total += len(queries)
                chance += len(queries) / len(cand)
        out[name] = (hits / max(total, 1), chance / max(total, 1), total)
    e = text.encode(["left kidney", "right kidney", "kidney on the left side"])
    out["cos(left kidney, right kidney)"] = float(e[0] @ e[1])
    out["cos(left kidney, kidney on the left side)"] = float(e[0] @ e[2])
    return out


def dice_heldout(env, work: Path, model_trainer: str, extra_env: dict, structures: dict, tag: str) -> float:
    """Mean Dice over structures and test volumes of stock prediction with held-out synonym wording."""
    import SimpleITK as sitk
    from nnunet_causal.synthetic.reports import HELD_OUT_NAMES

    prompts = work / "heldout_prompts.txt"
    prompts.write_text("".join(f"{HELD_OUT_NAMES[n][0]}\n" for n in structures))
    out = work / f"pred_{tag}"
    run(["nnUNetv2_predict", "-i", str(work / "raw" / DATASET / "imagesTs"), "-o", str(out), "-d", str(DATASET_ID),
         "-c", "2d", "-f", "0", "-tr", model_trainer, "-device", env.get("BENCH_DEVICE", "cpu"), "-npp", "1", "-nps", "1"],
        dict(env, nnUNet_causal_prompt_file=str(prompts), **extra_env))
    scores = []
    for pred in sorted(out.glob("*.nii.gz")):
        p = sitk.GetArrayFromImage(sitk.ReadImage(str(pred)))
        g = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "raw" / DATASET / "labelsTs" / pred.name)))
        for v in structures.values():
            a, b = p == v, g == v
            if b.any() or a.any():
                scores.append(2 * (a & b).sum() / (a.sum() + b.sum()))
    return float(np.mean(scores)) if scores else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/mgcl_bench")
    ap.add_argument("--cases", type=int, default=6, help="cases per scanner (3 scanners; 20%% go to imagesTs)")
    ap.add_argument("--size", type=int, nargs=3, default=(8, 32, 32))
    ap.add_argument("--seg-epochs", type=int, default=2)
    ap.add_argument("--seg-iterations", type=int, default=10)
    ap.add_argument("--mgcl-epochs", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=2, help="pretraining steps per epoch")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--tune", default="full", choices=("full", "last-k", "lora"))
    ap.add_argument("--min-voxels", type=int, default=5, help="voxels for a structure to count in a test slice")
    ap.add_argument("--dice", action="store_true", help="also stage 3 + held-out-synonym Dice (slower)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    work = Path(args.work)
    env = environment(work, args)
    env["BENCH_DEVICE"] = args.device
    import logging
    logging.basicConfig(level=logging.WARNING)
    from nnunet_causal.mgcl.data import structures_of
    from nnunet_causal.mgcl.image_features import read_model_folder
    from nnunet_causal.mgcl.pretrain import PretrainSettings, pretrain_text
    from nnunet_causal.synthetic.ct3d import make_ct_dataset

    t_start = time.time()
    raw = work / "raw" / DATASET
    print("stage 0/1: data and segmentation model", flush=True)
    if not raw.exists():
        make_ct_dataset(raw, args.cases, ("scannerA", "scannerB", "scannerC"), shape=tuple(args.size), seed=0,
                        reports=True, dataset_name=DATASET)
    if not (work / "preprocessed" / DATASET / "nnUNetPlans_2d").is_dir():
        run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1"], env)
    model = work / "results" / DATASET / "nnUNetTrainerText_Bench__nnUNetPlans__2d"
    if not (model / "fold_0" / "checkpoint_final.pth").is_file():
        run(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", "nnUNetTrainerText_Bench", "-device", args.device],
            dict(env, nnUNet_n_proc_DA="0"))
    print("stage 2: MGCL pretraining vs the default encoder (projection only)", flush=True)
    folders = {}
    for tag, tune in (("MGCL", args.tune), ("default (MiniLM)", "none")):
        out = work / f"encoder_{tune}"
        if not (out / "mgcl.json").is_file():
            t0 = time.time()
            pretrain_text(PretrainSettings(dataset=str(DATASET_ID), model_folder=str(model), output=str(out),
                                           epochs=args.mgcl_epochs, tune=tune, iterations=args.iterations,
                                           batch_size=args.batch_size, device=args.device, seed=0, overwrite=True))
            print(f"  {time.time() - t0:6.1f} s  pretrain-text --tune {tune}", flush=True)
        folders[tag] = out
    info = read_model_folder(model)
    structures = structures_of(info["dataset_json"], "dataset.json")
    x, seg = test_slices(raw, info, structures, min_voxels=args.min_voxels)
    results = {tag: evaluate(f, info, x, seg, structures, args.min_voxels) for tag, f in folders.items()}
    for tag, f in folders.items():
        hist = json.loads((f / "mgcl.json").read_text())["history"]
        results[tag]["seconds per pretraining epoch"] = float(np.mean([h["seconds"] for h in hist]))
        results[tag]["final loss (clip / mgcl)"] = f"{hist[-1]['clip']:.3f} / {hist[-1]['mgcl']:.3f}"
    if args.dice:
        print("stage 3: frozen encoders + held-out-synonym Dice", flush=True)
        mgcl_env = {"nnUNet_causal_text_encoder": f"mgcl:{folders['MGCL']}"}
        stage3 = work / "results" / DATASET / "nnUNetTrainerText_FrozenEncoders_Bench__nnUNetPlans__2d"
        if not (stage3 / "fold_0" / "checkpoint_final.pth").is_file():
            run(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", "nnUNetTrainerText_FrozenEncoders_Bench",
                 "-device", args.device], dict(env, nnUNet_n_proc_DA="0", **mgcl_env))
        results["MGCL"]["Dice, held-out synonym prompts"] = dice_heldout(
            env, work, "nnUNetTrainerText_FrozenEncoders_Bench", {}, structures, "mgcl")
        results["default (MiniLM)"]["Dice, held-out synonym prompts"] = dice_heldout(
            env, work, "nnUNetTrainerText_Bench", {}, structures, "default")

    tags = list(results)
    print(f"\n## MGCL vs default text encoder ({len(x)} test slices of {len(list((raw / 'imagesTs').glob('*')))} "
          f"held-out volumes; {args.mgcl_epochs} pretraining epochs x {args.iterations} steps; "
          f"{time.time() - t_start:.0f} s in all)\n")
    print("| metric | " + " | ".join(tags) + " |")
    print("|---|" + "---|" * len(tags))
    for metric in results[tags[0]]:
        cells = []
        for t in tags:
            v = results[t].get(metric)
            if isinstance(v, tuple):
                cells.append(f"{v[0]:.3f} (chance {v[1]:.3f}, n={v[2]})")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append(str(v))
        label = f"organ retrieval top-1, {metric}" if isinstance(results[tags[0]][metric], tuple) else metric
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
