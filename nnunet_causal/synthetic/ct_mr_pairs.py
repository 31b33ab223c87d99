"""The same abdominal phantoms rendered as CT (HU) and as T1- / T2-weighted-like MR, as one raw dataset.

Geometry comes from :func:`nnunet_causal.synthetic.ct3d.render_phantom` (same organs, TotalSegmentator label
names, LPS orientation; see that module): one noise-free rendering gives the tissue of every voxel (air, fat,
muscle of the abdominal wall, bone of the spine, stomach gas, each labelled organ and its texture), which is
then imaged twice:

* **CT**: the phantom rendered again from the same random stream with a CT scanner style (kernel blur,
  partial volume, quantum noise, HU calibration); the label map is identical.
* **MR**: per-tissue relative signal (:data:`MR_SIGNAL`, literature-shaped orderings of abdominal MR at
  1.5 T: on T1 fat is bright, fluid (gallbladder) dark, the aorta a flow void, liver brighter than spleen;
  on T2 fluid and spleen bright, liver dark), the organ texture, a smooth multiplicative coil bias field,
  in-plane blur and Rician noise (magnitude of complex Gaussian noise), scaled to ``MRStyle.scale``
  arbitrary units. So several organs invert their contrast to their surroundings between the modalities
  (the aorta is the brightest organ on contrast CT and the darkest on MR), which a CT-trained network that
  learned "bright tube = aorta" cannot survive.

:func:`make_ct_mr_dataset` writes both renderings of each phantom (cases ``ct_NNNN`` and ``mr_NNNN``) with a
domain record per case (``domain`` = ``"CT"`` / ``"MR"``); the dataset.json is declared for cross-modality
training (:mod:`nnunet_causal.data.cross_modality`: per-image z-score) with the confounder dictionary of
``source`` (CT -> ``ct``, MR -> ``mri``). Which modality trains is the split's choice.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np
from scipy import ndimage

from nnunet_causal.data.cross_modality import declare_cross_modality
from nnunet_causal.data.raw_dataset import atomic_path, write_dataset_json
from nnunet_causal.errors import DatasetError
from nnunet_causal.synthetic.ct3d import (AIR_HU, BONE_HU, FAT_HU, LABELS, ORGANS, PHASE_HU, PROMPTS, ScannerStyle,
                                          render_phantom)

logger = logging.getLogger(__name__)

# relative MR signal per tissue (0 = no signal), ordering after abdominal MR at 1.5 T
MR_SIGNAL: Dict[str, Dict[str, float]] = {
    "T1": {"air": 0.0, "gas": 0.02, "fat": 0.90, "muscle": 0.30, "bone": 0.55, "liver": 0.55, "spleen": 0.40,
           "stomach": 0.25, "kidney_right": 0.35, "kidney_left": 0.35, "pancreas": 0.65, "gallbladder": 0.10,
           "aorta": 0.05},
    "T2": {"air": 0.0, "gas": 0.02, "fat": 0.65, "muscle": 0.20, "bone": 0.35, "liver": 0.25, "spleen": 0.60,
           "stomach": 0.75, "kidney_right": 0.65, "kidney_left": 0.65, "pancreas": 0.35, "gallbladder": 0.95,
           "aorta": 0.05},
}
CLEAN_CT = ScannerStyle(noise_hu=0.0, blur_sigma=0.0, contrast_phase="portal venous", bias=0.0, streaks=False)
DEFAULT_CT = ScannerStyle(noise_hu=12.0, blur_sigma=0.5, contrast_phase="portal venous")


@dataclass(frozen=True)
class MRStyle:
    """MR imaging style: ``weighting`` (a key of :data:`MR_SIGNAL`), ``bias`` (std of the log gain field),
    ``noise`` (Rician sigma, fraction of the brightest tissue), ``blur`` (in-plane voxels), ``texture``
    (signal per unit of the phantom's organ texture), ``scale`` (arbitrary units of signal 1)."""
    weighting: str = "T1"
    bias: float = 0.25
    noise: float = 0.03
    blur: float = 0.5
    texture: float = 0.03
    scale: float = 1000.0


class Pair(NamedTuple):
    """One phantom in both modalities: ``ct`` HU and ``mr`` arbitrary units, float32 ``[z, y, x]``; one
    ``label`` uint8 map; ``spacing`` (x, y, z) mm."""
    ct: np.ndarray
    mr: np.ndarray
    label: np.ndarray
    spacing: Tuple[float, float, float]


def tissue_map(clean_hu: np.ndarray, label: np.ndarray) -> Tuple[np.ndarray, Dict[str, int]]:
    """Tissue index per voxel of a noise-free CT phantom, and the index of each tissue name. Unlabelled voxels
    are air / fat / muscle / bone by their HU; labelled ones their organ, stomach gas where the stomach is air."""
    names = ["air", "gas", "fat", "muscle", "bone", *ORGANS]
    index = {n: i for i, n in enumerate(names)}
    t = np.full(label.shape, index["muscle"], np.int16)
    t[clean_hu < (FAT_HU + 40.0)] = index["fat"]
    t[clean_hu < (AIR_HU + FAT_HU) / 2] = index["air"]
    t[clean_hu > BONE_HU / 2] = index["bone"]
    for name in ORGANS:
        t[label == LABELS[name]] = index[name]
    t[(label == LABELS["stomach"]) & (clean_hu < (AIR_HU + FAT_HU) / 2)] = index["gas"]
    return t, index


def save_nifti(array: np.ndarray, spacing, path: Path) -> None:
    """Write ``array`` ``[z, y, x]`` with ``spacing`` (x, y, z) and an identity direction (LPS), atomically."""
    import SimpleITK as sitk

    im = sitk.GetImageFromArray(array)
    im.SetSpacing(tuple(float(s) for s in spacing))
    with atomic_path(path) as tmp:
        sitk.WriteImage(im, tmp, True)


def render_mr(rng: np.random.Generator, clean_hu: np.ndarray, label: np.ndarray, style: MRStyle,
              phase: str = "portal venous") -> np.ndarray:
    """MR appearance of a noise-free CT phantom (float32, same grid)."""
    if style.weighting not in MR_SIGNAL:
        raise DatasetError(f"unknown MR weighting '{style.weighting}' (known: {', '.join(MR_SIGNAL)})")
    tissue, index = tissue_map(clean_hu, label)
    signal = MR_SIGNAL[style.weighting]
    lut = np.zeros(len(index), np.float64)
    for name, i in index.items():
        lut[i] = signal[name]
    img = lut[tissue]
    organ = label > 0
    hu_mean = np.zeros(len(LABELS), np.float64)
    for name, v in LABELS.items():
        if name in ORGANS:
            hu_mean[v] = PHASE_HU[phase][name]
    texture = np.where(organ & (tissue != index["gas"]), (clean_hu - hu_mean[label]) / 6.0, 0.0)
    img = img + style.texture * texture
    if style.bias:
        coarse = rng.standard_normal((3, 3, 3))
        field = ndimage.zoom(coarse, np.asarray(img.shape) / 3.0, order=3)[tuple(slice(0, s) for s in img.shape)]
        field = (field - field.mean()) / (field.std() + 1e-8)
        img = img * np.exp(style.bias * field)
    if style.blur:
        img = ndimage.gaussian_filter(img, (0.0, style.blur, style.blur))
    n1, n2 = rng.normal(0, style.noise, img.shape), rng.normal(0, style.noise, img.shape)
    img = np.sqrt((img + n1) ** 2 + n2 ** 2)
    return (img * style.scale).astype(np.float32)


def render_pair(seed, shape: Tuple[int, int, int], ct_style: ScannerStyle = DEFAULT_CT,
                mr_style: MRStyle = MRStyle(), spacing_xy_mm: float = 1.5) -> Pair:
    """One phantom (random stream ``np.random.default_rng(seed)``) as CT and as MR; the label map is the
    phantom's. The CT style's slice thickness and contrast phase also set the MR grid and organ texture."""
    clean_style = replace(CLEAN_CT, slice_thickness_mm=ct_style.slice_thickness_mm,
                          contrast_phase=ct_style.contrast_phase)
    clean = render_phantom(np.random.default_rng(seed), shape, clean_style, spacing_xy_mm)
    ct = render_phantom(np.random.default_rng(seed), shape, ct_style, spacing_xy_mm)
    if not np.array_equal(clean.label, ct.label):   # both from the same stream: a changed renderer shows here
        raise DatasetError("CT and MR renderings of one phantom differ in their label maps")
    mr = render_mr(np.random.default_rng([*np.atleast_1d(seed).tolist(), 101]), clean.image, clean.label,
                   mr_style, ct_style.contrast_phase)
    return Pair(ct.image, mr, clean.label, ct.spacing)


def make_ct_mr_dataset(out_folder, n_cases: int = 8, shape: Tuple[int, int, int] = (24, 48, 48), seed: int = 0,
                       test_fraction: float = 0.25, source: str = "CT", ct_style: ScannerStyle = DEFAULT_CT,
                       mr_style: MRStyle = MRStyle(), dataset_name: Optional[str] = None) -> Path:
    """Write ``n_cases`` phantoms, each as ``ct_NNNN`` and ``mr_NNNN`` (``CASE_0000.nii.gz``), to a raw dataset.

    The last ``round(test_fraction * n_cases)`` phantoms go to imagesTs/labelsTs (both renderings), the rest
    to imagesTr. ``source`` ("CT" or "MR") names the modality meant for training: it picks the confounder
    dictionary (``imaging_family`` ct / mri) of the cross-modality declaration; the split decides what trains.
    Returns the dataset folder."""
    if source not in ("CT", "MR"):
        raise DatasetError(f"source must be 'CT' or 'MR', got '{source}'")
    n_test = int(round(test_fraction * n_cases))
    if not 0 <= test_fraction < 1 or n_cases - n_test < 1:
        raise DatasetError(f"{n_cases} phantom(s) with test_fraction {test_fraction} leave no training phantom")
    out = Path(out_folder)
    records: Dict[str, dict] = {}
    ct_text = f"CT, {ct_style.contrast_phase} phase, noise {ct_style.noise_hu:g} HU"
    mr_text = (f"{mr_style.weighting}-weighted MR, bias field {mr_style.bias:g}, Rician noise {mr_style.noise:g}")
    for i in range(n_cases):
        pair = render_pair([seed, i], shape, ct_style, mr_style)
        split = "Ts" if i >= n_cases - n_test else "Tr"
        for modality, image, text in (("CT", pair.ct, ct_text), ("MR", pair.mr, mr_text)):
            case = f"{modality.lower()}_{i:04d}"
            save_nifti(image, pair.spacing, out / f"images{split}" / f"{case}_0000.nii.gz")
            save_nifti(pair.label, pair.spacing, out / f"labels{split}" / f"{case}.nii.gz")
            records[case] = {"domain": modality, "site": modality, "modality": modality, "style": text,
                             "phantom": i, "source": "nnunet_causal synthetic",
                             "split": "train" if split == "Tr" else "test"}
    (out / "imagesTs").mkdir(parents=True, exist_ok=True)
    source_names = {"0": "CT"} if source == "CT" else {"0": mr_style.weighting}
    dj = declare_cross_modality({"channel_names": source_names,
                                 "imaging_family": "ct" if source == "CT" else "mri"})
    n_train = sum(r["split"] == "train" for r in records.values())
    write_dataset_json(out, dj["channel_names"], LABELS, n_train, ".nii.gz", prompts=PROMPTS, domains=records,
                       dataset_name=dataset_name or out.name, imaging_family=dj["imaging_family"],
                       cross_modality=dj["cross_modality"], counterfactual_recipe=dj["counterfactual_recipe"],
                       description=f"synthetic abdominal phantoms, each as CT and {mr_style.weighting} MR; "
                                   f"source modality {source}",
                       synthetic={"generator": "ct_mr_pairs", "seed": seed, "shape_zyx": list(shape),
                                  "ct_style": asdict(ct_style), "mr_style": asdict(mr_style)})
    logger.info("wrote %d phantoms as CT and MR (%d training cases) to %s", n_cases, n_train, out)
    return out
