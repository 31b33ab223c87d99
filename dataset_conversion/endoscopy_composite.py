"""Endoscopy composite: Kvasir-SEG + CVC-ClinicDB + ETIS-LaribPolypDB in one 2D dataset, one site per source.

For leave-one-site-out training (MCDRL's protocol: train on all sites but one): after conversion,
``nnunet_causal make-splits -d ID --leave-one-domain-out`` writes one fold per site.

``-i`` is a folder holding the unpacked downloads, found by folder name (case-insensitive)::

    RAW/Kvasir-SEG/...            (name contains "kvasir")
    RAW/CVC-ClinicDB/...          (name contains "clinicdb" or "cvc")
    RAW/ETIS-LaribPolypDB/...     (name contains "etis")

or give each source explicitly with ``--kvasir``, ``--cvc-clinicdb``, ``--etis``. Each source's own layout is
described in ``nnunet_causal convert kvasir|cvc-clinicdb|etis --help``. At least two sources are needed.
Case ids are ``<site>_<original name>``; domain records name the site.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dataset_conversion.common import add_common_arguments, locate_downloads, nnunet_raw_root, script_main
from dataset_conversion.polyp import SOURCES, PolypSource, convert_sources

logger = logging.getLogger(__name__)

NAME = "endoscopy-composite"
DEFAULT_ID = 807
DATASET_NAME = "EndoscopyComposite"
FOLDER_HINTS = {"kvasir": ("kvasir",), "cvc-clinicdb": ("clinicdb", "cvc"), "etis": ("etis",)}


def locate_sources(input_dir: Optional[Path], explicit: Dict[str, Optional[Path]]) -> List[Tuple[PolypSource, Path]]:
    """``[(source, folder)]`` for every source given explicitly or found under ``input_dir`` by name."""
    found = locate_downloads(input_dir, explicit, FOLDER_HINTS, "endoscopy")
    return [(SOURCES[n], folder) for n, folder in found.items()]


def convert(input_dir: Optional[Path], dataset_id: int = DEFAULT_ID, raw_root: Optional[Path] = None,
            kvasir: Optional[Path] = None, cvc_clinicdb: Optional[Path] = None, etis: Optional[Path] = None) -> Path:
    """Convert every located source into ``$nnUNet_raw/DatasetXXX_EndoscopyComposite``."""
    sources = locate_sources(input_dir, {"kvasir": kvasir, "cvc-clinicdb": cvc_clinicdb, "etis": etis})
    return convert_sources(sources, nnunet_raw_root(raw_root), dataset_id, DATASET_NAME,
                           "colonoscopy polyp frames from " + ", ".join(s.name for s, _ in sources) +
                           " (one site per source, for leave-one-site-out training)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    add_common_arguments(p, DEFAULT_ID, composite=True)
    p.add_argument("--kvasir", type=Path, help="the unpacked Kvasir-SEG download")
    p.add_argument("--cvc-clinicdb", type=Path, help="the unpacked CVC-ClinicDB download")
    p.add_argument("--etis", type=Path, help="the unpacked ETIS-LaribPolypDB download")


def run(args: argparse.Namespace) -> Path:
    return convert(args.input, args.dataset_id, args.raw_root, args.kvasir, args.cvc_clinicdb, args.etis)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.endoscopy_composite")


if __name__ == "__main__":
    raise SystemExit(main())
