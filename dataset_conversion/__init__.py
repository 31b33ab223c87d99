"""Converters from public datasets' official layouts to nnU-Net raw format with prompts and domain records.

Each module converts one dataset and runs as a script (``python -m dataset_conversion.btcv -i ...``); the
``nnunet_causal convert NAME`` command (:mod:`dataset_conversion.cli`) exposes all of them.
"""

#: command name -> module (each module has NAME, DEFAULT_ID, add_arguments, run, convert, main)
CONVERTER_MODULES = {
    "btcv": "dataset_conversion.btcv",
    "amos": "dataset_conversion.amos",
    "chaos": "dataset_conversion.chaos",
    "brats": "dataset_conversion.brats",
    "kvasir": "dataset_conversion.kvasir",
    "cvc-clinicdb": "dataset_conversion.cvc_clinicdb",
    "etis": "dataset_conversion.etis",
    "endoscopy-composite": "dataset_conversion.endoscopy_composite",
    "abdomen-composite": "dataset_conversion.abdomen_composite",
    "folder": "dataset_conversion.folder",
}
