"""Shared pieces of the dataset converters, re-exported from focused modules: checked reading
(:mod:`~dataset_conversion.reading`), staging and atomic publication (:mod:`~dataset_conversion.raw_writer`),
prompts (:mod:`~dataset_conversion.label_prompts`) and the command line (:mod:`~dataset_conversion.script`).

Every converter follows the same contract:

1. **Scan first.** The download is scanned and every case paired with its label before anything is written;
   a missing folder, a case without its label or an unreadable file raises :class:`DatasetError` naming
   the path.
2. **Write into a staging folder** ``$nnUNet_raw/.DatasetXXX_Name.partial-*`` beside the final one. Label
   values and image/label grids are checked per case while writing.
3. **Publish atomically.** Only when every case converted is the staging folder renamed to
   ``$nnUNet_raw/DatasetXXX_Name`` (an existing folder of the same name is replaced, so re-runs are
   idempotent). On any error the staging folder is deleted: nothing half-written is left behind.
   The previous dataset is first moved to a backup ``$nnUNet_raw/.DatasetXXX_Name.old-*/previous`` and
   deleted only once the new one is in place; if the new one cannot be put in place, the previous one is
   moved back. A backup is never deleted by a later run's clean-up (it holds a completed dataset): a run
   that finds one restores it when the dataset folder is missing, else warns and leaves it alone.

Label names are the canonical TotalSegmentator-style names of :mod:`nnunet_causal.text.vocabulary`
(``kidney_left``, ``portal_vein_and_splenic_vein``...), so models trained on different sources share
prompts; dataset.json carries ``prompts`` for each label, a ``domains`` record per case and
``imaging_family``.

Partial labels. A case whose label map covers only some of the dataset's structures (CHAOS CT labels the
liver only; composites mix sources) is listed in dataset.json's ``"partial_labels"``:
``{case_id: [names of the structures labelled in this case]}``. Zero in such a case means "background or
not annotated" for the structures it does not list. The text trainers read this key and mask the loss of
the unlisted structures for that case (nnU-Net's single ignore label cannot say "unlabelled for the
spleen but labelled for the liver" at the same voxel, so it is not used for this). Stock softmax trainers
ignore the key and would learn the unlabelled structures as background; the converters log a warning.
"""
from dataset_conversion.label_prompts import prompts_for  # noqa: F401
from dataset_conversion.raw_writer import (DATASET_FOLDER, RawDatasetWriter, convert_nifti_case,  # noqa: F401
                                           nnunet_raw_root)
from dataset_conversion.reading import (binarize_mask, check_label_values, check_same_grid, find_first_dir,  # noqa: F401
                                        locate_downloads, read_gray, read_rgb, read_sitk, require_dir)
from dataset_conversion.script import add_common_arguments, progress, script_main  # noqa: F401
