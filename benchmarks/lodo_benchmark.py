"""Leave-one-site-out robustness benchmark with a spurious cue, a shift no dictionary entry names, and a
causal audit of every model -- measured and printed side by side in one run (resumable).

Task ``endo`` (default): synthetic colonoscopy (``nnunet_causal synth endoscopy2d``). Sources siteA-C: specular
highlights only on polyps and redder polyps (the spurious cue). Held out: siteD (NBI-like colours,
highlights anywhere, polyps of the mucosa's hue: every shift of D is one a dictionary entry names) and siteU
(the cue broken the same way, plus lateral chromatic aberration and interlacing, which NO dictionary entry
simulates: the honest test of generalising beyond what was named). Task ``ct``: the CT phantoms of
``synth ct3d`` trained as 2D slices (a 2.5D CT-like held-out-scanner task; scannerC: non-contrast phase,
metal streaks, HU miscalibration held out).

Per seed: generate, plan and preprocess (stock command), write plans ``nnUNetPlans_CPU16`` (nnU-Net's own
2D plan with the widths halved to 16..256 so that a CPU run of 1000 steps fits the budget; everything else
is the planned U-Net), a split that trains on the source sites and validates on the first held-out site
(so nnU-Net's per-epoch pseudo Dice in the training log is a held-out learning curve), train the default rows
-- stock ``nnUNetTrainer``, ``nnUNetTrainerText``, ``nnUNetTrainerCausalText_GenericRecipe`` (the recipe the causal
trainer had before its dictionary carried one) and ``nnUNetTrainerCausalText`` (the dictionary's recipe) -- at one
schedule (``--schedule``, default ``CPU5000steps`` = 200 x 25 steps, where the recipe's held-out Dice is near its
plateau, see ``RESULTS_cpu.md``; ``CPU1250steps`` is nnU-Net's 5 epochs) with stock ``nnUNetv2_train``, predict the
held-out sites and the sources' test images with stock ``nnUNetv2_predict``, score Dice, and audit each model with
``nnunet_causal audit`` on the sources' test images (reference labels given). Finished steps are skipped,
so an interrupted run continues where it stopped; ``results.json`` / ``results.md`` are rewritten after
every model (partial results are usable). Measured on the 2-core CPU (``train_seconds`` in the results
files): a 5000-step model trains in 14-19 minutes alone, a 2000-step one in 7-10, plus about 3 for prediction
and audit each. ``--trainers`` runs any other list of full trainer names (e.g. the one-change ablations).

``--recipe KEY=VALUE ...`` trains the causal rows with those recipe keys over the family dictionary's header (keys
of :mod:`nnunet_causal.confounders.recipe`, written into the dataset.json as ``"counterfactual_recipe"``); a work
folder keeps the values it was prepared with (``recipe.json``) and refuses others.

Usage: python benchmarks/lodo_benchmark.py --work /tmp/lodo --seeds 0 1 2 [--task endo|ct] [--schedule CPU1250steps]
       [--trainers ...] [--recipe probability=0.5 ...]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STEPS = "CPU2000steps"   # the former default budget of the one-change rows (see RESULTS_cpu.md)
#: the issue's table: stock / text / the causal trainer before (the generic recipe) and after (the dictionary's
#: header) at one budget, ``--schedule`` (default: 5000 steps, where the recipe's held-out Dice is near its plateau)
DEFAULT_ROWS = ("nnUNetTrainer", "nnUNetTrainerText", "nnUNetTrainerCausalText_GenericRecipe", "nnUNetTrainerCausalText")
DEFAULT_SCHEDULE = "CPU5000steps"
TRAINERS = tuple(f"{t}_{DEFAULT_SCHEDULE}" for t in DEFAULT_ROWS)
_NAMES = {"nnUNetTrainer": "stock", "nnUNetTrainerGIN": "GIN", "nnUNetTrainerText": "text",
          "nnUNetTrainerCausalText_NoCounterfactual": "causal (no counterfactual)",
          "nnUNetTrainerCounterfactual": "counterfactual", "nnUNetTrainerCausalText": "causal + counterfactual (default)",
          "nnUNetTrainerCausalText_CueBreaking": "causal, cue-breaking views",
          "nnUNetTrainerCausalText_CueBreakingPaired": "causal, cue-breaking views paired with factual (consistency)",
          "nnUNetTrainerCausalText_CueBreakingNoGIN": "causal, cue-breaking views, no GIN/IPA",
          "nnUNetTrainerCausalText_CueBreakingFactual": "causal, cue-breaking views, 20 % factual",
          "nnUNetTrainerCausalText_CueBreakingFactual40": "causal, cue-breaking views, 40 % factual",
          "nnUNetTrainerCausalText_CueBreakingFactual50": "causal, cue-breaking views, 50 % factual",
          "nnUNetTrainerCausalText_GenericRecipe": "causal, generic recipe (the former default)"}
SHORT = {f"{t}_{s}": n + ("" if s == STEPS else f" ({s})") for t, n in _NAMES.items()
         for s in (STEPS, "CPULong", "CPU1250steps", "CPU4000steps", "CPU5000steps")}
SHORT["nnUNetTrainerCausalText_" + DEFAULT_SCHEDULE] = "causal, dictionary's recipe (default) (CPU5000steps)"
SHORT["nnUNetTrainerCausalText_CPU1250steps"] = "causal, dictionary's recipe (default) (CPU1250steps)"
STOCK = ("nnUNetTrainer_CPU5000steps", "nnUNetTrainer_CPU2000steps", "nnUNetTrainer_CPULong",
         "nnUNetTrainer_CPU1250steps", "nnUNetTrainer_CPU4000steps")
TASKS = {
    "endo": {"sources": ("siteA", "siteB", "siteC"), "heldout": ("siteD", "siteU"), "id": 970,
             "cue_entries": ("a frame where the lesion has the mucosa's colour and reflections fall anywhere",
                             "a frame with specular reflections and bright white highlights",
                             "a frame where the lesion's colour differs from the surrounding mucosa")},
    "ct": {"sources": ("scannerA", "scannerB", "scannerD"), "heldout": ("scannerC",), "id": 960,
           "cue_entries": ("a non-contrast CT scan", "a CT scan with metal streak artefacts")},
}
PLANS = "nnUNetPlans_CPU16"
NEW_FRAMES = "in-domain-new"     # more source-site frames than the test split (endo task)
NEW_FRAMES_PER_SITE = 60


def run(cmd, env, log):
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise RuntimeError(f"failed: {' '.join(cmd)} (see {log})")


def bin_(name):
    return str(Path(sys.executable).parent / name)


def parse_recipe(pairs) -> dict:
    """``["key=value", ...]`` -> checked recipe values (the errors of a dataset.json override)."""
    from nnunet_causal.confounders.recipe import parse_value
    from nnunet_causal.errors import DatasetError

    out = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"--recipe {pair!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = parse_value(key.strip(), value, f"--recipe {pair}")
        except DatasetError as e:
            raise SystemExit(str(e)) from None
    return out


def keep_recipe(work: Path, recipe: dict) -> None:
    """Record the ``--recipe`` values of a work folder; refuse other values on a folder prepared with some."""
    record = work / "recipe.json"
    if record.exists():
        kept = json.loads(record.read_text())
        if kept != recipe:
            raise SystemExit(f"{record}: this work folder was prepared with --recipe {kept or 'none'}; asked for "
                             f"{recipe or 'none'}: use another --work")
    elif any(work.glob("seed*/results")):
        if recipe:
            raise SystemExit(f"{work}: models were trained here without --recipe: use another --work")
    record.write_text(json.dumps(recipe, indent=1))


def write_recipe(folders, recipe: dict) -> None:
    """The dataset's ``"counterfactual_recipe"`` (raw and preprocessed dataset.json): ``recipe``, or none."""
    for folder in folders:
        dj = json.loads((folder / "dataset.json").read_text())
        if recipe:
            dj["counterfactual_recipe"] = dict(recipe)
        else:
            dj.pop("counterfactual_recipe", None)
        (folder / "dataset.json").write_text(json.dumps(dj, indent=1))


def write_cpu16_plans(pre: Path) -> None:
    """``nnUNetPlans_CPU16.json`` beside nnU-Net's own 2D plans: the same U-Net with every width halved (>= 8)."""
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["plans_name"] = PLANS
    arch = plans["configurations"]["2d"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [max(8, f // 2) for f in arch["features_per_stage"]]
    (pre / f"{PLANS}.json").write_text(json.dumps(plans, indent=1))


def prepare(root: Path, task: str, seed: int, env: dict, log: Path, recipe: dict = None):
    """Dataset, preprocessing, CPU16 plans, split and the image/label folders of each evaluation set."""
    t = TASKS[task]
    did = t["id"] + seed
    name = f"Dataset{did}_Robust{task.upper()}Seed{seed}"
    raw = root / "raw" / name
    pre = root / "pre" / name
    if not (pre / "splits_final.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        sites = [*t["sources"], *t["heldout"]]
        if task == "endo":
            run([sys.executable, "-m", "nnunet_causal.cli", "synth", "endoscopy2d", "-d", str(did), "-o", str(raw),
                 "-n", "30", "--test-fraction", "0.2", "--domains", *sites, "--heldout", *t["heldout"],
                 "--spurious-cue", "specular", "--size", "64", "64", "--seed", str(seed)], env, log)
        else:
            run([sys.executable, "-m", "nnunet_causal.cli", "synth", "ct3d", "-d", str(did), "-o", str(raw),
                 "-n", "8", "--test-fraction", "0.25", "--domains", *sites, "--size", "24", "48", "48",
                 "--seed", str(seed)], env, log)
        run([bin_("nnUNetv2_plan_and_preprocess"), "-d", str(did), "-c", "2d", "-np", "2", "-npfp", "2"], env, log)
        write_cpu16_plans(pre)
        dj = json.loads((raw / "dataset.json").read_text())
        train = sorted(c for c, r in dj["domains"].items() if r["split"] == "train" and r["domain"] in t["sources"])
        val = sorted(c for c, r in dj["domains"].items() if r["split"] == "train" and r["domain"] == t["heldout"][0])
        (pre / "splits_final.json").write_text(json.dumps([{"train": train, "val": val}], indent=1))
    write_recipe((raw, pre), recipe or {})
    dj = json.loads((raw / "dataset.json").read_text())
    ending = dj["file_ending"]
    sets = {}
    for set_name, domains, splits in [("in-domain", t["sources"], ("test",))] + \
            [(d, (d,), ("train", "test")) for d in t["heldout"]]:
        folder = root / "eval" / set_name.replace(" ", "_")
        if not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "images").mkdir(parents=True)
            (folder / "labels").mkdir()
            for case, r in dj["domains"].items():
                if r["domain"] in domains and r["split"] in splits:
                    src = "Tr" if r["split"] == "train" else "Ts"
                    for img in (raw / f"images{src}").glob(f"{case}_????{ending}"):
                        shutil.copy(img, folder / "images" / img.name)
                    shutil.copy(raw / f"labels{src}" / f"{case}{ending}", folder / "labels" / f"{case}{ending}")
            (folder / "done").write_text("")
        sets[set_name] = folder
    if task == "endo":
        sets[NEW_FRAMES] = write_new_source_frames(root / "eval" / NEW_FRAMES, dj, t["sources"], seed)
    return did, name, raw, sets


def write_new_source_frames(folder: Path, dj: dict, sources, seed: int, n: int = NEW_FRAMES_PER_SITE) -> Path:
    """An in-domain set larger than the dataset's test split: ``n`` more frames per source site, drawn by the
    generator exactly as the dataset's frames (same site styles and cue, ``default_rng([seed, site, i])``)
    with case numbers ``i`` after the dataset's (never trained on). The 18-frame test split makes one false
    positive on an empty frame worth 5.6 points of mean Dice; this set measures in-domain Dice to about a
    point."""
    if (folder / "done").exists():
        return folder
    from nnunet_causal.synthetic.endoscopy2d import EndoscopyStyle, _save_png, domain_seed, render_frame

    syn = dj["synthetic"]
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    first = 1 + max(int(c.rsplit("_", 1)[1]) for c in dj["domains"])
    for site in sources:
        style = EndoscopyStyle(**syn["styles"][site])
        for i in range(first, first + n):
            frame = render_frame(np.random.default_rng([seed, domain_seed(site), i]), tuple(syn["image_size"]),
                                 style, syn["spurious_cue"], False)
            _save_png(frame.image, folder / "images" / f"{site}_{i:04d}_0000.png")
            _save_png(frame.label, folder / "labels" / f"{site}_{i:04d}.png")
    (folder / "done").write_text("")
    return folder


def learning_curve(model_fold: Path):
    """nnU-Net's per-epoch pseudo Dice on the validation (held-out) cases, from its training logs."""
    vals = []
    for log in sorted(model_fold.glob("training_log_*.txt")):
        vals += [float(v) for v in re.findall(r"Pseudo dice \[(?:np\.float32\()?([\d.]+)", log.read_text())]
    return vals


def score_sets(root, did, raw, sets, tr, env, log) -> dict:
    """Mean foreground Dice of the model on each evaluation set (predictions kept under ``pred/``)."""
    from nnunet_causal.evaluation.evaluate_folder import evaluate_folders

    out = {}
    for set_name, folder in sets.items():
        pred = root / "pred" / tr / set_name.replace(" ", "_")
        if not (pred / "evaluation.json").exists():
            run([bin_("nnUNetv2_predict"), "-i", str(folder / "images"), "-o", str(pred), "-d", str(did), "-c", "2d",
                 "-p", PLANS, "-f", "0", "-tr", tr, "-device", "cpu", "-npp", "1", "-nps", "1",
                 "--disable_progress_bar"], env, log)
            evaluate_folders(folder / "labels", pred, raw / "dataset.json", num_processes=1)
        out[set_name] = json.loads((pred / "evaluation.json").read_text())["summary"]["mean"]["dice"]
    return out


def one_model(root, did, name, raw, sets, tr, env, log, cue_entries):
    model = root / "results" / name / f"{tr}__{PLANS}__2d"
    out_file = model / "benchmark.json"
    if out_file.exists():
        res = json.loads(out_file.read_text())
        missing = {k: v for k, v in sets.items() if k not in res}
        if not missing or not (model / "fold_0" / "checkpoint_final.pth").exists():
            return res
        res.update(score_sets(root, did, raw, missing, tr, env, log))  # a set added after the model finished
        out_file.write_text(json.dumps(res, indent=1))
        return res
    t0 = time.time()
    if not (model / "fold_0" / "checkpoint_final.pth").exists():
        cont = ["--c"] if (model / "fold_0").exists() else []
        run([bin_("nnUNetv2_train"), str(did), "2d", "0", "-tr", tr, "-p", PLANS, "-device", "cpu", *cont],
            dict(env, nnUNet_n_proc_DA="2"), log)
    train_s = time.time() - t0
    res = {"train_seconds": train_s, "curve": learning_curve(model / "fold_0")}
    res.update(score_sets(root, did, raw, sets, tr, env, log))
    audit = root / "audit" / tr
    if not (audit / "audit.json").exists():
        run([sys.executable, "-m", "nnunet_causal.cli", "audit", "-m", str(model), "-i", str(sets["in-domain"] / "images"),
             "-r", str(sets["in-domain"] / "labels"), "-o", str(audit), "-f", "0", "--strengths", "1.0"], env, log)
    summary = json.loads((audit / "audit.json").read_text())["summary"][model.name]
    top = [r for r in summary if r["strength"] == max(x["strength"] for x in summary)]
    res["audit"] = {r["entry"]: {"sensitivity": r["sensitivity"], "rank": r["rank"]} for r in top}
    res["cue"] = {e: res["audit"].get(e) for e in cue_entries}
    out_file.write_text(json.dumps(res, indent=1))
    return res


def mean_std(vals):
    a = np.asarray([v for v in vals if v is not None], float)
    return "n/a" if a.size == 0 else f"{a.mean():.3f} ± {a.std():.3f}" + (f" (n={a.size})" if a.size < 3 else "")


def report(results: dict, trainers, task: str) -> str:
    t = TASKS[task]
    seeds = sorted(results)
    sets = ["in-domain", *t["heldout"]]
    if any(NEW_FRAMES in r for v in results.values() for r in v.values()):
        sets.insert(1, NEW_FRAMES)
    paired_sets = [k for k in ("in-domain", NEW_FRAMES) if k in sets]
    lines = [f"Task {task}, seeds {seeds}; mean ± std over seeds (n = seeds when < 3). Dice (foreground mean).", "",
             "| trainer | " + " | ".join(f"{s} Dice" for s in sets) + " | "
             + " | ".join(f"{k} vs stock (paired, points; stock at the same schedule where run)" for k in paired_sets)
             + " |",
             "|---|" + "---|" * (len(sets) + len(paired_sets))]
    default_stock = next((x for x in STOCK if x in trainers), STOCK[0])
    for tr in trainers:
        have = [s for s in seeds if tr in results[s]]
        cells = [mean_std(results[s][tr].get(k) for s in have) for k in sets]
        same_budget = f"nnUNetTrainer_{tr.rsplit('_', 1)[-1]}"   # stock at this trainer's schedule, if run
        stock = same_budget if same_budget in trainers else default_stock
        for k in paired_sets:
            paired = [100 * (results[s][tr][k] - results[s][stock][k]) for s in have
                      if stock in results[s] and k in results[s][tr] and k in results[s][stock]]
            cells.append(f"{np.mean(paired):+.1f} (n={len(paired)})" if paired else "")
        lines.append(f"| {SHORT.get(tr, tr)} | " + " | ".join(cells) + " |")
    cues = t["cue_entries"]
    lines += ["", "Causal audit on the sources' test images (sensitivity = 1 - Dice between the predictions of an "
              "image and of its do(z), strength 1; rank among all dictionary entries):", "",
              "| trainer | " + " | ".join(f"'{c}'" for c in cues) + " | top-3 sensitivities |",
              "|---|" + "---|" * (len(cues) + 1)]
    for tr in trainers:
        have = [s for s in seeds if tr in results[s]]
        if not have:
            continue
        cells = []
        for c in cues:
            sens = [results[s][tr]["cue"][c]["sensitivity"] for s in have if results[s][tr]["cue"].get(c)]
            ranks = [results[s][tr]["cue"][c]["rank"] for s in have if results[s][tr]["cue"].get(c)]
            cells.append(f"{mean_std(sens)}, rank {'/'.join(map(str, ranks))}")
        agg = {}
        for s in have:
            for e, v in results[s][tr]["audit"].items():
                agg.setdefault(e, []).append(v["sensitivity"])
        top3 = sorted(agg.items(), key=lambda kv: -np.mean(kv[1]))[:3]
        lines.append(f"| {SHORT.get(tr, tr)} | " + " | ".join(cells) + " | "
                     + "; ".join(f"{e[:40]} {np.mean(v):.2f}" for e, v in top3) + " |")
    lines += ["", "Held-out learning curve (nnU-Net's pseudo Dice on the first held-out site, every 5th epoch, "
              "first seed):", ""]
    for tr in trainers:
        if tr in results[seeds[0]]:
            c = results[seeds[0]][tr]["curve"]
            lines.append(f"- {SHORT.get(tr, tr)}: " + " ".join(f"{v:.2f}" for v in c[4::5]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/nnunet_causal_lodo")
    p.add_argument("--task", choices=sorted(TASKS), default="endo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trainers", nargs="+", default=None,
                   help="full trainer names (default: stock, text, the generic recipe and the default causal trainer "
                        "at --schedule)")
    p.add_argument("--schedule", default=DEFAULT_SCHEDULE,
                   help="schedule suffix of the default rows (e.g. CPU1250steps: nnU-Net's 5 epochs)")
    p.add_argument("--recipe", nargs="+", metavar="KEY=VALUE",
                   help="recipe keys over the dictionary's header for the causal rows (e.g. probability=0.5)")
    a = p.parse_args(argv)
    recipe = parse_recipe(a.recipe)
    if a.trainers is None:
        a.trainers = [f"{t}_{a.schedule}" for t in DEFAULT_ROWS]
    from nnunet_causal.env_cli import ext_trainer_folder

    work = Path(a.work) / a.task
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    keep_recipe(work, recipe)
    results_file = work / "results.json"
    results = {int(k): v for k, v in json.loads(results_file.read_text()).items()} if results_file.exists() else {}
    for seed in a.seeds:
        root = work / f"seed{seed}"
        env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
                   nnUNet_results=str(root / "results"), nnUNet_extTrainer=str(ext_trainer_folder()),
                   nnUNet_compile="false", nnUNet_def_n_proc="2", HF_HUB_OFFLINE="1")
        did, name, raw, sets = prepare(root, a.task, seed, env, log, recipe)
        for tr in a.trainers:
            res = one_model(root, did, name, raw, sets, tr, env, log, TASKS[a.task]["cue_entries"])
            results.setdefault(seed, {})[tr] = res
            print(f"seed {seed} {SHORT.get(tr, tr):36s} " + "  ".join(
                f"{k} {res[k]:.3f}" for k in ["in-domain", *TASKS[a.task]["heldout"]])
                + f"  ({res['train_seconds']:.0f} s training)", flush=True)
            results_file.write_text(json.dumps(results, indent=1))
            (work / "results.md").write_text(report(results, a.trainers, a.task) + "\n")
    table = report(results, a.trainers, a.task)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
