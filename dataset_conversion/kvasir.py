"""Kvasir-SEG (1000 colonoscopy frames with polyp masks, Vestre Viken, Norway) -> nnU-Net raw (2D RGB).

Download: https://datasets.simula.no/kvasir-seg/ (kvasir-seg.zip). Expected layout (``-i`` is the folder
holding ``Kvasir-SEG`` or that folder itself)::

    Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg
    Kvasir-SEG/masks/cju0qkwl35piu0993l0dewei2.jpg     JPEG masks: thresholded at 128 -> {0, 1}

Frames become ``kvasir_<original name>_0000.png``; one domain ``kvasir``.
"""
from dataset_conversion.common import script_main
from dataset_conversion.polyp import KVASIR, single_source_converter

NAME = "kvasir"
DEFAULT_ID = 804
convert, add_arguments, run = single_source_converter(KVASIR, DEFAULT_ID, __doc__)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.kvasir")


if __name__ == "__main__":
    raise SystemExit(main())
