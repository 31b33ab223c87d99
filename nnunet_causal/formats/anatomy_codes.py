"""Standard codes for segmented structures, as DICOM-SEG segments and RTSTRUCT ROIs carry them.

A structure's canonical name (``kidney_left``, ``liver``, ``whole_tumor``...) is coded with SNOMED CT
("SCT") concepts taken from pydicom's code dictionary (``pydicom.sr.codedict.codes.SCT``; no code number
is typed here): a *category* (DICOM CID 7150: Anatomical Structure, Morphologically Abnormal Structure,
Physical Object), a *type* (the structure: Liver, Kidney, Neoplasm...) and, for sided structures, a
laterality *modifier* (Left / Right), the way DICOM's segmentation templates and TotalSegmentator's
DICOM-SEG code them. A structure without an entry here gets the generic type "Anatomical Structure" under
the category Anatomical Structure (its name and prompt still say what it is).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

#: base structure name -> (category, attribute of pydicom's ``codes.SCT``)
_ANATOMY = "AnatomicalStructure"
_ABNORMAL = "MorphologicallyAbnormalStructure"
_OBJECT = "PhysicalObject"
STRUCTURE_CODES = {
    "liver": (_ANATOMY, "Liver"), "spleen": (_ANATOMY, "Spleen"), "kidney": (_ANATOMY, "Kidney"),
    "lung": (_ANATOMY, "Lung"), "lung_upper_lobe": (_ANATOMY, "LobeOfLung"),
    "lung_middle_lobe": (_ANATOMY, "LobeOfLung"), "lung_lower_lobe": (_ANATOMY, "LobeOfLung"),
    "heart": (_ANATOMY, "Heart"), "brain": (_ANATOMY, "Brain"), "pancreas": (_ANATOMY, "Pancreas"),
    "stomach": (_ANATOMY, "Stomach"), "gallbladder": (_ANATOMY, "Gallbladder"), "aorta": (_ANATOMY, "Aorta"),
    "esophagus": (_ANATOMY, "Esophagus"), "urinary_bladder": (_ANATOMY, "Bladder"),
    "prostate": (_ANATOMY, "Prostate"), "colon": (_ANATOMY, "Colon"), "duodenum": (_ANATOMY, "Duodenum"),
    "small_bowel": (_ANATOMY, "SmallIntestine"), "adrenal_gland": (_ANATOMY, "AdrenalGland"),
    "inferior_vena_cava": (_ANATOMY, "InferiorVenaCava"), "superior_vena_cava": (_ANATOMY, "SuperiorVenaCava"),
    "portal_vein": (_ANATOMY, "PortalVein"), "pulmonary_vein": (_ANATOMY, "PulmonaryVein"),
    "trachea": (_ANATOMY, "Trachea"), "thyroid_gland": (_ANATOMY, "Thyroid"), "uterus": (_ANATOMY, "Uterus"),
    "rectum": (_ANATOMY, "Rectum"), "femur": (_ANATOMY, "Femur"), "humerus": (_ANATOMY, "Humerus"),
    "hip": (_ANATOMY, "Ilium"), "scapula": (_ANATOMY, "Scapula"), "clavicula": (_ANATOMY, "Clavicle"),
    "sacrum": (_ANATOMY, "Sacrum"), "skull": (_ANATOMY, "Skull"), "sternum": (_ANATOMY, "Sternum"),
    "rib": (_ANATOMY, "Rib"), "vertebrae": (_ANATOMY, "Vertebra"), "spinal_cord": (_ANATOMY, "SpinalCord"),
    "costal_cartilages": (_ANATOMY, "CostalCartilage"), "iliac_artery": (_ANATOMY, "CommonIliacArtery"),
    "iliac_vena": (_ANATOMY, "IliacVein"), "brachiocephalic_trunk": (_ANATOMY, "BrachiocephalicTrunk"),
    "brachiocephalic_vein": (_ANATOMY, "BrachiocephalicVein"),
    "common_carotid_artery": (_ANATOMY, "CommonCarotidArtery"), "subclavian_artery": (_ANATOMY, "SubclavianArtery"),
    "cerebellum": (_ANATOMY, "Cerebellum"), "hippocampus": (_ANATOMY, "Hippocampus"),
    "amygdala": (_ANATOMY, "Amygdala"), "thalamus": (_ANATOMY, "Thalamus"), "putamen": (_ANATOMY, "Putamen"),
    "caudate": (_ANATOMY, "CaudateNucleus"), "brainstem": (_ANATOMY, "BrainStem"), "muscle": (_ANATOMY, "Muscle"),
    "bone": (_ANATOMY, "Bone"),
    "polyp": (_ABNORMAL, "PolypOfColon"), "lesion": (_ABNORMAL, "Lesion"), "tumor": (_ABNORMAL, "Neoplasm"),
    "whole_tumor": (_ABNORMAL, "Neoplasm"), "tumor_core": (_ABNORMAL, "Neoplasm"),
    "enhancing_tumor": (_ABNORMAL, "Neoplasm"), "necrotic_tumor_core": (_ABNORMAL, "Necrosis"),
    "peritumoral_edema": (_ABNORMAL, "Edema"), "edema": (_ABNORMAL, "Edema"), "kidney_cyst": (_ABNORMAL, "Cyst"),
    "cyst": (_ABNORMAL, "Cyst"), "nodule": (_ABNORMAL, "Nodule"), "mass": (_ABNORMAL, "Mass"),
    "hemorrhage": (_ABNORMAL, "Hemorrhage"), "instrument": (_OBJECT, "InstrumentDevice"),
}
_SIDES = {"left": "Left", "right": "Right"}
_NUMBERED = re.compile(r"^vertebrae_[ctls]\d+$")


@dataclass(frozen=True)
class StructureCode:
    """How one structure is coded: category, type and laterality modifier (pydicom ``Code`` objects)."""
    category: object
    type: object
    modifier: Optional[object]
    generic: bool  # True: no specific code, the generic "Anatomical Structure" type was used


def _base_and_side(name: str):
    tokens = name.lower().split("_")
    side = next((t for t in tokens if t in _SIDES), None)
    base = "_".join(t for t in tokens if t not in _SIDES and not t.isdigit())
    if _NUMBERED.match(base):  # vertebrae_c1 ... vertebrae_s1
        base = "vertebrae"
    return base, side


def structure_code(names: Sequence[str]) -> StructureCode:
    """The code of the structure(s) one prompt segments.

    ``names``: canonical structure names of one prompt (one name usually; a group prompt such as "renal
    organs" resolves to several). Several names share a code when they differ only by side (both kidneys:
    Kidney without modifier); otherwise, and for names without an entry, the generic code is used.
    """
    from pydicom.sr.codedict import codes

    parsed = [_base_and_side(n) for n in names if n]
    entries = {STRUCTURE_CODES.get(base) for base, _ in parsed}
    if not parsed or len(entries) != 1 or None in entries:
        return StructureCode(codes.cid7150.AnatomicalStructure, codes.cid7150.AnatomicalStructure, None, True)
    category, attr = entries.pop()
    sides = {side for _, side in parsed}
    modifier = getattr(codes.SCT, _SIDES[sides.pop()]) if len(sides) == 1 and None not in sides else None
    return StructureCode(getattr(codes.cid7150, category), getattr(codes.SCT, attr), modifier, False)
