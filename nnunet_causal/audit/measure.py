"""The audit's measurements: one trained model, one dictionary, a folder of images (and optional labels).

For every image (preprocessed exactly as nnU-Net's predictor does) and every dictionary entry with a
simulator, the entry's do(z) is applied to the normalised image at each strength ``s`` (``x_s = x +
s (do(x) - x)`` in the simulator's working space, see :meth:`CounterfactualSampler.apply`) and the model
predicts factual and counterfactual images with nnU-Net's sliding window (no mirroring). Per structure k:

* ``consistency`` = Dice(pred_k(x), pred_k(x_s)) (1 when both are empty), ``sensitivity = 1 - consistency``;
* with reference labels: ``dice_change`` = Dice(pred_k(x_s), ref_k) - Dice(pred_k(x), ref_k);
* ``fp_created``: voxels that x_s adds to structure k outside the factual prediction (and outside the
  reference when given), per image.

The counterfactual of an image is drawn from a seed of (entry, case, draw), so every model of one audit
sees the same counterfactual images. Label-aware simulators act on the reference label when given, else on
the model's own factual segmentation (then they probe "what if this structure looked different").
Measurements are in the preprocessed (network) grid; that is where the model decides.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from nnunet_causal.confounders.counterfactual import CounterfactualSampler
from nnunet_causal.confounders.dictionary import ConfounderEntry
from nnunet_causal.confounders.frames import IntensityFrame
from nnunet_causal.errors import DatasetError

logger = logging.getLogger(__name__)


@dataclass
class AuditCase:
    """One image: ``case`` id, its channel files and (optionally) its reference label file."""
    case: str
    files: List[str]
    label: Optional[str] = None


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def find_cases(images: Path, labels: Optional[Path], file_ending: str, max_cases: Optional[int] = None
               ) -> List[AuditCase]:
    """Cases of an nnU-Net style image folder (``CASE_XXXX<ending>``), each with all its channel files (the
    channel count is checked after reading: one RGB PNG holds three channels)."""
    if not images.is_dir():
        raise DatasetError(f"image folder {images} does not exist")
    by_case: Dict[str, List[Path]] = {}
    for f in sorted(images.iterdir()):
        name = f.name
        if not name.endswith(file_ending) or len(name) < len(file_ending) + 5 or name[-len(file_ending) - 5] != "_":
            continue
        by_case.setdefault(name[:-len(file_ending) - 5], []).append(f)
    if not by_case:
        raise DatasetError(f"{images}: no images named CASE_XXXX{file_ending} (the model's file ending)")
    cases = []
    for case, files in sorted(by_case.items()):
        label = None
        if labels is not None:
            lf = labels / f"{case}{file_ending}"
            if not lf.is_file():
                raise DatasetError(f"reference label {lf} of case '{case}' does not exist")
            label = str(lf)
        cases.append(AuditCase(case, [str(f) for f in files], label))
    return cases[:max_cases] if max_cases else cases


class ModelAuditor:
    """Runs one model on factual and counterfactual views of the cases."""

    def __init__(self, predictor, configuration: str, entries: Sequence[ConfounderEntry],
                 strengths: Sequence[float], draws: int = 1, skip_unsupported: bool = True):
        self.predictor = predictor
        cm, pm = predictor.configuration_manager, predictor.plans_manager
        self.ndim = len(cm.patch_size)
        self.channels = channels = len(predictor.dataset_json["channel_names"])
        frame = IntensityFrame.from_plans(pm.plans, configuration)
        self.sampler = CounterfactualSampler(entries, frame, self.ndim, channels, 1.0,
                                             skip_unsupported=skip_unsupported)
        self.entries, self.strengths, self.draws = list(entries), list(strengths), draws
        self.structures = self._structures(predictor.label_manager)

    @staticmethod
    def _structures(lm) -> Dict[str, object]:
        """name -> label value (or region tuple) of every foreground structure."""
        if lm.has_regions:
            names = [k for k in lm.label_dict if k != "background"]
            return {n: lm.label_dict[n] for n in names}
        return {n: v for n, v in lm.label_dict.items() if n != "background" and v != lm.ignore_label}

    def _masks(self, seg: np.ndarray) -> Dict[str, np.ndarray]:
        out = {}
        for name, v in self.structures.items():
            vals = v if isinstance(v, (list, tuple)) else [v]
            out[name] = np.isin(seg, vals)
        return out

    def _intervene(self, x: torch.Tensor, seg: torch.Tensor, entry: int, generator, strength: float) -> torch.Tensor:
        """do(z) of one preprocessed image ``x`` (C, *spatial); a 2D model's image (C, Z, H, W) is a batch of
        Z slices, as the network sees it."""
        if self.ndim == 2 and x.ndim == 4:
            xb, sb = x.permute(1, 0, 2, 3), seg[0].permute(1, 0, 2, 3)
            out = self.sampler.apply(xb, sb, [[entry]] * xb.shape[0], generator, strength=strength)
            return out.permute(1, 0, 2, 3).contiguous()
        return self.sampler.apply(x[None], seg, [[entry]], generator, strength=strength)[0]

    def _predict(self, data: torch.Tensor) -> np.ndarray:
        logits = self.predictor.predict_sliding_window_return_logits(data)
        return self.predictor.label_manager.convert_logits_to_segmentation(logits).cpu().numpy()

    def run(self, cases: Sequence[AuditCase], progress: bool = True, keep_examples: int = 2) -> dict:
        """Rows (one per entry x strength x structure x case) and the worst examples per entry."""
        p = self.predictor
        pre = p.configuration_manager.preprocessor_class(verbose=False)
        rows, examples = [], {}
        todo = len(cases) * (1 + len(self.sampler.active) * len(self.strengths) * self.draws)
        bar = tqdm(total=todo, desc="audit", disable=not progress, unit="pred")
        for c in cases:
            try:
                data, ref, _ = pre.run_case(c.files, c.label, p.plans_manager, p.configuration_manager,
                                            p.dataset_json)
            except Exception as e:  # noqa: BLE001 - an unreadable file is reported with its case
                raise DatasetError(f"case '{c.case}' ({', '.join(c.files)}): cannot read or preprocess it "
                                   f"({type(e).__name__}: {e})") from e
            if data.shape[0] != self.channels:
                raise DatasetError(f"case '{c.case}' ({', '.join(c.files)}) has {data.shape[0]} channel(s), the "
                                   f"model expects {self.channels} ({self.predictor.dataset_json['channel_names']})")
            x = torch.from_numpy(np.ascontiguousarray(data)).float()
            factual = self._predict(x)
            bar.update(1)
            f_masks = self._masks(factual)
            r_masks = self._masks(ref[0]) if ref is not None else None
            seg_for_sim = torch.from_numpy((ref if ref is not None else factual[None]).astype(np.int64))[None]
            if ref is not None:
                seg_for_sim = seg_for_sim.clamp_min(0)
            for e_idx in self.sampler.active:
                for d in range(self.draws):
                    seed = zlib.crc32(f"{self.entries[e_idx].description}|{c.case}|{d}".encode())
                    for s in self.strengths:
                        g = torch.Generator().manual_seed(seed)
                        xs = self._intervene(x, seg_for_sim, e_idx, g, s)
                        cf = self._predict(xs)
                        bar.update(1)
                        c_masks = self._masks(cf)
                        for name in self.structures:
                            fm, cm = f_masks[name], c_masks[name]
                            row = {"entry": e_idx, "strength": s, "structure": name, "case": c.case, "draw": d,
                                   "consistency": dice(fm, cm)}
                            outside = ~fm if r_masks is None else ~(fm | r_masks[name])
                            row["fp_created"] = int(np.logical_and(cm, outside).sum())
                            if r_masks is not None:
                                row["dice_change"] = dice(cm, r_masks[name]) - dice(fm, r_masks[name])
                            rows.append(row)
                        if s == max(self.strengths):  # overlays: the worst cases at the highest strength
                            worst = min(dice(f_masks[n], c_masks[n]) for n in self.structures)
                            kept = examples.setdefault(e_idx, [])
                            kept.append((worst, c.case, x.numpy(), xs.numpy(), factual, cf,
                                         None if ref is None else ref[0]))
                            examples[e_idx] = sorted(kept, key=lambda t: t[0])[:keep_examples]
        bar.close()
        return {"rows": rows, "examples": examples}
