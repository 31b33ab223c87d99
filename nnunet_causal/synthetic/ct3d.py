"""Synthetic CT-like abdominal phantoms from several scanners, written as an nnU-Net v2 raw dataset.

Orientation (read this before adding organs): arrays are indexed ``[z, y, x]`` (SimpleITK's
``GetImageFromArray`` order) and saved with an identity direction matrix, which in SimpleITK/ITK means LPS:
physical +x points to the patient's **left**, +y to **posterior**, +z to **superior**. Hence the liver sits
at small x (patient right), the spleen at large x (patient left), the kidneys at large y (posterior), the
stomach at small y (anterior), and ``kidney_left`` has the larger x centroid. (A viewer in radiological
convention shows the patient's left on the screen's right.) NIfTI files written by SimpleITK store the
corresponding RAS affine, so other readers see the same anatomy.

Organ shapes: ellipsoids (centre and semi-axes as fractions of the field of view) with random centre,
size and a smooth random (elastic) displacement field per case. Intensities are HU-like and depend on the
scanner's contrast phase (see :data:`PHASE_HU`); fat -100, muscle 40, bone 500, air -1000 outside the body
and gas in the stomach. Labels use TotalSegmentator names.

Scanner styles (:class:`ScannerStyle`): noise (HU), in-plane kernel blur, slice thickness (the z spacing;
the field of view is fixed, so thicker slices give fewer slices and more partial-volume blur), contrast
phase, a multiplicative low-frequency bias field, metal streaks and an HU calibration gain/offset.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from nnunet_causal.data.raw_dataset import atomic_path, write_dataset_json
from nnunet_causal.errors import DatasetError
from nnunet_causal.synthetic.endoscopy2d import domain_seed
from nnunet_causal.synthetic.reports import (MAY_BE_ABSENT, MAY_HAVE_LESION, size_word, write_ct_report,
                                             write_reports_file)
from nnunet_causal.synthetic.styles import describe_ct_style

logger = logging.getLogger(__name__)

REFERENCE_SLICE_MM = 3.0   # slice thickness at which the grid has exactly shape[0] slices

# Organs in painting order (later ones overwrite earlier ones, e.g. the gallbladder sits in the liver):
# name -> (centre (z, y, x), semi-axes (z, y, x)), fractions of the field of view; x = patient left.
ORGANS: Dict[str, Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = {
    "liver": ((0.66, 0.45, 0.30), (0.22, 0.22, 0.19)),
    "spleen": ((0.68, 0.58, 0.78), (0.13, 0.10, 0.07)),
    "stomach": ((0.72, 0.36, 0.62), (0.11, 0.10, 0.11)),
    "kidney_right": ((0.42, 0.66, 0.31), (0.14, 0.07, 0.06)),
    "kidney_left": ((0.45, 0.66, 0.69), (0.14, 0.07, 0.06)),
    "pancreas": ((0.52, 0.50, 0.55), (0.05, 0.04, 0.14)),
    "gallbladder": ((0.55, 0.36, 0.37), (0.07, 0.05, 0.05)),
    "aorta": ((0.50, 0.60, 0.53), (0.48, 0.035, 0.035)),
}
LABELS = {"background": 0, **{name: i + 1 for i, name in enumerate(ORGANS)}}
PROMPTS = {"liver": ["liver", "hepatic parenchyma"], "spleen": ["spleen"], "stomach": ["stomach"],
           "kidney_right": ["right kidney"], "kidney_left": ["left kidney"], "pancreas": ["pancreas"],
           "gallbladder": ["gallbladder", "gall bladder"], "aorta": ["aorta", "abdominal aorta"]}
# mean HU of each organ per contrast phase
PHASE_HU: Dict[str, Dict[str, float]] = {
    "portal venous": {"liver": 60, "spleen": 50, "stomach": 25, "kidney_right": 150, "kidney_left": 150,
                      "pancreas": 45, "gallbladder": 10, "aorta": 180},
    "arterial": {"liver": 45, "spleen": 70, "stomach": 30, "kidney_right": 200, "kidney_left": 200,
                 "pancreas": 55, "gallbladder": 10, "aorta": 320},
    "non-contrast": {"liver": 55, "spleen": 45, "stomach": 20, "kidney_right": 30, "kidney_left": 30,
                     "pancreas": 40, "gallbladder": 5, "aorta": 40},
}
FAT_HU, MUSCLE_HU, BONE_HU, AIR_HU = -100.0, 40.0, 500.0, -1000.0


@dataclass(frozen=True)
class ScannerStyle:
    """Imaging style of one scanner. HU units for noise and offset, voxels for blur, mm for slices."""
    noise_hu: float = 10.0
    blur_sigma: float = 0.3            # in-plane Gaussian kernel blur, voxels
    slice_thickness_mm: float = 3.0    # z spacing
    contrast_phase: str = "portal venous"
    bias: float = 0.0                  # amplitude of the relative low-frequency gain field
    streaks: bool = False              # metal-like radial streaks in some slices
    hu_scale: float = 1.0              # calibration gain
    hu_offset: float = 0.0             # calibration offset, HU


DEFAULT_SCANNER_STYLES: Dict[str, ScannerStyle] = {
    "scannerA": ScannerStyle(8.0, 0.3, 3.0, "portal venous", 0.0, False, 1.0, 0.0),
    "scannerB": ScannerStyle(25.0, 0.9, 5.0, "arterial", 0.05, False, 0.95, 10.0),
    "scannerC": ScannerStyle(15.0, 0.5, 2.0, "non-contrast", 0.1, True, 1.04, -10.0),
    "scannerD": ScannerStyle(30.0, 0.2, 1.5, "portal venous", 0.02, True, 1.0, 0.0),
}


class Phantom(NamedTuple):
    """One volume: ``image`` float32 HU ``[z, y, x]``, ``label`` uint8 ``[z, y, x]``, ``spacing`` (x, y, z) mm."""
    image: np.ndarray
    label: np.ndarray
    spacing: Tuple[float, float, float]


def style_for_scanner(name: str, styles: Optional[Dict[str, ScannerStyle]] = None) -> ScannerStyle:
    """The style of a scanner: from ``styles``, else :data:`DEFAULT_SCANNER_STYLES`, else drawn from the name."""
    if styles and name in styles:
        return styles[name]
    if name in DEFAULT_SCANNER_STYLES:
        return DEFAULT_SCANNER_STYLES[name]
    rng = np.random.default_rng([domain_seed(name), 23])
    return ScannerStyle(noise_hu=float(rng.uniform(5, 30)), blur_sigma=float(rng.uniform(0.2, 1.0)),
                        slice_thickness_mm=float(rng.choice([1.5, 2.0, 3.0, 5.0])),
                        contrast_phase=str(rng.choice(sorted(PHASE_HU))), bias=float(rng.uniform(0, 0.1)),
                        streaks=bool(rng.random() < 0.3), hu_scale=float(rng.uniform(0.95, 1.05)),
                        hu_offset=float(rng.uniform(-10, 10)))


def _smooth_noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / (n.std() + 1e-8)


def render_phantom(rng: np.random.Generator, shape: Tuple[int, int, int], style: ScannerStyle,
                   spacing_xy_mm: float = 1.5, absent: Sequence[str] = (), lesions: Sequence[str] = (),
                   lesion_rng: Optional[np.random.Generator] = None) -> Phantom:
    """Render one phantom. ``shape = (z, y, x)`` is the grid at :data:`REFERENCE_SLICE_MM`; the scanner's
    slice thickness changes the number of slices to ``round(shape[0] * 3 mm / thickness)`` over the same
    field of view.

    ``absent`` organs are not painted (their place stays fat; their random draws are still made, so the
    other organs do not move); each organ of ``lesions`` gets a hypodense sphere (-40 HU against the organ,
    label unchanged) placed with ``lesion_rng``. Both empty (the default) give the plain phantom."""
    if style.contrast_phase not in PHASE_HU:
        raise DatasetError(f"unknown contrast phase '{style.contrast_phase}' (known: {', '.join(PHASE_HU)})")
    nz = max(4, int(round(shape[0] * REFERENCE_SLICE_MM / style.slice_thickness_mm)))
    grid = (nz, int(shape[1]), int(shape[2]))
    z, y, x = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in grid], indexing="ij")
    # elastic perturbation: one smooth displacement field (fraction of the FOV) shared by all organs
    sig = (3.0 * nz / shape[0], 3.0, 3.0)
    amp = rng.uniform(0.01, 0.02)
    disp = [amp * _smooth_noise(rng, grid, sig) for _ in range(3)]
    by, bx = y + 0.4 * disp[1], x + 0.4 * disp[2]          # the body outline deforms less than the organs
    z, y, x = z + disp[0], y + disp[1], x + disp[2]
    axes = rng.uniform((0.40, 0.44), (0.44, 0.48))   # body semi-axes (y, x)
    body = ((by - 0.5) / axes[0]) ** 2 + ((bx - 0.5) / axes[1]) ** 2 <= 1
    inner = ((by - 0.5) / (axes[0] - 0.05)) ** 2 + ((bx - 0.5) / (axes[1] - 0.04)) ** 2 <= 1
    img = np.full(grid, AIR_HU)
    img[body] = MUSCLE_HU                                 # abdominal wall
    img[inner] = FAT_HU                                   # visceral fat
    spine = ((y - 0.80) / 0.07) ** 2 + ((x - 0.5) / 0.07) ** 2 <= 1
    img[spine & body] = BONE_HU                           # vertebral body, unlabelled
    label = np.zeros(grid, np.uint8)
    hu = PHASE_HU[style.contrast_phase]
    texture = 6.0 * _smooth_noise(rng, grid, 1.0)
    for name, (centre, radii) in ORGANS.items():
        c = np.asarray(centre) + rng.uniform(-0.025, 0.025, 3)
        r = np.asarray(radii) * rng.uniform(0.85, 1.15, 3)
        m = (((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1) & inner
        if name in absent:
            continue
        label[m] = LABELS[name]
        img[m] = hu[name] + texture[m]
        if name == "stomach":   # gas in the anterior (small y) part
            img[m & (y < c[1] - 0.4 * r[1])] = AIR_HU + 150
        if name in lesions:
            lr = lesion_rng or np.random.default_rng(0)
            lc = c + lr.uniform(-0.35, 0.35, 3) * r
            rad = 0.35 * float(np.min(r))
            spot = (((z - lc[0]) / rad) ** 2 + ((y - lc[1]) / rad) ** 2 + ((x - lc[2]) / rad) ** 2 <= 1) & m
            img[spot] -= 40.0
    body_f = body.astype(float)
    if style.bias:
        field = 1 + style.bias * _smooth_noise(rng, grid, (8.0 * nz / shape[0], 8.0, 8.0))
        img = np.where(body, (img - AIR_HU) * field + AIR_HU, img)
    if style.streaks:
        ay, ax = rng.uniform(0.4, 0.6, 2)
        angle = np.arctan2(y - ay, x - ax)
        rays = np.cos(angle * int(rng.integers(6, 12)) + rng.uniform(0, np.pi))
        streak = 120 * rays ** 40 - 60 * np.sin(angle * 7) ** 40    # bright and dark streaks
        slices = rng.random(nz) < 0.4
        img = img + streak * slices[:, None, None] * body_f
    thickness_blur = 0.25 * style.slice_thickness_mm / REFERENCE_SLICE_MM   # partial volume, voxels in z
    img = ndimage.gaussian_filter(img, (thickness_blur, style.blur_sigma, style.blur_sigma))
    img = img * style.hu_scale + style.hu_offset + rng.normal(0, style.noise_hu, grid)
    return Phantom(img.astype(np.float32), label, (spacing_xy_mm, spacing_xy_mm, float(style.slice_thickness_mm)))


def _organ_facts(label: np.ndarray, shape: Tuple[int, int, int], absent: Sequence[str],
                 lesions: Sequence[str]) -> Dict[str, dict]:
    """Per organ: present, size word (voxel volume over the reference ellipsoid's, same FOV) and lesion."""
    out = {}
    fov_voxels = float(label.size)
    for name, (_, radii) in ORGANS.items():
        n = int((label == LABELS[name]).sum())
        if name in absent or n == 0:
            out[name] = {"present": False}
            continue
        reference = 4.0 / 3.0 * np.pi * float(np.prod(radii)) * fov_voxels
        out[name] = {"present": True, "size": size_word(n / reference), "lesion": name in lesions}
    return out


def _save_nifti(array: np.ndarray, spacing, path: Path) -> None:
    import SimpleITK as sitk

    im = sitk.GetImageFromArray(array)
    im.SetSpacing(tuple(float(s) for s in spacing))   # identity direction = LPS, see the module docstring
    with atomic_path(path) as tmp:
        sitk.WriteImage(im, tmp, True)


def make_ct_dataset(out_folder, n_cases_per_domain: int = 6,
                    domains: Sequence[str] = ("scannerA", "scannerB", "scannerC"),
                    shape: Tuple[int, int, int] = (32, 48, 48), seed: int = 0, test_fraction: float = 0.2,
                    spacing_xy_mm: float = 1.5, styles: Optional[Dict[str, ScannerStyle]] = None,
                    dataset_name: Optional[str] = None, reports: bool = False) -> Path:
    """Write a multi-scanner raw dataset of CT phantoms (``CASE_0000.nii.gz``) to ``out_folder``.

    ``reports=True`` also writes ``reports.jsonl`` (see :mod:`nnunet_causal.synthetic.reports`): each case
    may then lack an organ of :data:`~nnunet_causal.synthetic.reports.MAY_BE_ABSENT` (p = 0.15 each) and
    carry lesions (p = 0.3 per organ of ``MAY_HAVE_LESION``), drawn from a separate random stream, so the
    default dataset (``reports=False``) is unchanged.

    ``shape`` is ``(z, y, x)`` voxels at 3 mm slices (z count scales with each scanner's slice thickness);
    ``round(test_fraction * n)`` cases per domain go to imagesTs/labelsTs. dataset.json has TotalSegmentator
    label names, prompts, ``imaging_family="ct"`` and a domain record per case. Returns the dataset folder.
    """
    domains = list(domains)
    if not domains or len(set(domains)) != len(domains):
        raise DatasetError(f"domains must be distinct names, got {domains}")
    if not 0 <= test_fraction < 1:
        raise DatasetError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(test_fraction * n_cases_per_domain))
    if n_cases_per_domain - n_test < 1:
        raise DatasetError(f"{n_cases_per_domain} case(s) per domain with test_fraction {test_fraction} leave no "
                           f"training case")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise DatasetError(f"shape must be (z, y, x) with every size >= 8 voxels, got {shape}")
    out = Path(out_folder)
    scanner_styles = {d: style_for_scanner(d, styles) for d in domains}
    records: Dict[str, dict] = {}
    n_train = 0
    jobs = [(d, i) for d in domains for i in range(n_cases_per_domain)]
    texts: Dict[str, str] = {}
    facts: Dict[str, dict] = {}
    for domain, i in tqdm(jobs, desc=f"synth ct3d -> {dataset_name or out.name}", disable=len(jobs) < 20):
        style = scanner_styles[domain]
        absent, lesions, fact_rng = (), (), None
        if reports:
            fact_rng = np.random.default_rng([seed, domain_seed(domain), i, 7])
            absent = tuple(o for o in MAY_BE_ABSENT if fact_rng.random() < 0.15)
            lesions = tuple(o for o in MAY_HAVE_LESION if o not in absent and fact_rng.random() < 0.3)
        ph = render_phantom(np.random.default_rng([seed, domain_seed(domain), i]), shape, style, spacing_xy_mm,
                            absent, lesions, fact_rng)
        split = "Ts" if i >= n_cases_per_domain - n_test else "Tr"
        case = f"{domain}_{i:04d}"
        _save_nifti(ph.image, ph.spacing, out / f"images{split}" / f"{case}_0000.nii.gz")
        _save_nifti(ph.label, ph.spacing, out / f"labels{split}" / f"{case}.nii.gz")
        records[case] = {"domain": domain, "site": domain, "scanner": domain, "modality": "CT",
                         "style": describe_ct_style(domain, style), "source": "nnunet_causal synthetic",
                         "split": "train" if split == "Tr" else "test"}
        n_train += split == "Tr"
        if reports:
            facts[case] = _organ_facts(ph.label, shape, absent, lesions)
            texts[case] = write_ct_report(fact_rng, facts[case])
    (out / "imagesTs").mkdir(parents=True, exist_ok=True)
    extra = {}
    if reports:
        extra["reports"] = write_reports_file(out, texts, facts).name
    write_dataset_json(out, {"0": "CT"}, LABELS, n_train, ".nii.gz", prompts=PROMPTS, domains=records,
                       dataset_name=dataset_name or out.name, imaging_family="ct",
                       description=f"synthetic abdominal CT phantoms from scanners {domains}",
                       synthetic={"generator": "ct3d", "seed": seed, "shape_zyx": list(shape),
                                  "orientation": "LPS (identity direction): +x patient left, +y posterior, "
                                                 "+z superior",
                                  "styles": {d: asdict(s) for d, s in scanner_styles.items()}}, **extra)
    logger.info("wrote %d training and %d test volumes to %s", n_train, len(records) - n_train, out)
    return out
