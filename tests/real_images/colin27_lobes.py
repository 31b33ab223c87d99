"""A one-case nnU-Net raw dataset of real anatomy: the Colin27 T1 brain with AAL regions merged into lobes.

AAL's region codes (third column of ``aal.nii.txt``) carry the lobe in their thousands digit: 2xxx frontal,
8xxx temporal, 9xxx cerebellum (hemispheres and vermis). :data:`LOBES` names the merged structures with the
knowledge base's terms, so the label names are structures the package's resolver knows
(``nnunet_causal resolve "frontal lobe"``) and that its knowledge base places in the head.

The raw case is Colin27 as shipped (181 x 217 x 181 voxels of 1 mm) with the merged atlas on the same grid;
the coarse grid training runs on is nnU-Net's own target spacing (``nnUNetv2_plan_and_preprocess
-overwrite_target_spacing``), so training and prediction see the same preprocessing of the same file and a
prediction comes back on Colin27's own grid. ``splits_final.json`` in the raw folder (copied by nnU-Net's
planner) trains and validates fold 0 on the one case.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Tuple

from nnunet_causal.data.aal import aal_lobe_lookup
from tests.real_images.real_data import AAL, AAL_NAMES, COLIN27

CASE = "colin27"
#: label value i + 1 -> (knowledge-base term, prompt, AAL thousands digit) of ``LOBES[i]``
LOBES: Tuple[Tuple[str, str, int], ...] = (
    ("frontal_lobe", "frontal lobe", 2),
    ("temporal_lobe", "temporal lobe", 8),
    ("cerebellum", "cerebellum", 9),
)
#: stock nnU-Net's mirroring (all three axes, in training and at test time) turns "frontal" into "occipital"
#: and "superior" into "inferior": position is what tells these lobes apart, so the short training here uses
#: nnU-Net's own ``nnUNetTrainerNoMirroring`` with the text trainer's two-epoch schedule (500 steps; after 250
#: the temporal lobe or the cerebellum was still below 0.65 Dice in some runs)
SCHEDULE = "2epochs"
TRAINER = f"nnUNetTrainerTextNoMirroring_{SCHEDULE}"
TRAINER_MODULE = f'''
from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \\
    nnUNetTrainerNoMirroring

from nnunet_causal.training.catalogue import TRAINERS


class {TRAINER}(TRAINERS["nnUNetTrainerText_{SCHEDULE}"], nnUNetTrainerNoMirroring):
    """nnUNetTrainerText_{SCHEDULE} without mirroring (augmentation and test time)."""
'''


def write_lobes_dataset(raw_root: Path, dataset_id: int) -> Path:
    """``raw_root/DatasetXXX_Colin27Lobes``: Colin27 (``imagesTr/colin27_0000.nii.gz``, the file itself), the
    lobes on its grid (``labelsTr/colin27.nii.gz``), dataset.json with one prompt per lobe, a domain record and
    the MRI imaging family, and a one-fold split. Returns the folder."""
    import SimpleITK as sitk

    from nnunet_causal.data.raw_dataset import write_dataset_json

    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_Colin27Lobes"
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(COLIN27, folder / "imagesTr" / f"{CASE}_0000.nii.gz")
    atlas = sitk.ReadImage(str(AAL))
    lookup = aal_lobe_lookup(AAL_NAMES, [digit for _term, _prompt, digit in LOBES])
    labels = sitk.GetImageFromArray(lookup[sitk.GetArrayFromImage(atlas)])
    labels.CopyInformation(atlas)
    sitk.WriteImage(labels, str(folder / "labelsTr" / f"{CASE}.nii.gz"))
    write_dataset_json(folder, {"0": "T1"},
                       {"background": 0, **{term: i for i, (term, _p, _d) in enumerate(LOBES, start=1)}}, 1,
                       ".nii.gz", prompts={term: [prompt] for term, prompt, _d in LOBES},
                       domains={CASE: {"domain": "colin27", "modality": "MRI", "style": "T1-weighted MRI"}},
                       imaging_family="mri", dataset_name="Colin27Lobes")
    (folder / "splits_final.json").write_text(json.dumps([{"train": [CASE], "val": [CASE]}]))
    return folder


def narrow_plans(plans_file: Path, patch_size: Tuple[int, int, int], batch_size: int = 2) -> dict:
    """Halve every width of the plans' ``3d_fullres`` U-Net (at least 8), set its patch and batch size, in
    place (the data identifier stays: the preprocessed data is the same). Returns the configuration."""
    plans = json.loads(Path(plans_file).read_text())
    configuration = plans["configurations"]["3d_fullres"]
    arch = configuration["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [max(8, f // 2) for f in arch["features_per_stage"]]
    configuration["batch_size"] = batch_size
    configuration["patch_size"] = list(patch_size)
    Path(plans_file).write_text(json.dumps(plans, indent=1))
    return configuration
