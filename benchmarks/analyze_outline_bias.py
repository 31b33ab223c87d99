"""Where does an in-domain Dice gap come from: detection or outlines? Per reference lesion of a
lodo_benchmark.py evaluation set, the predicted area near it (the prediction within 4 pixels of the lesion)
over its true area, by lesion-size tercile, plus Dice on non-empty frames and false-positive frames among
the empty ones, side by side for the trainers given.

Usage: python benchmarks/analyze_outline_bias.py SEED_FOLDER SET TRAINER [TRAINER ...]
  e.g. python benchmarks/analyze_outline_bias.py /work/bench/endo/seed0 in-domain-new \
       nnUNetTrainer_CPU5000steps nnUNetTrainerCausalText_CueBreakingFactual_CPU5000steps
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 0


def lesion_rows(labels: Path, pred: Path):
    """(true area, predicted area within 4 px) per reference lesion; (Dice, empty?, predicted px) per frame."""
    lesions, frames = [], []
    for lab in sorted(labels.glob("*.png")):
        ref = _read(lab)
        p = pred / lab.name
        if not p.is_file():
            raise SystemExit(f"{p}: missing prediction (run lodo_benchmark.py for this trainer and set first)")
        out = _read(p)
        total = ref.sum() + out.sum()
        frames.append((2 * (ref & out).sum() / total if total else 1.0, not ref.any(), int(out.sum())))
        comp, n = ndimage.label(ref)
        for k in range(1, n + 1):
            near = ndimage.binary_dilation(comp == k, iterations=4)
            lesions.append((int((comp == k).sum()), int((out & near).sum())))
    return np.array(lesions, float), frames


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    seed, eval_set, trainers = Path(argv[0]), argv[1], argv[2:]
    labels = seed / "eval" / eval_set / "labels"
    rows = {t: lesion_rows(labels, seed / "pred" / t / eval_set) for t in trainers}
    areas = next(iter(rows.values()))[0][:, 0]
    edges = np.quantile(areas, [1 / 3, 2 / 3])
    bins = np.digitize(areas, edges)
    print(f"{eval_set}: {len(areas)} lesions (terciles of true area: <= {edges[0]:.0f}, <= {edges[1]:.0f}, "
          f"> {edges[1]:.0f} px)\n")
    print("| trainer | Dice, non-empty frames | empty frames with any FP | predicted / true area: small "
          "| medium | large |")
    print("|---|---|---|---|---|---|")
    for t, (les, frames) in rows.items():
        dice = np.mean([d for d, empty, _ in frames if not empty])
        fp_empty = sum(1 for _, empty, n in frames if empty and n > 0)
        n_empty = sum(1 for _, empty, _ in frames if empty)
        ratio = les[:, 1] / les[:, 0]
        cells = [f"{ratio[bins == b].mean():.2f}" for b in range(3)]
        print(f"| {t} | {dice:.3f} | {fp_empty}/{n_empty} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
