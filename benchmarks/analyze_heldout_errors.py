"""Why does the held-out site fail? Recall, precision and how many background highlights each model calls
polyp, from nnU-Net's own validation predictions of a lodo_benchmark.py seed folder.

Usage: python benchmarks/analyze_heldout_errors.py /tmp/nnunet_causal_lodo/seed0
"""
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from scipy import ndimage

root = Path(sys.argv[1])
raw = next((root / "raw").iterdir())
dj = json.loads((raw / "dataset.json").read_text())
res = next((root / "results").iterdir())
for model in sorted(res.iterdir()):
    val = next(model.glob("fold_*/validation"))
    tp = fp = fn = fp_on_hl = 0
    pred_on_hl = hl_total = 0
    for p in val.glob("*.png"):
        case = p.stem
        img = np.asarray(Image.open(raw / "imagesTr" / f"{case}_0000.png")).astype(int)
        ref = np.asarray(Image.open(raw / "labelsTr" / f"{case}.png")) > 0
        pred = np.asarray(Image.open(p)) > 0
        hl = ndimage.binary_dilation(img.sum(-1) >= 600, iterations=2)
        tp += (pred & ref).sum(); fp += (pred & ~ref).sum(); fn += (~pred & ref).sum()
        fp_on_hl += (pred & ~ref & hl).sum()
        pred_on_hl += (pred & hl & ~ref).sum(); hl_total += (hl & ~ref).sum()
    print(f"{model.name.split('__')[0]:52s} recall {tp/max(1,tp+fn):.2f} precision {tp/max(1,tp+fp):.2f} "
          f"FP on highlights {fp_on_hl/max(1,fp):.2f} of FP; background highlights predicted as polyp {pred_on_hl/max(1,hl_total):.2f}")
