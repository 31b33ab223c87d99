"""Test-time intervention benchmark: do commands fix simulated errors, leave other structures alone, and cost
less than predicting again? (measured side by side in one run)

Steps (CPU, about 10-20 minutes on 2 cores):
1. A synthetic 2D RGB dataset written here (``--size`` px frames, textured background with a red irregular
   "lesion", a blue "marker" square and a yellow "spot"), stock ``nnUNetv2_plan_and_preprocess``, the 2D plan
   with halved widths (``nnUNetPlans_CPU16``), stock ``nnUNetv2_train ... -tr nnUNetTrainerText_CPUDemo``.
2. ``nnunet_causal train-tci`` on the frozen model (``run_train_tci``, ``--tci-steps``, ``--film-stages``);
   a generator already in the model folder with the same steps, seed and film stages is reused (printed).
   ``--compare-tci LABEL=FILE`` (repeatable) adds the variants of another generator (e.g. the run-R5
   all-stage one), each with its own session and full prediction, so old and new are timed in the same run.
3. Per test case and target structure (each of the three in turn), four simulated errors, each answered by
   the command that should fix it:

   =============== ======================================================= ===================================
   error           how it is simulated                                      command
   =============== ======================================================= ===================================
   dilated         reference := erode(GT_target, 2 px) (the prediction is   "shrink the T"
                   2 px too wide relative to it)
   eroded          reference := dilate(GT_target, 2 px)                     "expand the T"
   missing part    40-70% of the target faded into its surroundings in the  "add the missing part of the T"
                   image (the model misses it); reference := GT
   spurious island a blob with the target's colour painted in the quadrant   "remove the T in the LOCATION"
                   farthest from it (the model finds it); reference := GT
   =============== ======================================================= ===================================

   Commands go through the command parser (``nnunet_causal.intervention.commands``) when it is installed,
   else through the equivalent action dicts (printed: which one was used). Per error: % of cases where the
   target's Dice improves (among cases where the error shows in the base prediction, and among all), the
   mean Dice change, and the largest Dice loss of any other structure in points.
4. Timing per case: the edit (decoder-only replay + label-map conversion) against a full prediction of the
   same case (preprocessing + sliding window with mirroring + conversion) and against the sliding window alone;
   medians over the case x target x error pairs (the first edit of a case pays the per-case set-up).

Usage: ``python benchmarks/intervention_benchmark.py --work /tmp/tci_bench``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lodo_benchmark import PLANS, bin_, run, write_cpu16_plans  # noqa: E402  (the same helpers and plans)

TRAINER = "nnUNetTrainerText_CPUDemo"
STRUCTURES = {"lesion": (1, (205, 70, 70)), "marker": (2, (60, 80, 205)), "spot": (3, (225, 205, 60))}
PROMPTS = {"lesion": ["lesion", "red blob"], "marker": ["marker", "blue square"], "spot": ["spot", "yellow dot"]}
ERRORS = ("dilated", "eroded", "missing part", "spurious island")


# ------------------------------------------------------------------ data
def _shape(rng, kind, size):
    yy, xx = np.mgrid[:size, :size]
    if kind == "marker":
        s = int(rng.integers(8, 13))
        y, x = rng.integers(2, size - s - 2, 2)
        m = np.zeros((size, size), bool)
        m[y:y + s, x:x + s] = True
        return m
    r = rng.uniform(7, 11) if kind == "lesion" else rng.uniform(3, 5)
    cy, cx = rng.uniform(r + 2, size - r - 2, 2)
    ang = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.15 * np.sin(3 * ang + rng.uniform(0, 6)) if kind == "lesion" else 1
    return np.hypot(yy - cy, xx - cx) <= r * wobble


def render(rng, size):
    from scipy import ndimage
    img = np.array([150, 110, 100], float) + 12 * ndimage.gaussian_filter(rng.normal(0, 1, (size, size, 3)), 3) * 3
    img += rng.normal(0, 8, img.shape)
    seg = np.zeros((size, size), np.uint8)
    for name, (value, colour) in STRUCTURES.items():
        for _ in range(100):
            m = _shape(rng, name, size)
            if not (ndimage.binary_dilation(m, iterations=2) & (seg > 0)).any():
                break
        img[m] = np.array(colour) + rng.normal(0, 10, (m.sum(), 3))
        seg[m] = value
    return np.clip(img, 0, 255).astype(np.uint8), seg


def write_dataset(raw: Path, n_train: int, n_test: int, size: int, seed: int) -> None:
    from PIL import Image
    from nnunet_causal.data.raw_dataset import write_dataset_json

    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        img, seg = render(rng, size)
        split = "Tr" if i < n_train else "Ts"
        Image.fromarray(img).save(raw / f"images{split}" / f"case_{i:03d}_0000.png")
        Image.fromarray(seg).save(raw / f"labels{split}" / f"case_{i:03d}.png")
    write_dataset_json(raw, {"0": "R", "1": "G", "2": "B"},
                       {"background": 0, **{n: v for n, (v, _) in STRUCTURES.items()}}, n_train, ".png",
                       prompts=PROMPTS, imaging_family="endoscopy")




def prepare_model(work: Path, args, env, log) -> Path:
    did = args.dataset_id
    name = f"Dataset{did}_TCIBench"
    raw, pre = work / "raw" / name, work / "pre" / name
    model = work / "results" / name / f"{TRAINER}__{PLANS}__2d"
    if (model / "fold_0" / "checkpoint_final.pth").is_file():
        return model
    if not (pre / f"{PLANS}.json").is_file():
        shutil.rmtree(work, ignore_errors=True)
        write_dataset(raw, args.n_train, args.n_test, args.size, args.seed)
        run([bin_("nnUNetv2_plan_and_preprocess"), "-d", str(did), "-c", "2d", "-np", "1", "-npfp", "1"], env, log)
        write_cpu16_plans(pre)
        cases = sorted(p.name[:-len("_0000.png")] for p in (raw / "imagesTr").glob("*_0000.png"))
        (pre / "splits_final.json").write_text(json.dumps([{"train": cases[:-4], "val": cases[-4:]}]))
    run([bin_("nnUNetv2_train"), str(did), "2d", "0", "-tr", TRAINER, "-p", PLANS, "-device", "cpu"], env, log)
    return model


# ------------------------------------------------------------------ simulated errors
def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2 * float((a & b).sum()) / float(s)


def fade_part_np(img, mask, rng):
    from scipy import ndimage
    coords = np.argwhere(mask).astype(float)
    d = rng.normal(size=2)
    d /= np.linalg.norm(d)
    proj = coords @ d
    part = np.zeros_like(mask)
    sel = coords[proj >= np.quantile(proj, 1 - rng.uniform(0.4, 0.7))].astype(int)
    part[tuple(sel.T)] = True
    shell = ndimage.binary_dilation(mask, iterations=3) & ~mask
    a = rng.uniform(0.8, 0.95)
    out = img.astype(float)
    out[part] += a * (out[shell].mean(0) - out[part])
    return np.clip(out, 0, 255).astype(np.uint8)


def add_island(img, seg, target_value, rng):
    """Paint a blob of the target's colour in the quadrant farthest from the target; returns image, words."""
    size = seg.shape[0]
    cy, cx = np.argwhere(seg == target_value).mean(0)
    top, left = cy >= size / 2, cx >= size / 2   # opposite quadrant
    yy, xx = np.mgrid[:size, :size]
    for _ in range(200):
        y = rng.uniform(5, size / 2 - 5) + (0 if top else size / 2)
        x = rng.uniform(5, size / 2 - 5) + (0 if left else size / 2)
        blob = np.hypot(yy - y, xx - x) <= rng.uniform(3.5, 5)
        if not (blob & (seg > 0)).any():
            break
    out = img.astype(float)
    colour = out[seg == target_value].mean(0)
    out[blob] = colour + rng.normal(0, 8, (blob.sum(), 3))
    words = ("top" if top else "bottom") + " " + ("left" if left else "right")
    return np.clip(out, 0, 255).astype(np.uint8), words


COMMANDS = {"dilated": ("shrink", "shrink the {t}"), "eroded": ("expand", "expand the {t}"),
            "missing part": ("add", "add the missing part of the {t}"),
            "spurious island": ("remove", "remove the {t} in the {loc}")}


#: name -> (session, keep_others, edit_mirroring, replay); session "main": the generator of the model folder
VARIANTS = {"default (exact others, TTA replayed, decoder tail)": ("main", "exact", True, "tail"),
            "learned others (raw modulated channels, TTA replayed)": ("main", "learned", True, "tail"),
            "unmirrored edit (exact others)": ("main", "exact", False, "tail")}


def compare_variants(label: str) -> dict:
    """The variants of a --compare-tci generator (session ``label``)."""
    return {f"{label}: TTA replayed, nnU-Net loop": (label, "exact", True, "nnunet"),
            f"{label}: TTA replayed, decoder tail": (label, "exact", True, "tail")}


def report(variant: str, rows) -> None:
    print(f"\n### {variant}: {len(rows) // len(ERRORS)} case x target pairs per error\n")
    print("| error | command | improved (error shows) | improved (all) | mean Dice base -> edit | "
          "max other loss (points) |")
    print("|---|---|---|---|---|---|")
    all_shown, all_improved, worst = 0, 0, 0.0
    for error in ERRORS:
        r = [x for x in rows if x["error"] == error]
        s = [x for x in r if x["shows"]]
        imp_s = sum(x["dice_edit"] > x["dice_base"] for x in s)
        imp = sum(x["dice_edit"] > x["dice_base"] for x in r)
        all_shown += len(s)
        all_improved += imp_s
        w = max(x["other_loss_points"] for x in r)
        worst = max(worst, w)
        print(f"| {error} | \"{COMMANDS[error][1]}\" | {imp_s}/{len(s)} ({100 * imp_s / max(1, len(s)):.0f}%) | "
              f"{imp}/{len(r)} ({100 * imp / len(r):.0f}%) | {np.mean([x['dice_base'] for x in r]):.3f} -> "
              f"{np.mean([x['dice_edit'] for x in r]):.3f} | {w:.2f} |")
    print(f"| **all** | | {all_improved}/{all_shown} ({100 * all_improved / max(1, all_shown):.0f}%) | | | "
          f"{worst:.2f} |")
    e = np.array([x["edit_seconds"] for x in rows])
    f = np.array([x["full_seconds"] for x in rows])
    n = np.array([x["network_seconds"] for x in rows])
    print("\n| median per case | edit (s) | full prediction (s) | sliding window only (s) | edit / full | "
          "edit / sliding window | encoder calls in edits |")
    print("|---|---|---|---|---|---|---|")
    print(f"| | {np.median(e):.4f} | {np.median(f):.4f} | {np.median(n):.4f} | {np.median(e / f):.2f}x | "
          f"{np.median(e / n):.2f}x | {sum(x['encoder_calls'] for x in rows)} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--dataset-id", type=int, default=981)
    ap.add_argument("--n-train", type=int, default=60)
    ap.add_argument("--n-test", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--tci-steps", type=int, default=600)
    ap.add_argument("--film-stages", type=int, default=2, help="train-tci --film-stages (0: all stages)")
    ap.add_argument("--compare-tci", action="append", default=[], metavar="LABEL=FILE",
                    help="another generator's tci_weights.pth to compare (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-cases", type=int, default=None, help="evaluate only the first N test cases")
    args = ap.parse_args(argv)
    work = Path(args.work).absolute()
    work.mkdir(parents=True, exist_ok=True)
    from nnunet_causal.env_cli import ext_trainer_folder
    env = {**os.environ, "nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "pre"),
           "nnUNet_results": str(work / "results"), "nnUNet_extTrainer": str(ext_trainer_folder()),
           "nnUNet_compile": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "nnUNet_n_proc_DA": "1"}
    os.environ.update(env)
    log = work / "log.txt"
    t0 = time.time()
    model = prepare_model(work, args, env, log)
    print(f"base model: {model} ({time.time() - t0:.0f} s)")

    from nnunet_causal.intervention.modulation.train_tci import run_train_tci
    from nnunet_causal.intervention.modulation.session import InterventionSession
    from nnunet_causal.intervention.modulation.weights import read_tci_settings
    tci = read_tci_settings(model, 0)
    reused = (tci.get("steps"), tci.get("seed"), tci.get("film_stages", 0)) == (args.tci_steps, args.seed,
                                                                                args.film_stages)
    if not reused:
        tci = run_train_tci(model, "0", steps=args.tci_steps, progress=False, seed=args.seed,
                            film_stages=args.film_stages)
    print(f"train-tci ({'reused from the model folder' if reused else 'trained now'}): {tci['steps']} steps in "
          f"{tci['seconds']:.0f} s, modulated decoder stages {tci['generator']['stages'] if 'generator' in tci else '?'}"
          f", final losses " + ", ".join(f"{k} {v:.3f}" for k, v in tci["final_losses"].items()))
    compare = dict(item.split("=", 1) for item in args.compare_tci)
    for label, path in compare.items():
        import torch
        other = torch.load(path, map_location="cpu", weights_only=False)
        st = other.get("settings", {})
        print(f"{label}: {path}, {st.get('steps')} steps in {st.get('seconds')} s, modulated decoder stages "
              f"{other['generator'].get('stages', 'all')}, final losses "
              + ", ".join(f"{k} {v:.3f}" for k, v in st.get("final_losses", {}).items()))
    try:
        from nnunet_causal.intervention.commands import parse_command  # noqa: F401
        use_parser = True
    except ImportError:
        use_parser = False
    print("commands via: " + ("the command parser" if use_parser else "action dicts (parser not installed)"))

    from PIL import Image
    raw = work / "raw" / f"Dataset{args.dataset_id}_TCIBench"
    sessions = {"main": InterventionSession(model, "0")}
    variants = dict(VARIANTS)
    for label, path in compare.items():
        sessions[label] = InterventionSession(model, "0", tci_weights=path)
        variants.update(compare_variants(label))
    rng = np.random.default_rng(args.seed + 1)
    rows = []
    tmp = work / "cases"
    tmp.mkdir(exist_ok=True)
    from scipy import ndimage
    for img_path in sorted((raw / "imagesTs").glob("*_0000.png"))[:args.max_cases]:
        case = img_path.name[:-len("_0000.png")]
        img = np.array(Image.open(img_path))
        gt = np.array(Image.open(raw / "labelsTs" / f"{case}.png"))
        for t_name, (t_value, _) in STRUCTURES.items():
            for error in ERRORS:
                truth = {n: gt == v for n, (v, _) in STRUCTURES.items()}
                loc = None
                if error in ("dilated", "eroded"):
                    fn = ndimage.binary_erosion if error == "dilated" else ndimage.binary_dilation
                    truth[t_name] = fn(gt == t_value, structure=ndimage.generate_binary_structure(2, 1),
                                       iterations=2)
                    files = [str(img_path)]
                else:
                    if error == "missing part":
                        changed = fade_part_np(img, gt == t_value, rng)
                    else:
                        changed, loc = add_island(img, gt, t_value, rng)
                    path = tmp / f"{case}_{t_name}_{error.replace(' ', '_')}_0000.png"
                    Image.fromarray(changed).save(path)
                    files = [str(path)]
                action, text = COMMANDS[error]
                command = text.format(t=PROMPTS[t_name][0], loc=loc)
                for name, session in sessions.items():
                    session.load_case(files, case=case)
                    t1 = time.perf_counter()
                    base = session.predict()
                    t_full = session.timings["preprocess_seconds"] + time.perf_counter() - t1
                    bm = session.structure_masks(base)
                    d_base = dice(bm[t_name], truth[t_name])
                    shows = d_base < 0.97 if error in ("missing part", "spurious island") else True
                    for variant, (sname, keep, mirrored, replay) in variants.items():
                        if sname != name:
                            continue
                        session.keep_others, session.edit_mirroring, session.replay = keep, mirrored, replay
                        if use_parser:
                            edit = session.apply_command(command)
                        else:
                            edit = session.apply([{"action": action, "target": [t_name], "strength": "moderate",
                                                   "location": loc}], command=command)
                        am = session.structure_masks(session.segmentation())
                        d_edit = dice(am[t_name], truth[t_name])
                        others = [dice(bm[n], truth[n]) - dice(am[n], truth[n]) for n in STRUCTURES if n != t_name]
                        rows.append({"variant": variant, "case": case, "target": t_name, "error": error,
                                     "command": command, "actions": edit.actions, "dice_base": d_base,
                                     "dice_edit": d_edit, "shows": shows, "other_loss_points": 100 * max(others),
                                     "encoder_calls": edit.encoder_calls, "edit_seconds": edit.seconds,
                                     "full_seconds": t_full, "network_seconds": session.timings["predict_seconds"]})
                        session.undo()
    (work / "intervention_rows.json").write_text(json.dumps(rows, indent=1, default=str))

    for variant in variants:
        report(variant, [r for r in rows if r["variant"] == variant])
    print("targets: improved >= 80%, other structures lose <= 1 point, edit <= 0.25x a full prediction")
    return 0


if __name__ == "__main__":
    sys.exit(main())
