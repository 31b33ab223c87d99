"""Train on one modality, segment the other: CT -> MR and MR -> CT on the same synthetic phantoms, measured
and printed side by side in one run (resumable).

Data (``nnunet_causal.synthetic.ct_mr_pairs``): ``--phantoms`` abdominal phantoms (8 organs, TotalSegmentator
names), each rendered as CT (HU) and as T1-weighted-like MR (per-organ MR signal: aorta a flow void, fat
bright; coil bias field; Rician noise). Half of the phantoms train (only their source-modality rendering is
in the split), the other half are the test set in both modalities -- no test phantom's anatomy was seen in
training in either modality. The dataset is declared for cross-modality training
(:mod:`nnunet_causal.data.cross_modality`): the CT channel is z-scored per image (no HU window that would clip
MR), the text-prompted networks rank-normalise their input, and dataset.json carries the cross-modality
counterfactual recipe.

Rows, all at the same budget (``--schedule``, default ``CPU2000steps`` = 2000 steps of 2D slices through
nnU-Net's own 2D plan with the widths halved, as in ``lodo_benchmark.py``), trained with stock
``nnUNetv2_train`` and predicted with stock ``nnUNetv2_predict``:

* ``stock``: ``nnUNetTrainer``;  ``text``: ``nnUNetTrainerText``;
* ``causal (default recipe)``: ``nnUNetTrainerCausalText`` on a copy of the dataset without the
  ``"counterfactual_recipe"`` entry (its family dictionary's own recipe; the ``[modality]`` group is one kind
  among the others);
* ``causal (cross-modality recipe)``: the same trainer on the declared dataset: the default for a dataset
  declared cross-modality (35 % of the samples a view of the dictionary's ``[modality]`` kind alone, one kind
  per view, and 25 % a GIN/IPA view; :data:`nnunet_causal.data.cross_modality.CROSS_MODALITY_RECIPE`).

Per direction the split trains on the source modality's training phantoms and validates on the target
modality's (so nnU-Net's pseudo Dice in the training log is a held-out-modality learning curve). Reported per
row: mean foreground Dice on the source and the target modality's test phantoms (mean ± std over seeds), the
target's gain over ``text`` and the source's difference to ``stock`` in points (paired by seed), and the
per-structure target Dice. Finished steps are skipped; ``results.json`` / ``results.md`` are rewritten after
every model.

``--recipe KEY=VALUE ...`` trains the ``recipe`` row with those recipe keys over the cross-modality recipe (e.g.
``--recipe probability=0.5 image_intervention=none``; keys of :mod:`nnunet_causal.confounders.recipe`), written
into the declared dataset.json; a model already trained in ``--work`` with other values is an error (use another
``--work``).

Usage: python benchmarks/cross_modality_benchmark.py --work /tmp/xmod --seeds 0 1 2
       (smoke run: --seeds 0 --schedule CPUDemo --phantoms 4 --size 16 32 32)
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lodo_benchmark import PLANS, bin_, learning_curve, parse_recipe, run, write_cpu16_plans  # noqa: E402

DIRECTIONS = {"ct2mr": ("CT", "MR"), "mr2ct": ("MR", "CT")}
ROWS = ("stock", "text", "causal", "recipe")
NAMES = {"stock": "stock", "text": "text", "causal": "causal (default recipe)",
         "recipe": "causal (cross-modality recipe)"}
TRAINER = {"stock": "nnUNetTrainer", "text": "nnUNetTrainerText", "causal": "nnUNetTrainerCausalText",
           "recipe": "nnUNetTrainerCausalText"}


def dataset_id(seed: int, direction: str, recipe: bool) -> int:
    return 800 + 10 * seed + (0 if direction == "ct2mr" else 4) + (0 if recipe else 1)


def copy_without_recipe(raw: Path, pre: Path, did: int, name: str, src_raw: Path, src_pre: Path) -> None:
    """A copy of the declared dataset without its counterfactual recipe (raw and preprocessed, same plans)."""
    for src, dst in ((src_raw, raw), (src_pre, pre)):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        dj = json.loads((tmp / "dataset.json").read_text())
        dj.pop("counterfactual_recipe", None)
        dj["name"] = name
        (tmp / "dataset.json").write_text(json.dumps(dj, indent=1))
        for plans in tmp.glob("nnUNetPlans*.json"):
            p = json.loads(plans.read_text())
            p["dataset_name"] = name
            plans.write_text(json.dumps(p, indent=1))
        tmp.rename(dst)


def write_recipe(folders, recipe: dict) -> None:
    """The declared datasets' ``"counterfactual_recipe"``: the cross-modality recipe with ``recipe`` over it."""
    from nnunet_causal.data.cross_modality import CROSS_MODALITY_RECIPE

    for folder in folders:
        dj = json.loads((folder / "dataset.json").read_text())
        dj["counterfactual_recipe"] = {**CROSS_MODALITY_RECIPE, **recipe}
        (folder / "dataset.json").write_text(json.dumps(dj, indent=1))


def check_trained_recipe(fold: Path, recipe: dict) -> None:
    """Refuse to reuse a model of this work folder that trained with other recipe values than asked for."""
    from nnunet_causal.data.cross_modality import CROSS_MODALITY_RECIPE

    recipe = {**CROSS_MODALITY_RECIPE, **recipe}
    record = fold / "counterfactual_recipe.json"
    knobs = json.loads(record.read_text())["knobs"] if record.exists() else {}
    other = {k: (knobs[k], v) for k, v in recipe.items() if k in knobs and knobs[k] != v}
    if other:
        raise SystemExit(f"{record}: this model trained with " + ", ".join(f"{k}={a}" for k, (a, _) in other.items())
                         + "; --recipe asks for " + ", ".join(f"{k}={b}" for k, (_, b) in other.items())
                         + ": use another --work")


def prepare(root: Path, direction: str, seed: int, phantoms: int, size, env: dict, log: Path,
            overrides: dict = None) -> dict:
    """Both datasets (declared with the recipe / without it), plans, split and the two test sets."""
    from nnunet_causal.data.cross_modality import check_cross_modality_plans
    from nnunet_causal.synthetic.ct_mr_pairs import make_ct_mr_dataset

    source, target = DIRECTIONS[direction]
    out = {}
    for recipe in (True, False):
        did = dataset_id(seed, direction, recipe)
        name = f"Dataset{did}_XMod{direction.upper()}Seed{seed}{'' if recipe else 'Default'}"
        out[recipe] = (did, name, root / "raw" / name, root / "pre" / name)
    did, name, raw, pre = out[True]
    if not (pre / "splits_final.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        make_ct_mr_dataset(raw, n_cases=phantoms, shape=tuple(size), seed=seed, test_fraction=0.5, source=source,
                           dataset_name=name)
        run([bin_("nnUNetv2_plan_and_preprocess"), "-d", str(did), "-c", "2d", "-np", "2", "-npfp", "2"], env, log)
        write_cpu16_plans(pre)
        plans = json.loads((pre / f"{PLANS}.json").read_text())
        check_cross_modality_plans(plans["configurations"]["2d"]["normalization_schemes"],
                                   json.loads((raw / "dataset.json").read_text()), str(pre / f"{PLANS}.json"))
        dj = json.loads((raw / "dataset.json").read_text())
        train = sorted(c for c, r in dj["domains"].items() if r["split"] == "train" and r["modality"] == source)
        val = sorted(c for c, r in dj["domains"].items() if r["split"] == "train" and r["modality"] == target)
        (pre / "splits_final.json").write_text(json.dumps([{"train": train, "val": val}], indent=1))
    d_did, d_name, d_raw, d_pre = out[False]
    if not (d_pre / "splits_final.json").exists():
        copy_without_recipe(d_raw, d_pre, d_did, d_name, raw, pre)
    write_recipe((raw, pre), overrides or {})
    dj = json.loads((raw / "dataset.json").read_text())
    sets = {}
    for modality in (source, target):
        folder = root / "eval" / modality
        if not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "images").mkdir(parents=True)
            (folder / "labels").mkdir()
            for case, r in dj["domains"].items():
                if r["split"] == "test" and r["modality"] == modality:
                    shutil.copy(raw / "imagesTs" / f"{case}_0000.nii.gz", folder / "images")
                    shutil.copy(raw / "labelsTs" / f"{case}.nii.gz", folder / "labels")
            (folder / "done").write_text("")
        sets[modality] = folder
    return {"datasets": out, "sets": sets, "source": source, "target": target, "recipe": overrides or {}}


def one_model(root: Path, prep: dict, row: str, schedule: str, env: dict, log: Path) -> dict:
    did, name, raw, _ = prep["datasets"][row == "recipe"]
    tr = f"{TRAINER[row]}_{schedule}"
    model = root / "results" / name / f"{tr}__{PLANS}__2d"
    out_file = model / "benchmark.json"
    if row == "recipe":
        check_trained_recipe(model / "fold_0", prep["recipe"])
    if out_file.exists():
        return json.loads(out_file.read_text())
    t0 = time.time()
    if not (model / "fold_0" / "checkpoint_final.pth").exists():
        cont = ["--c"] if (model / "fold_0").exists() else []
        run([bin_("nnUNetv2_train"), str(did), "2d", "0", "-tr", tr, "-p", PLANS, "-device", "cpu", *cont],
            dict(env, nnUNet_n_proc_DA="2"), log)
    res = {"trainer": tr, "dataset": name, "train_seconds": time.time() - t0,
           **({"recipe": prep["recipe"]} if row == "recipe" and prep["recipe"] else {}),
           "curve": learning_curve(model / "fold_0")}
    from nnunet_causal.evaluation.evaluate_folder import evaluate_folders

    for modality, folder in prep["sets"].items():
        pred = root / "pred" / schedule / row / modality
        if not (pred / "evaluation.json").exists():
            run([bin_("nnUNetv2_predict"), "-i", str(folder / "images"), "-o", str(pred), "-d", str(did), "-c",
                 "2d", "-p", PLANS, "-f", "0", "-tr", tr, "-device", "cpu", "-npp", "1", "-nps", "1",
                 "--disable_progress_bar"], env, log)
            evaluate_folders(folder / "labels", pred, raw / "dataset.json", num_processes=1)
        summary = json.loads((pred / "evaluation.json").read_text())["summary"]
        res[modality] = summary["mean"]["dice"]
        res[f"{modality} per structure"] = {k: v["dice"] if isinstance(v, dict) else v
                                            for k, v in summary["per_structure"].items()}
    out_file.write_text(json.dumps(res, indent=1))
    return res


def mean_std(vals) -> str:
    a = np.asarray([v for v in vals if v is not None], float)
    return "n/a" if a.size == 0 else f"{a.mean():.3f} ± {a.std():.3f}" + (f" (n={a.size})" if a.size < 3 else "")


def paired(results: dict, row: str, ref: str, key: str) -> str:
    d = [100 * (r[row][key] - r[ref][key]) for r in results.values() if row in r and ref in r]
    return f"{np.mean(d):+.1f} (n={len(d)})" if d else ""


def report(results: dict, direction: str, rows, schedule: str) -> str:
    source, target = DIRECTIONS[direction]
    seeds = sorted(results)
    lines = [f"{source} -> {target}, seeds {seeds}, schedule {schedule} (2D slices, {PLANS}); mean foreground Dice "
             f"on the test phantoms, mean ± std over seeds; paired differences in points.", "",
             f"| trainer | {target} Dice (held-out modality) | {source} Dice | {target} vs text | {source} vs stock |",
             "|---|---|---|---|---|"]
    for row in rows:
        have = [results[s][row] for s in seeds if row in results[s]]
        lines.append(f"| {NAMES[row]} | {mean_std(r[target] for r in have)} | {mean_std(r[source] for r in have)} | "
                     f"{paired({s: results[s] for s in seeds}, row, 'text', target)} | "
                     f"{paired({s: results[s] for s in seeds}, row, 'stock', source)} |")
    structures = sorted({k for s in seeds for r in results[s].values() for k in r.get(f"{target} per structure", {})})
    if structures:
        lines += ["", f"Per structure, {target} (held-out modality) Dice, mean over seeds:", "",
                  "| trainer | " + " | ".join(structures) + " |", "|---|" + "---|" * len(structures)]
        for row in rows:
            have = [results[s][row][f"{target} per structure"] for s in seeds if row in results[s]]
            if have:
                lines.append(f"| {NAMES[row]} | " + " | ".join(
                    f"{np.nanmean([h.get(k, np.nan) for h in have]):.2f}" for k in structures) + " |")
    lines += ["", f"Held-out-modality learning curve (nnU-Net pseudo Dice on {target}, every 5th epoch, first seed):",
              ""]
    for row in rows:
        if row in results[seeds[0]]:
            c = results[seeds[0]][row]["curve"]
            lines.append(f"- {NAMES[row]}: " + " ".join(f"{v:.2f}" for v in c[4::5]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/nnunet_causal_cross_modality")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--directions", nargs="+", choices=sorted(DIRECTIONS), default=["ct2mr", "mr2ct"])
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--schedule", default="CPU2000steps", help="trainer suffix: the same budget for every row")
    p.add_argument("--phantoms", type=int, default=12, help="phantoms per seed (half train, half test)")
    p.add_argument("--size", type=int, nargs=3, default=[24, 48, 48], metavar=("Z", "Y", "X"))
    p.add_argument("--recipe", nargs="+", metavar="KEY=VALUE", help="recipe keys over the cross-modality recipe "
                   "for the 'recipe' row (e.g. probability=0.5 consistency_weight=1)")
    a = p.parse_args(argv)
    recipe = parse_recipe(a.recipe)
    from nnunet_causal.env_cli import ext_trainer_folder

    tables = []
    for direction in a.directions:
        work = Path(a.work) / a.schedule / direction
        work.mkdir(parents=True, exist_ok=True)
        log = work / "commands.log"
        results_file = work / "results.json"
        results = {int(k): v for k, v in json.loads(results_file.read_text()).items()} if results_file.exists() else {}
        for seed in a.seeds:
            root = work / f"seed{seed}"
            env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
                       nnUNet_results=str(root / "results"), nnUNet_extTrainer=str(ext_trainer_folder()),
                       nnUNet_compile="false", nnUNet_def_n_proc="2", HF_HUB_OFFLINE="1")
            prep = prepare(root, direction, seed, a.phantoms, a.size, env, log, recipe)
            for row in a.rows:
                res = one_model(root, prep, row, a.schedule, env, log)
                results.setdefault(seed, {})[row] = res
                print(f"{direction} seed {seed} {NAMES[row]:32s} {prep['target']} {res[prep['target']]:.3f}  "
                      f"{prep['source']} {res[prep['source']]:.3f}  ({res['train_seconds']:.0f} s training)",
                      flush=True)
                results_file.write_text(json.dumps(results, indent=1))
                (work / "results.md").write_text(report(results, direction, a.rows, a.schedule) + "\n")
        tables.append(report(results, direction, a.rows, a.schedule))
    print("\n\n".join([""] + tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
