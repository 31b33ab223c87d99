"""A modality change on real anatomy: the real Colin27 T1 MRI and a CT rendering of the same head, lobes from
the AAL atlas; train on one, segment the other (both directions), stock / text / causal side by side in one run.

Real images from the registries (no CT and MR of one patient's abdomen are there; Debian ``mricron-data`` is):

* **MR**: Colin27's T1 (``/usr/share/mricron/templates/ch2.nii.gz``), as acquired (real coil bias, noise,
  partial volume), resampled to 2 mm.
* **CT**: the same head rendered as CT, tissue by tissue, from that T1: inside the brain mask shipped with it
  (``ch2bet.nii.gz``) a three-class 1D k-means of the T1 gives CSF / grey / white matter, set to 8 / 38 / 27 HU
  (grey brighter than white on CT, the reverse of T1); outside it, within the head, dark T1 (skull) becomes
  bone at 900 HU, bright T1 (scalp fat) -90 HU, the rest soft tissue at 40 HU; air -1000 HU; then partial
  volume (Gaussian blur, 0.7 mm) and quantum noise (6 HU). The orders of tissue intensities differ between
  the two images (white/grey matter swap, bone and fat swap ends), the anatomy is identical.
* **labels**: AAL regions merged into five lobes by their code's thousands digit (frontal 2, occipital 5,
  parietal 6, temporal 8, cerebellum 9), named with the knowledge base's terms.

One volume per modality: training sees the source modality's slices only (2D, ``nnUNetPlans_CPU16``), validation
(nnU-Net's pseudo Dice, the held-out-modality curve) and test are the other modality's volume. The anatomy is
the one trained on, so the held-out Dice measures the change of appearance alone, and the source-modality Dice
is training Dice. The dataset is declared cross-modality (:mod:`nnunet_causal.data.cross_modality`); rows as in
``cross_modality_benchmark.py`` (stock ``nnUNetTrainer``, ``nnUNetTrainerText``, ``nnUNetTrainerCausalText`` on
the declared dataset), trained with stock ``nnUNetv2_train`` and predicted with stock ``nnUNetv2_predict``.

Usage: python benchmarks/real_cross_modality_check.py --work /tmp/xmod_real [--schedule CPU1250steps]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cross_modality_benchmark import NAMES, copy_without_recipe, one_model  # noqa: E402
from lodo_benchmark import PLANS, bin_, run, write_cpu16_plans  # noqa: E402

TEMPLATES = Path("/usr/share/mricron/templates")
COLIN27, BRAIN_MASK, AAL, AAL_NAMES = (TEMPLATES / n for n in ("ch2.nii.gz", "ch2bet.nii.gz", "aal.nii.gz",
                                                              "aal.nii.txt"))
LOBES = (("frontal_lobe", "frontal lobe", 2), ("occipital_lobe", "occipital lobe", 5),
         ("parietal_lobe", "parietal lobe", 6), ("temporal_lobe", "temporal lobe", 8),
         ("cerebellum", "cerebellum", 9))
HU = {"air": -1000.0, "csf": 8.0, "grey": 38.0, "white": 27.0, "bone": 900.0, "fat": -90.0, "soft": 40.0}
DIRECTIONS = {"ct2mr": ("CT", "MR"), "mr2ct": ("MR", "CT")}
ROWS = ("stock", "text", "recipe")


def kmeans_1d(values: np.ndarray, k: int = 3, iterations: int = 30) -> np.ndarray:
    """Class index (0 = darkest) of each value by 1D k-means (scipy's ``kmeans2``) started at the quantiles."""
    from scipy.cluster.vq import kmeans2

    start = np.quantile(values, (np.arange(k) + 0.5) / k)
    centres, assign = kmeans2(values[:, None], start[:, None], iter=iterations, minit="matrix", missing="warn")
    return np.argsort(np.argsort(centres[:, 0]))[assign]


def ct_rendering(t1: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """HU image of the head in ``t1`` (1 mm grid), tissue by tissue (see the module docstring), noise-free."""
    head = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 15, iterations=2))
    ct = np.full(t1.shape, HU["air"], np.float32)
    cls = kmeans_1d(t1[brain].astype(np.float64))
    ct[brain] = np.array([HU["csf"], HU["grey"], HU["white"]], np.float32)[cls]
    outside = head & ~brain
    v = t1[outside]
    ct[outside] = np.where(v < 40, HU["bone"], np.where(v > 95, HU["fat"], HU["soft"]))
    return ndimage.gaussian_filter(ct, 0.7)


def write_images(raw: Path, source: str) -> dict:
    """Raw dataset (declared cross-modality): ``ct_colin27`` and ``mr_colin27`` with the same lobe labels, on a
    2 mm grid. Returns ``{modality: case}``."""
    import SimpleITK as sitk

    from nnunet_causal.data.aal import aal_lobe_lookup
    from nnunet_causal.data.cross_modality import declare_cross_modality
    from nnunet_causal.data.raw_dataset import write_dataset_json

    for path in (COLIN27, BRAIN_MASK, AAL, AAL_NAMES):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: apt-get install mricron-data")
    t1_img = sitk.ReadImage(str(COLIN27))
    t1 = sitk.GetArrayFromImage(t1_img).astype(np.float32)
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(BRAIN_MASK))) > 0
    lookup = aal_lobe_lookup(AAL_NAMES, [digit for _term, _prompt, digit in LOBES])
    labels = lookup[sitk.GetArrayFromImage(sitk.ReadImage(str(AAL)))]
    rng = np.random.default_rng(0)
    images = {"MR": t1, "CT": ct_rendering(t1, brain)}
    cases = {"CT": "ct_colin27", "MR": "mr_colin27"}
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True, exist_ok=True)

    def save(small, path, is_label):
        img = sitk.GetImageFromArray(small.astype(np.uint8 if is_label else np.float32))
        # zoom's samples span the whole grid: spacing scaled by the shape ratio (x, y, z order for ITK)
        ratio = [a / b for a, b in zip(t1.shape[::-1], small.shape[::-1])]
        img.SetSpacing(tuple(s * r for s, r in zip(t1_img.GetSpacing(), ratio)))
        img.SetOrigin(t1_img.GetOrigin())
        img.SetDirection(t1_img.GetDirection())
        sitk.WriteImage(img, str(path))

    for modality, case in cases.items():
        image = ndimage.zoom(images[modality], 0.5, order=1)
        if modality == "CT":
            image = image + rng.normal(0, 6.0, image.shape).astype(np.float32)
        save(image, raw / "imagesTr" / f"{case}_0000.nii.gz", False)
        save(ndimage.zoom(labels, 0.5, order=0), raw / "labelsTr" / f"{case}.nii.gz", True)
    channel = "CT" if source == "CT" else "T1"
    write_dataset_json(raw, {"0": channel}, {"background": 0, **{t: i for i, (t, _p, _d) in enumerate(LOBES, 1)}}, 2,
                       ".nii.gz", prompts={t: [p] for t, p, _d in LOBES},
                       domains={cases["CT"]: {"domain": "CT", "modality": "CT", "style": "head CT"},
                                cases["MR"]: {"domain": "MR", "modality": "MR", "style": "T1-weighted MRI"}},
                       imaging_family="ct" if source == "CT" else "mri", dataset_name=raw.name.split("_", 1)[1])
    dj = declare_cross_modality(json.loads((raw / "dataset.json").read_text()))
    (raw / "dataset.json").write_text(json.dumps(dj, indent=1))
    return cases


def prepare(root: Path, direction: str, env: dict, log: Path) -> dict:
    source, target = DIRECTIONS[direction]
    did = 870 + (0 if direction == "ct2mr" else 4)
    out = {True: (did, f"Dataset{did}_RealXMod{direction.upper()}"),
           False: (did + 1, f"Dataset{did + 1}_RealXMod{direction.upper()}Default")}
    out = {k: (d, n, root / "raw" / n, root / "pre" / n) for k, (d, n) in out.items()}
    did, name, raw, pre = out[True]
    if not (pre / "splits_final.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        cases = write_images(raw, source)
        run([bin_("nnUNetv2_plan_and_preprocess"), "-d", str(did), "-c", "2d", "-np", "2", "-npfp", "2"], env, log)
        write_cpu16_plans(pre)
        (pre / "splits_final.json").write_text(json.dumps([{"train": [cases[source]], "val": [cases[target]]}]))
    d_did, d_name, d_raw, d_pre = out[False]
    if not (d_pre / "splits_final.json").exists():
        copy_without_recipe(d_raw, d_pre, d_did, d_name, raw, pre)
    sets = {}
    for modality, case in (("CT", "ct_colin27"), ("MR", "mr_colin27")):
        folder = root / "eval" / modality
        if not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "images").mkdir(parents=True)
            (folder / "labels").mkdir()
            shutil.copy(raw / "imagesTr" / f"{case}_0000.nii.gz", folder / "images")
            shutil.copy(raw / "labelsTr" / f"{case}.nii.gz", folder / "labels")
            (folder / "done").write_text("")
        sets[modality] = folder
    return {"datasets": out, "sets": sets, "source": source, "target": target, "recipe": {}}


def report(results: dict, schedule: str) -> str:
    lines = [f"Colin27, real T1 MR and its CT rendering, 5 lobes; schedule {schedule} (2D, {PLANS}); mean lobe Dice.",
             "", "| direction | trainer | held-out modality Dice | source modality Dice (training image) |",
             "|---|---|---|---|"]
    for direction, rows in results.items():
        source, target = DIRECTIONS[direction]
        for row, r in rows.items():
            lines.append(f"| {source} -> {target} | {NAMES[row]} | {r[target]:.3f} | {r[source]:.3f} |")
    lines += ["", "Per lobe, held-out modality:", ""]
    for direction, rows in results.items():
        target = DIRECTIONS[direction][1]
        for row, r in rows.items():
            per = r[f"{target} per structure"]
            lines.append(f"- {direction} {NAMES[row]}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items())))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/nnunet_causal_real_cross_modality")
    p.add_argument("--directions", nargs="+", choices=sorted(DIRECTIONS), default=["ct2mr", "mr2ct"])
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--schedule", default="CPU1250steps", help="trainer suffix: the same budget for every row")
    a = p.parse_args(argv)
    from nnunet_causal.env_cli import ext_trainer_folder

    work = Path(a.work) / a.schedule
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for direction in a.directions:
        root = work / direction
        log = work / f"{direction}.log"
        env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
                   nnUNet_results=str(root / "results"), nnUNet_extTrainer=str(ext_trainer_folder()),
                   nnUNet_compile="false", nnUNet_def_n_proc="2", HF_HUB_OFFLINE="1")
        prep = prepare(root, direction, env, log)
        for row in a.rows:
            res = one_model(root, prep, row, a.schedule, env, log)
            results.setdefault(direction, {})[row] = res
            print(f"{direction} {NAMES[row]:32s} {prep['target']} {res[prep['target']]:.3f}  "
                  f"{prep['source']} {res[prep['source']]:.3f}  ({res['train_seconds']:.0f} s training)", flush=True)
            results_file.write_text(json.dumps(results, indent=1))
            (work / "results.md").write_text(report(results, a.schedule) + "\n")
    print("\n" + report(results, a.schedule))
    return 0


if __name__ == "__main__":
    sys.exit(main())
