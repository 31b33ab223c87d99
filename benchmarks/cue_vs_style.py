"""Why held-out Dice fails: the spurious cue or the site style? One factor at a time, on trained models.

For the models of a ``lodo_benchmark.py`` work folder (task ``endo``), renders test sets that change one
factor of the held-out site at a time (same generator, new random frames) and scores every model on each:

* ``A, cue broken``     -- source site A's style; highlights anywhere, polyps of the mucosa's hue;
* ``D, cue intact``     -- held-out site D's style (NBI, cast, blur, noise, JPEG) with the source cue;
* ``A + D's NBI``       -- cue broken, A's sensor, D's NBI mapping and colour cast;
* ``A + D's sensor``    -- cue broken, A's colours, D's blur, noise and JPEG.

Prints a table (mean ± std over the seeds found) and writes ``cue_vs_style.md`` in the work folder.
Usage: python benchmarks/cue_vs_style.py --work /tmp/lodo
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lodo_benchmark import PLANS, SHORT, TRAINERS, bin_  # noqa: E402


def variants():
    from nnunet_causal.synthetic.endoscopy2d import DEFAULT_SITE_STYLES

    a, d = DEFAULT_SITE_STYLES["siteA"], DEFAULT_SITE_STYLES["siteD"]
    return {
        "A, cue broken": (a, True),
        "D, cue intact": (d, False),
        "A + D's NBI": (dataclasses.replace(a, nbi=True, colour_gain=d.colour_gain), True),
        "A + D's sensor": (dataclasses.replace(a, blur_sigma=d.blur_sigma, noise_sigma=d.noise_sigma,
                                               jpeg_quality=d.jpeg_quality), True),
    }


def render(folder: Path, style, broken: bool, seed: int, n: int = 30) -> None:
    from PIL import Image

    from nnunet_causal.synthetic.endoscopy2d import domain_seed, render_frame

    if (folder / "done").exists():
        return
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    for i in range(n):
        f = render_frame(np.random.default_rng([seed, 99, domain_seed(folder.name), i]), (64, 64), style,
                         "specular", heldout=broken)
        Image.fromarray(f.image).save(folder / "images" / f"v_{i:04d}_0000.png")
        Image.fromarray(f.label).save(folder / "labels" / f"v_{i:04d}.png")
    (folder / "done").write_text("")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/nnunet_causal_lodo")
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to use (default: every seed folder)")
    a = p.parse_args(argv)
    from nnunet_causal.env_cli import ext_trainer_folder
    from nnunet_causal.evaluation.evaluate_folder import evaluate_folders

    work = Path(a.work) / "endo"
    scores = {}
    for root in sorted(work.glob("seed*")):
        seed = int(root.name[4:])
        if a.seeds is not None and seed not in a.seeds:
            continue
        name = next(p.name for p in (root / "raw").iterdir() if p.name.startswith("Dataset"))
        did = name[len("Dataset"):len("Dataset") + 3]
        env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
                   nnUNet_results=str(root / "results"), nnUNet_extTrainer=str(ext_trainer_folder()),
                   nnUNet_compile="false", HF_HUB_OFFLINE="1")
        for label, (style, broken) in variants().items():
            folder = root / "factors" / label.replace(" ", "_").replace(",", "").replace("'", "")
            render(folder, style, broken, seed)
            for tr in a.trainers:
                if not (root / "results" / name / f"{tr}__{PLANS}__2d" / "fold_0" / "checkpoint_final.pth").exists():
                    continue
                pred = root / "factors_pred" / tr / folder.name
                if not (pred / "evaluation.json").exists():
                    subprocess.run([bin_("nnUNetv2_predict"), "-i", str(folder / "images"), "-o", str(pred), "-d", did,
                                    "-c", "2d", "-p", PLANS, "-f", "0", "-tr", tr, "-device", "cpu", "-npp", "1",
                                    "-nps", "1", "--disable_progress_bar"], env=env, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    evaluate_folders(folder / "labels", pred, root / "raw" / name / "dataset.json", num_processes=1)
                dice = json.loads((pred / "evaluation.json").read_text())["summary"]["mean"]["dice"]
                scores.setdefault(tr, {}).setdefault(label, []).append(dice)
    labels = list(variants())
    lines = ["| trainer | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for tr in a.trainers:
        if tr in scores:
            cells = [f"{np.mean(scores[tr][v]):.3f} ± {np.std(scores[tr][v]):.3f} (n={len(scores[tr][v])})"
                     if v in scores[tr] else "" for v in labels]
            lines.append(f"| {SHORT.get(tr, tr)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    (work / "cue_vs_style.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
