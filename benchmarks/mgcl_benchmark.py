"""MGCL text encoder vs the default encoder on synthetic CT phantoms with reports, side by side in one run.

Pipeline (every step is the package's or nnU-Net's own command / function):

1. ``make_ct_dataset(..., reports=True)``: phantoms of 3 scanners with a report per case written from the
   organ facts (absent organs, size words, lesions) in the *training wording* only
   (``nnunet_causal.synthetic.reports.REPORT_NAMES``);
2. ``nnUNetv2_plan_and_preprocess -c 2d`` and a short ``nnUNetv2_train`` of ``nnUNetTrainerText`` (stage 1:
   the segmentation encoder);
3. ``pretrain_text`` on the same frozen encoder, same epochs, same seed:
   * **MGCL**: MiniLM tuned (``--tune full`` by default) + image projection with the organ-position term,
     laterality-mirrored hard negatives (``pretrain-text``'s defaults) and the text-side caption contrast at
     ``--text-contrast-weight`` (default 1, as ``pretrain-text``'s);
   * ablations (``--ablations``): **MGCL, no text term** (default; ``--no-text-contrast``) and **MGCL, no
     laterality terms** (the seed's method: no position, mirrored negatives or text term);
   * **default**: MiniLM frozen (``--tune none``), only the image projection learns (with the position
     term) -- the default encoder given the same chance to map organ features into its space;
4. evaluation on the *test* phantoms (imagesTs, never seen by either stage; preprocessed with nnU-Net's
   ``DefaultPreprocessor``), every slice with >= 2 structures: organ retrieval top-1 = for a text query,
   is the organ feature it scores highest among the organs of that slice its own organ? Queries: the
   held-out synonyms and paraphrases of ``HELD_OUT_NAMES`` (never in a report), alone and in an unseen
   sentence, and, for reference, the training names; left vs right kidney with held-out side queries
   ("kidney on the left side", "right nephros", ...). Plus the side cosines of ``SIDE_PAIRS`` (bare phrases,
   no image: is a phrase closer to a held-out phrase of its side than to its mirror?) and seconds per epoch.
5. open-vocabulary Dice (``--no-dice`` skips it): the stage-1 model predicts the test volumes with every
   structure reworded -- training names, and two sets of held-out synonyms -- each prompt embedded by each
   column's text encoder (stock prediction's ``nnUNet_causal_prompt_file`` path, in process; see
   :func:`open_vocabulary_dice`). ``--stage3`` also trains ``nnUNetTrainerText_FrozenEncoders`` (same
   schedule as stage 1) on the MGCL and on the default folder and measures them the same way.

    python benchmarks/mgcl_benchmark.py --work /tmp/mgcl_bench    # defaults sized for a shared 2-core CPU
    python benchmarks/mgcl_benchmark.py --size 12 48 48 --seg-epochs 50 --seg-iterations 50 --mgcl-epochs 30
    # Dice of a longer stage 1 with the encoders of the first run (only the text encoders are swapped in):
    python benchmarks/mgcl_benchmark.py --work /tmp/mgcl_dice --seg-epochs 5 --seg-iterations 25 \
        --encoders-from /tmp/mgcl_bench
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
sys.path.insert(0, str(Path(__file__).parent))
from mgcl_open_vocab_dice import add_dice_rows, open_vocabulary_dice  # noqa: E402
DATASET_ID, DATASET = 991, "Dataset991_SynthCT"
TRAINER_MODULE = '''
import torch
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
from nnunet_causal.mgcl.frozen_encoders_trainer import nnUNetTrainerText_FrozenEncoders


class _Bench:
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        torch.set_num_threads(1)  # nnU-Net sets one per core; on a loaded shared CPU the second thread spins
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = 2


class nnUNetTrainerText_Bench(_Bench, nnUNetTrainerText):
    text_embed_dim = 16


class nnUNetTrainerText_FrozenEncoders_BenchMGCL(_Bench, nnUNetTrainerText_FrozenEncoders):
    text_embed_dim = 16


class nnUNetTrainerText_FrozenEncoders_BenchDefault(_Bench, nnUNetTrainerText_FrozenEncoders):
    """The same stage 3 on the default encoder's folder (MiniLM unchanged): only the text space differs."""
    text_embed_dim = 16
'''
#: default budget: the run of RESULTS_mgcl.md (run R6; 65 min at nice 19 on a 2-core CPU at load ~12)
SEG_EPOCHS, SEG_ITERATIONS, MGCL_EPOCHS, MGCL_ITERATIONS = 6, 10, 6, 2
UNSEEN_SENTENCE = "an image in which the {} can be seen"
#: (anchor, its mirror, a held-out phrase of the anchor's side): met when cos(anchor, mirror) < cos(anchor,
#: held-out). The first is the issue's target; the held-out phrases are never in a training caption.
SIDE_PAIRS = [("left kidney", "right kidney", "kidney on the left side"), ("left kidney", "right kidney", "left nephros"),
              ("right kidney", "left kidney", "kidney on the right side"),
              ("right kidney", "left kidney", "right nephros"),
              ("left nephros", "right nephros", "kidney on the left side"),
              ("right nephros", "left nephros", "kidney on the right side"),
              ("kidney on the left side", "kidney on the right side", "left nephros"),
              ("kidney on the right side", "kidney on the left side", "right nephros")]


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
    """Preprocessed test volumes (nnU-Net's DefaultPreprocessor) -> 2D slices with >= 2 structures, and each
    slice's place in its case (corner (z, 0, 0), case shape) for the organ-position term."""
    import torch
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(info["plans"])
    cm = pm.get_configuration(info["configuration"])
    pre = DefaultPreprocessor(verbose=False)
    xs, segs, zs, shapes = [], [], [], []
    for img in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        case = img.name[:-len("_0000.nii.gz")]
        data, seg, _ = pre.run_case([str(img)], str(raw / "labelsTs" / f"{case}.nii.gz"), pm, cm,
                                    info["dataset_json"])
        for z in range(data.shape[1]):
            s = seg[0, z]
            if sum(int((s == v).sum()) >= min_voxels for v in structures.values()) >= 2:
                xs.append(data[:, z])
                segs.append(s[None])
                zs.append(z)
                shapes.append(data.shape[1:])
    patch = cm.patch_size
    def fit(a):
        out = np.zeros((a.shape[0], *patch), a.dtype)
        h, w = min(a.shape[1], patch[0]), min(a.shape[2], patch[1])
        out[:, :h, :w] = a[:, :h, :w]
        return out
    from nnunet_causal.mgcl.organ_position import slice_positions
    return (torch.from_numpy(np.stack([fit(x) for x in xs])).float(),
            torch.from_numpy(np.stack([fit(s) for s in segs]).astype(np.int64)), slice_positions(zs, shapes))


def evaluate(folder: Path, info: dict, x, seg, boxes, structures: dict, min_voxels: int) -> dict:
    """Retrieval top-1 per query set and the laterality cosines for one encoder folder (organ features with
    the position term when the folder's head has one)."""
    import torch
    from nnunet_causal.mgcl.encoder_folder import load_image_head
    from nnunet_causal.mgcl.image_features import build_frozen_encoder, pool_features
    from nnunet_causal.mgcl.organ_position import organ_positions
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
            pos = None
            if projection.position is not None:
                pos = organ_positions(seg[i:i + 16], values, boxes[0][i:i + 16], boxes[1][i:i + 16])
            organ.append(projection(o, pos))
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
    if {"kidney_left", "kidney_right"} <= set(labels):  # laterality of the organ features themselves
        kl, kr = labels.index("kidney_left"), labels.index("kidney_right")
        both = torch.nonzero(present[:, kl] & present[:, kr]).flatten()
        q = text.encode(["kidney on the left side", "kidney on the right side", "left nephros", "right nephros"])
        hits = 0
        for s in both.tolist():
            scores = q @ organ[s, [kl, kr]].t()                          # (4, 2): left / right organ
            hits += int(scores[0, 0] > scores[0, 1]) + int(scores[1, 1] > scores[1, 0])
            hits += int(scores[2, 0] > scores[2, 1]) + int(scores[3, 1] > scores[3, 0])
        out["left vs right kidney, held-out side queries"] = (hits / max(4 * len(both), 1), 0.5, 4 * len(both))
    met = 0
    for anchor, mirror, held_out in SIDE_PAIRS:
        e = text.encode([anchor, mirror, held_out])
        ok = bool(e[0] @ e[1] < e[0] @ e[2])
        met += ok
        out[f"cos({anchor}, {mirror}) / cos({anchor}, {held_out})"] = \
            f"{float(e[0] @ e[1]):.3f} / {float(e[0] @ e[2]):.3f} {'met' if ok else 'missed'}"
    out["side pairs met (mirror < same-side held-out phrase)"] = f"{met} / {len(SIDE_PAIRS)}"
    return out








def stage1_dice(model: Path) -> float:
    """Foreground mean Dice of nnU-Net's final validation of the stage-1 model (fold 0)."""
    summary = model / "fold_0" / "validation" / "summary.json"
    if not summary.is_file():
        return float("nan")
    return float(json.loads(summary.read_text())["foreground_mean"]["Dice"])


#: ablation columns: name -> (column, folder suffix, position, laterality negatives, text-contrast weight, flags)
ABLATIONS = {"text": ("MGCL, no text term", "_notext", True, True, 0.0, " --no-text-contrast"),
             "laterality": ("MGCL, no laterality terms", "_nolat", False, False, 0.0,
                            " --no-position --no-laterality-negatives --no-text-contrast")}


def pretrain_variants(args, model: Path, work: Path, train: bool = True) -> dict:
    """``{column: encoder folder}``: MGCL (all terms: position, mirrored negatives, text-side contrast), the
    ablations asked for (``--ablations``), and the default encoder (MiniLM frozen, same head and loss);
    ``train=False``: the folders must exist already."""
    from nnunet_causal.mgcl.pretrain import PretrainSettings, pretrain_text

    w = args.text_contrast_weight
    variants = [("MGCL" if w == 1 else f"MGCL, text weight {w:g}", args.tune, "" if w == 1 else f"_text{w:g}", True,
                 True, w, "" if w == 1 else f" --text-contrast-weight {w:g}")]
    variants += [(ABLATIONS[a][0], args.tune, *ABLATIONS[a][1:]) for a in args.ablations]
    variants.append(("default (MiniLM)", "none", "", True, True, 0.0, ""))
    folders = {}
    for tag, tune, suffix, position, negatives, text_weight, flags in variants:
        out = work / f"encoder_{tune}{suffix}"
        if not (out / "mgcl.json").is_file():
            if not train:
                sys.exit(f"{out} is missing: run the benchmark with --work {work} first")
            t0 = time.time()
            pretrain_text(PretrainSettings(dataset=str(DATASET_ID), model_folder=str(model), output=str(out),
                                           epochs=args.mgcl_epochs, tune=tune, iterations=args.iterations,
                                           batch_size=args.batch_size, device=args.device, seed=0, overwrite=True,
                                           position=position, laterality_negatives=negatives,
                                           text_contrast_weight=text_weight))
            print(f"  {time.time() - t0:6.1f} s  pretrain-text --tune {tune}{flags}", flush=True)
        folders[tag] = out
    return folders




def stage3_dice(args, env, work: Path, folders: dict, structures: dict, raw: Path, results: dict) -> None:
    """Stage 3 (frozen encoders, decoder + connector trained, same schedule as stage 1) on the MGCL folder and
    on the default encoder's folder (only the text space differs), then Dice with each prompt set."""
    for tag, trainer in (("MGCL", "nnUNetTrainerText_FrozenEncoders_BenchMGCL"),
                         ("default (MiniLM)", "nnUNetTrainerText_FrozenEncoders_BenchDefault")):
        folder = work / "results" / DATASET / f"{trainer}__nnUNetPlans__2d"
        spec = f"mgcl:{folders[tag]}"
        if not (folder / "fold_0" / "checkpoint_final.pth").is_file():
            run(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", args.device],
                dict(env, nnUNet_n_proc_DA="0", nnUNet_causal_text_encoder=spec))
        add_dice_rows(results, open_vocabulary_dice(folder, {tag: spec}, structures, raw, work), "stage 3")


def print_table(results: dict, header: str) -> None:
    tags = list(results)
    metrics = list(dict.fromkeys(m for t in tags for m in results[t]))
    print(f"\n## {header}\n")
    print("| metric | " + " | ".join(tags) + " |")
    print("|---|" + "---|" * len(tags))
    for metric in metrics:
        cells, is_retrieval = [], False
        for t in tags:
            v = results[t].get(metric)
            if isinstance(v, tuple):
                is_retrieval = True
                cells.append(f"{v[0]:.3f} (chance {v[1]:.3f}, n={v[2]})")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append("–" if v is None else str(v))
        label = f"organ retrieval top-1, {metric}" if is_retrieval else metric
        print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/mgcl_bench")
    ap.add_argument("--cases", type=int, default=6, help="cases per scanner (3 scanners; 20%% go to imagesTs)")
    ap.add_argument("--size", type=int, nargs=3, default=(8, 32, 32))
    ap.add_argument("--seg-epochs", type=int, default=SEG_EPOCHS)
    ap.add_argument("--seg-iterations", type=int, default=SEG_ITERATIONS)
    ap.add_argument("--mgcl-epochs", type=int, default=MGCL_EPOCHS)
    ap.add_argument("--iterations", type=int, default=MGCL_ITERATIONS, help="pretraining steps per epoch")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--tune", default="full", choices=("full", "last-k", "lora"))
    ap.add_argument("--min-voxels", type=int, default=5, help="voxels for a structure to count in a test slice")
    ap.add_argument("--no-dice", dest="dice", action="store_false",
                    help="skip the held-out-synonym Dice of the stage-1 model with each encoder (on by default)")
    ap.add_argument("--stage3", action="store_true",
                    help="also train stage 3 on the MGCL and on the default folder and measure their Dice (slow)")
    ap.add_argument("--ablations", nargs="*", choices=tuple(ABLATIONS), default=["text"],
                    help="MGCL columns with terms off: text (no text-side contrast; default), laterality (no "
                         "position, mirrored negatives or text term: the seed's method); no value: none")
    ap.add_argument("--text-contrast-weight", type=float, default=1.0,
                    help="weight of the text-side term in the MGCL column (default 1, as pretrain-text's)")
    ap.add_argument("--encoders-from", default=None, metavar="WORK",
                    help="Dice rows only, with the encoder folders of another --work (aligned to that run's stage-1 "
                         "model, so retrieval is not measured here): a longer stage 1 than pretraining can follow")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    work = Path(args.work)
    env = environment(work, args)
    env["BENCH_DEVICE"] = args.device
    import logging
    logging.basicConfig(level=logging.WARNING)
    from nnunet_causal.mgcl.data import structures_of
    from nnunet_causal.mgcl.image_features import read_model_folder
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
    print(f"  stage-1 validation Dice (fold 0, foreground mean): {stage1_dice(model):.3f}", flush=True)
    print("stage 2: MGCL pretraining vs the default encoder (projection only)", flush=True)
    info = read_model_folder(model)
    structures = structures_of(info["dataset_json"], "dataset.json")
    if args.encoders_from:  # their image heads belong to the other run's stage-1 model: no retrieval rows
        folders = pretrain_variants(args, model, Path(args.encoders_from), train=False)
        results, n_slices = {tag: {"encoder folder (other stage-1 model)": str(f)} for tag, f in folders.items()}, 0
    else:
        folders = pretrain_variants(args, model, work)
        x, seg, boxes = test_slices(raw, info, structures, min_voxels=args.min_voxels)
        results = {tag: evaluate(f, info, x, seg, boxes, structures, args.min_voxels) for tag, f in folders.items()}
        n_slices = len(x)
    for tag, f in folders.items():
        hist = json.loads((f / "mgcl.json").read_text())["history"]
        results[tag]["seconds per pretraining epoch"] = float(np.mean([h["seconds"] for h in hist]))
        results[tag]["final loss (clip / mgcl / text)"] = (f"{hist[-1]['clip']:.3f} / {hist[-1]['mgcl']:.3f} / "
                                                            + (f"{hist[-1]['text']:.3f}" if "text" in hist[-1] else "–"))
    if args.dice:
        print("Dice with held-out synonym prompts: the stage-1 model, its text encoder swapped", flush=True)
        t0 = time.time()
        add_dice_rows(results, open_vocabulary_dice(model, {t: f"mgcl:{f}" for t, f in folders.items()}, structures,
                                                    raw, work), "stage-1 model")
        print(f"  {time.time() - t0:6.1f} s  Dice of {len(folders)} encoders x 3 prompt sets", flush=True)
    if args.stage3:
        print("stage 3: frozen encoders + Dice with held-out synonym prompts", flush=True)
        stage3_dice(args, env, work, folders, structures, raw, results)
    print_table(results, f"MGCL vs default text encoder ({n_slices} test slices of "
                         f"{len(list((raw / 'imagesTs').glob('*')))} held-out volumes; stage 1 {args.seg_epochs} x "
                         f"{args.seg_iterations} steps, validation Dice {stage1_dice(model):.3f}; {args.mgcl_epochs} "
                         f"pretraining epochs x {args.iterations} steps; {time.time() - t_start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
