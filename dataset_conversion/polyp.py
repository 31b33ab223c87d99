"""Shared converter for 2D colonoscopy polyp datasets (Kvasir-SEG, CVC-ClinicDB, ETIS-LaribPolypDB).

Each source is one site (domain). Frames become RGB PNGs (``CASE_0000.png``, read by nnU-Net's
``NaturalImage2DIO``); masks become PNG label maps with 0 background and 1 polyp.

Masks. Masks are 8-bit grey (or colour, averaged) images; JPEG masks carry compression noise around 0
and 255, so a pixel is polyp when its value is >= 128. Masks stored as 0/1 are taken as they are. A mask
whose non-zero pixels are not near-binary (more than ``MAX_AMBIGUOUS_FRACTION`` of them between 64 and 191,
e.g. a multi-class or soft mask) raises an error naming the file instead of being silently thresholded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dataset_conversion.common import RawDatasetWriter, progress, prompts_for, read_gray, read_rgb
from nnunet_causal.errors import DatasetError

IMAGE_ENDINGS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
LABELS = {"background": 0, "polyp": 1}
CHANNELS = {"0": "R", "1": "G", "2": "B"}
MAX_AMBIGUOUS_FRACTION = 0.05

Pair = Tuple[str, Path, Path]  # (original stem, image, mask)


@dataclass(frozen=True)
class PolypSource:
    """One polyp dataset: its short name (domain), where it comes from and how to find its pairs."""
    name: str
    dataset_name: str
    site: str
    style: str
    reference: str
    find_pairs: Callable[[Path], List[Pair]]


def image_files(folder: Path) -> Dict[str, Path]:
    """``{stem: path}`` of the image files in ``folder`` (hidden files skipped)."""
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in IMAGE_ENDINGS and not p.name.startswith(".")}


def pair_by_stem(images: Path, masks: Path, mask_prefix: str = "") -> List[Pair]:
    """Pair ``images/X.ext`` with ``masks/{mask_prefix}X.ext'`` (or ``masks/X.ext'``); a frame without a mask
    raises :class:`DatasetError` naming both files."""
    imgs, msks = image_files(images), image_files(masks)
    if not imgs:
        raise DatasetError(f"{images} holds no image files ({', '.join(IMAGE_ENDINGS)})")
    pairs = []
    for stem, img in imgs.items():
        mask = msks.get(mask_prefix + stem) or msks.get(stem)
        if mask is None:
            raise DatasetError(f"{img}: no mask {masks / (mask_prefix + stem)}.* for this frame")
        pairs.append((stem, img, mask))
    return pairs


def binary_polyp_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """0/255 (or 0/1) mask -> uint8 {0, 1}; see the module docstring for the checks."""
    if mask.max(initial=0) <= 1:
        return mask.astype(np.uint8)
    if mask.max() > 255 or mask.min() < 0:
        raise DatasetError(f"{path}: unexpected mask values {mask.min()}..{mask.max()} (expected 0..255)")
    nonzero = int(np.count_nonzero(mask > 32))
    ambiguous = int(np.count_nonzero((mask >= 64) & (mask <= 191)))
    if nonzero and ambiguous / nonzero > MAX_AMBIGUOUS_FRACTION:
        values = np.unique(mask[(mask >= 64) & (mask <= 191)])[:8].tolist()
        raise DatasetError(f"{path}: unexpected mask values: {100 * ambiguous / nonzero:.0f}% of the marked pixels "
                           f"are neither near 0 nor near 255 (e.g. {values}); expected a binary polyp mask")
    return (mask >= 128).astype(np.uint8)


def case_id(prefix: str, stem: str) -> str:
    """``{prefix}_{stem}`` with characters other than letters, digits, '-' made '_'."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9-]+', '_', stem).strip('_')}"


def convert_pairs(writer: RawDatasetWriter, source: PolypSource, pairs: Sequence[Pair], domains: dict,
                  split: str = "Tr") -> None:
    """Write every (image, mask) pair of ``source`` and its domain record."""
    for stem, img_path, mask_path in progress(pairs, f"{source.dataset_name} images{split}"):
        case = case_id(source.name, stem)
        if case in domains:
            raise DatasetError(f"{img_path}: case id '{case}' is produced twice (two files with the stem '{stem}')")
        image = read_rgb(img_path)
        mask = binary_polyp_mask(read_gray(mask_path), mask_path)
        if mask.shape != image.shape[:2]:
            raise DatasetError(f"{mask_path}: mask size {mask.shape[::-1]} differs from its frame {img_path} "
                               f"({image.shape[1::-1]})")
        writer.write_png(case, image, channel=0, split=split)
        writer.write_png(case, mask, channel=None, split=split)
        domains[case] = domain_record(source, stem)


def domain_record(source: PolypSource, stem: str) -> dict:
    return {"domain": source.name, "site": source.site, "source": source.name, "modality": "endoscopy",
            "style": source.style, "original_name": stem}


def convert_sources(sources: Sequence[Tuple[PolypSource, Path]], raw_root: Path, dataset_id: int,
                    dataset_name: str, description: str) -> Path:
    """Scan every source, then convert them all into one dataset (one domain per source)."""
    scanned = [(src, src.find_pairs(Path(root))) for src, root in sources]
    domains: dict = {}
    with RawDatasetWriter(raw_root, dataset_id, dataset_name) as w:
        for src, pairs in scanned:
            convert_pairs(w, src, pairs, domains)
        return w.finish(CHANNELS, LABELS, ".png", prompts=prompts_for(["polyp"]), domains=domains,
                        imaging_family="endoscopy", description=description,
                        reference="; ".join(src.reference for src, _ in sources))


# ---------------------------------------------------------------------------------------- the sources
def _kvasir_pairs(root: Path) -> List[Pair]:
    for base in (root, root / "Kvasir-SEG", root / "kvasir-seg"):
        if (base / "images").is_dir() and (base / "masks").is_dir():
            return pair_by_stem(base / "images", base / "masks")
    raise DatasetError(f"Kvasir-SEG layout not found under {root}: expected Kvasir-SEG/images/*.jpg and "
                       f"Kvasir-SEG/masks/*.jpg")


def _cvc_pairs(root: Path) -> List[Pair]:
    bases = (root, root / "PNG", root / "TIF", root / "CVC-ClinicDB", root / "CVC-ClinicDB" / "PNG",
             root / "CVC-ClinicDB" / "TIF")
    for base in bases:
        if (base / "Original").is_dir() and (base / "Ground Truth").is_dir():
            return pair_by_stem(base / "Original", base / "Ground Truth")
    for base in bases:
        if (base / "images").is_dir() and (base / "masks").is_dir():
            return pair_by_stem(base / "images", base / "masks")
    raise DatasetError(f"CVC-ClinicDB layout not found under {root}: expected 'Original/' and 'Ground Truth/' "
                       f"(TIF or PNG release, optionally inside PNG/ or TIF/)")


def _etis_pairs(root: Path) -> List[Pair]:
    for base in (root, root / "ETIS-LaribPolypDB"):
        images = next((base / d for d in ("ETIS-LaribPolypDB", "images", "Original") if (base / d).is_dir()), None)
        masks = next((base / d for d in ("GroundTruth", "Ground Truth", "masks") if (base / d).is_dir()), None)
        if images is not None and masks is not None:
            return pair_by_stem(images, masks, mask_prefix="p")
    raise DatasetError(f"ETIS-LaribPolypDB layout not found under {root}: expected ETIS-LaribPolypDB/N.tif and "
                       f"GroundTruth/pN.tif")


KVASIR = PolypSource(
    "kvasir", "KvasirSEG", "Vestre Viken Health Trust, Norway",
    "white-light colonoscopy frames of varied resolution, Olympus and Pentax endoscopes, Norway",
    "https://datasets.simula.no/kvasir-seg/", _kvasir_pairs)
CVC_CLINICDB = PolypSource(
    "cvc-clinicdb", "CVCClinicDB", "Hospital Clinic, Barcelona, Spain",
    "white-light colonoscopy video frames, 384x288, Hospital Clinic Barcelona",
    "https://polyp.grand-challenge.org/CVCClinicDB/", _cvc_pairs)
ETIS = PolypSource(
    "etis", "ETISLarib", "Hopital Lariboisiere, Paris, France",
    "high-resolution white-light colonoscopy frames (1225x966), small flat polyps, Lariboisiere Paris",
    "https://polyp.grand-challenge.org/EtisLarib/", _etis_pairs)
SOURCES = {s.name: s for s in (KVASIR, CVC_CLINICDB, ETIS)}


# ---------------------------------------------------------------------------------------- entry points
def single_source_converter(source: PolypSource, default_id: int, doc: str):
    """``(convert, add_arguments, run)`` for a converter of one polyp source (used by kvasir.py etc.)."""
    import argparse

    from dataset_conversion.common import add_common_arguments, nnunet_raw_root

    def convert(input_dir: Path, dataset_id: int = default_id, raw_root: Optional[Path] = None) -> Path:
        return convert_sources([(source, Path(input_dir))], nnunet_raw_root(raw_root), dataset_id,
                               source.dataset_name, f"{source.dataset_name} polyp segmentation ({source.site})")

    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.description = doc
        add_common_arguments(p, default_id)

    def run(args: argparse.Namespace) -> Path:
        return convert(args.input, args.dataset_id, args.raw_root)

    return convert, add_arguments, run
