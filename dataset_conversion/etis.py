"""ETIS-LaribPolypDB (196 high-resolution colonoscopy frames, Lariboisiere Paris) -> nnU-Net raw (2D RGB).

Download: https://polyp.grand-challenge.org/EtisLarib/. Expected layout (``-i`` is the unpacked folder)::

    ETIS-LaribPolypDB/1.tif      GroundTruth/p1.tif      (masks carry a 'p' prefix)

The PraNet re-release (``images/1.png``, ``masks/1.png``) works too. Frames become ``etis_<n>_0000.png``;
masks are thresholded at 128; one domain ``etis``.
"""
from dataset_conversion.common import script_main
from dataset_conversion.polyp import ETIS, single_source_converter

NAME = "etis"
DEFAULT_ID = 806
convert, add_arguments, run = single_source_converter(ETIS, DEFAULT_ID, __doc__)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.etis")


if __name__ == "__main__":
    raise SystemExit(main())
