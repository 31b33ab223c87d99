"""CVC-ClinicDB (612 colonoscopy video frames with polyp masks, Hospital Clinic Barcelona) -> nnU-Net raw.

Download: https://polyp.grand-challenge.org/CVCClinicDB/ (or its mirrors). Expected layout (``-i`` is the
unpacked folder; the TIF release and the PNG re-release both work, optionally under ``PNG/`` or ``TIF/``)::

    Original/1.tif        Ground Truth/1.tif          (or .png)

Frames become ``cvc-clinicdb_<n>_0000.png``; masks are thresholded at 128; one domain ``cvc-clinicdb``.
"""
from dataset_conversion.common import script_main
from dataset_conversion.polyp import CVC_CLINICDB, single_source_converter

NAME = "cvc-clinicdb"
DEFAULT_ID = 805
convert, add_arguments, run = single_source_converter(CVC_CLINICDB, DEFAULT_ID, __doc__)


def main(argv=None) -> int:
    return script_main(add_arguments, run, argv, prog="python -m dataset_conversion.cvc_clinicdb")


if __name__ == "__main__":
    raise SystemExit(main())
