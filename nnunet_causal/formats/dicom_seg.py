"""DICOM-SEG (binary Segmentation IOD) of one case's prompts, written with highdicom.

One segment per prompt, numbered by the prompt's label value (1..K, prompt order). Segment Label: the
canonical structure name; Segment Description: the prompt text; coded with
:func:`~nnunet_causal.formats.anatomy_codes.structure_code` (SNOMED CT category, type, laterality);
algorithm type AUTOMATIC, algorithm family Artificial Intelligence. Segments may overlap (one binary
mask per prompt). The object references the source series (every source image; highdicom fills the
Referenced Series and Derivation Image sequences) and shares its study, patient and frame of reference.

Zero-voxel prompts. A prompt that segmented nothing keeps its segment, with no frame: segment numbers
stay equal to the label values and the prompt list, and a reader sees "asked for, found absent" instead
of a missing structure it might take for a failed run. When every segment is empty one empty frame is
stored (the IOD needs at least one frame).

Needs highdicom (``pip install 'nnunet_causal[dicom]'``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from nnunet_causal.files import atomic_path
from nnunet_causal.errors import DatasetError, NnunetCausalError
from nnunet_causal.formats.anatomy_codes import structure_code
from nnunet_causal.formats.segments import (MANUFACTURER, SEGMENT_COLOURS, PromptMask, add_edit_history, check_masks,
                                            dicom_text, software_version)

logger = logging.getLogger(__name__)

DICOM_EXTRA = "pip install 'nnunet_causal[dicom]'"


def require_highdicom():
    """Import highdicom or raise an error that names the extra to install."""
    try:
        import highdicom
    except ImportError as e:
        raise NnunetCausalError(f"writing DICOM-SEG needs highdicom: {DICOM_EXTRA}") from e
    return highdicom


def segment_descriptions(masks: Sequence[PromptMask]):
    """highdicom ``SegmentDescription`` per prompt (numbers = label values, renumbered 1..K if needed)."""
    hd = require_highdicom()
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="nnunet_causal text-prompted segmentation",
                                                   family=codes.cid7162.ArtificialIntelligence,
                                                   version=software_version())
    out = []
    for number, m in enumerate(masks, start=1):
        code = structure_code(m.structures or [m.prompt])
        r, g, b = SEGMENT_COLOURS[(number - 1) % len(SEGMENT_COLOURS)]
        desc = hd.seg.SegmentDescription(
            segment_number=number, segment_label=dicom_text(m.name), segmented_property_category=code.category,
            segmented_property_type=code.type, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=dicom_text(m.prompt),
            display_color=hd.color.CIELabColor.from_rgb(r, g, b))
        desc.SegmentDescription = dicom_text(m.prompt)
        if code.modifier is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept.from_code(code.modifier)]
        out.append(desc)
    return out


def write_dicom_seg(masks: Sequence[PromptMask], source: Sequence, path: Path, *,
                    series_description: str = "nnunet_causal segmentation", series_number: int = 900,
                    content_description: Optional[str] = None, edit_history: Optional[dict] = None) -> Path:
    """Write the prompts' masks as one DICOM-SEG file referencing ``source`` (the series' datasets in slice
    order, as :func:`~nnunet_causal.formats.dicom_series.read_series_headers` returns them). An edited result's
    ``edit_history`` goes into the private block of :func:`~nnunet_causal.formats.segments.add_edit_history`."""
    hd = require_highdicom()

    path = Path(path)
    check_masks(masks, source, str(path))
    if not masks:
        raise DatasetError(f"{path}: no prompts to write")
    values = [m.label_value for m in masks]
    if values != list(range(1, len(masks) + 1)):
        logger.info("%s: segments numbered 1..%d in prompt order (label values %s)", path, len(masks), values)
    pixels = np.stack([m.mask.astype(bool) for m in masks], axis=-1)
    empty = [m.prompt for m in masks if not m.mask.any()]
    if empty:
        logger.info("%s: prompt(s) %s segmented no voxel: their segments are written empty", path, empty)
    try:
        seg = hd.seg.Segmentation(
            source_images=list(source), pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segment_descriptions(masks), series_instance_uid=hd.UID(),
            series_number=int(series_number), sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer=MANUFACTURER, manufacturer_model_name="nnunet_causal", software_versions=software_version(),
            device_serial_number="0", series_description=dicom_text(series_description),
            content_description=dicom_text(content_description or series_description), content_label="SEGMENTATION",
            omit_empty_frames=bool(pixels.any()))
    except (ValueError, TypeError, AttributeError) as e:
        raise DatasetError(f"{path}: cannot build the DICOM-SEG from the source series: {e}") from e
    if edit_history is not None:
        add_edit_history(seg, edit_history)
    with atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path


def read_dicom_seg(path: Path, source: Sequence) -> dict:
    """``{segment number: (label, description, mask (z, y, x) bool)}`` of a DICOM-SEG on ``source``."""
    hd = require_highdicom()

    seg = hd.seg.segread(str(path))
    uids = [str(ds.SOPInstanceUID) for ds in source]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, ignore_spatial_locations=True,
                                               assert_missing_frames_are_empty=True)
    out = {}
    for i, number in enumerate(seg.get_segment_numbers()):
        d = seg.get_segment_description(number)
        out[int(number)] = (str(d.segment_label), str(getattr(d, "SegmentDescription", "")), pixels[..., i] > 0)
    return out
