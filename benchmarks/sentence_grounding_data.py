"""Sentences of :mod:`benchmarks.sentence_grounding_benchmark`: shapes, structure phrases, negatives and
the label names of public datasets. Written for the benchmark; expected answers are canonical structure
names (TotalSegmentator class names where the structure exists there, snake_case otherwise)."""
from __future__ import annotations

from typing import Dict, Iterator, List, Tuple

#: sentence shapes: {s} the structure phrase ({S} capitalised), {mod} modality, {reg} body region (adjective),
#: {phase} contrast phase, {seq} MR sequence, {view} plane
SHAPES: List[Tuple[str, str]] = [(f"S{i:02d}", s) for i, s in enumerate([
    "Segment the {s}.",
    "Segmentation of the {s} on contrast-enhanced {reg} {mod}",
    "Outline the {s} in this {mod}",
    "{S} as depicted on {phase} phase imaging",
    "Delineate the {s} in {reg} {mod}",
    "{S} anatomy in whole-body {mod}",
    "Please segment the {s}",
    "Show me the {s}",
    "Can you outline the {s} on this scan?",
    "Mask of the {s}",
    "{S} segmentation",
    "{S} mask, {mod}",
    "Contour the {s} on the {view} {mod} images",
    "Find the {s} in the {reg} {mod} scan",
    "Highlight the {s}.",
    "Where is the {s}?",
    "Label the {s} in this {seq} {mod}",
    "The {s} on {mod}",
    "{mod}: {s}",
    "{reg} {mod}, {s}",
    "Identify the {s} on {mod}",
    "Region of interest: {s}",
    "Automatic segmentation of the {s} from {reg} {mod} scans",
    "I need the {s} segmented on this {mod}",
    "Generate a mask for the {s}",
    "Visualize the {s} in {seq}-weighted {mod}",
    "Extract the {s} from the {mod} volume",
    "{S} on {phase} phase {mod}",
    "Annotate the {s}",
    "Segment the {s} in the {view} plane",
    "The {s}, as seen on {mod}",
    "{S} ({mod})",
    "Volumetric segmentation of the {s}",
    "3D segmentation of the {s} in {mod}",
    "Precisely delineate the {s} on non-contrast {mod}",
    "Target structure: {s}",
    "Delineation of the {s} on {reg} {mod} images",
    "Locate the {s} in the image",
    "Could you please segment the {s}?",
    "{S} in {reg} {mod}",
    "Please provide a segmentation mask of the {s} in this {reg} {mod} study",
    "Draw the boundary of the {s}",
])]

_MODS = {"abdomen": ["CT", "MRI", "CT scan", "MR"], "thorax": ["CT", "chest CT", "CT angiography"],
         "heart": ["cardiac MRI", "CT", "cine MRI"], "head and neck": ["CT", "MRI", "CT scan"],
         "brain": ["MRI", "MR", "brain MRI"], "bones": ["CT", "MRI", "CT scan"],
         "endoscopy": ["colonoscopy", "endoscopy", "video frame"], "families": ["CT", "MRI", "CT scan"]}
_REGS = {"abdomen": ["abdominal", "abdominopelvic", "upper abdominal"], "thorax": ["chest", "thoracic"],
         "heart": ["cardiac", "chest"], "head and neck": ["head and neck", "head-and-neck", "neck"],
         "brain": ["brain", "cranial"], "bones": ["whole-body", "trunk", "pelvic"],
         "endoscopy": ["colonic", "endoscopic"], "families": ["whole-body"]}
_PHASES = ["portal-venous", "arterial", "venous", "delayed", "late arterial"]
_SEQS = ["T1", "T2", "T1-weighted", "FLAIR", "T2w"]
_VIEWS = ["axial", "coronal", "sagittal"]
_FAMILY_CONTEXT = {"abdomen": "abdomen", "thorax": "thorax", "vessels": "abdomen", "heart": "heart",
                   "head and neck": "head and neck", "brain": "brain", "bones": "bones", "spine": "bones",
                   "muscles": "bones", "lesions": "abdomen", "brats": "brain", "endoscopy": "endoscopy",
                   "parts": "abdomen", "short forms": "abdomen", "collectives": "bones",
                   "families": "families", "placed parts": "abdomen"}


def context_for(family: str, i: int) -> Dict[str, str]:
    key = _FAMILY_CONTEXT.get(family, "abdomen")
    mods, regs = _MODS[key], _REGS[key]
    return {"mod": mods[i % len(mods)], "reg": regs[(i // 2) % len(regs)], "phase": _PHASES[i % len(_PHASES)],
            "seq": _SEQS[i % len(_SEQS)], "view": _VIEWS[i % len(_VIEWS)]}


#: (family, base phrase, plural phrase or None, term pattern with {} for the side)
SIDED = [
    ("abdomen", "kidney", "kidneys", "kidney_{}"), ("abdomen", "adrenal gland", "adrenal glands", "adrenal_gland_{}"),
    ("bones", "femur", "femurs", "femur_{}"), ("bones", "humerus", None, "humerus_{}"),
    ("bones", "scapula", "scapulae", "scapula_{}"), ("bones", "clavicle", "clavicles", "clavicula_{}"),
    ("bones", "hip bone", "hip bones", "hip_{}"), ("vessels", "common carotid artery", None, "common_carotid_artery_{}"),
    ("vessels", "subclavian artery", None, "subclavian_artery_{}"), ("vessels", "iliac artery", "iliac arteries",
                                                                      "iliac_artery_{}"),
    ("vessels", "iliac vein", "iliac veins", "iliac_vena_{}"), ("muscles", "gluteus maximus", None,
                                                                "gluteus_maximus_{}"),
    ("muscles", "iliopsoas muscle", "iliopsoas muscles", "iliopsoas_{}"),
    ("head and neck", "parotid gland", "parotid glands", "parotid_gland_{}"),
    ("head and neck", "submandibular gland", "submandibular glands", "submandibular_gland_{}"),
    ("head and neck", "optic nerve", "optic nerves", "optic_nerve_{}"),
    ("head and neck", "lacrimal gland", "lacrimal glands", "lacrimal_gland_{}"),
    ("head and neck", "cochlea", None, "cochlea_{}"),
    ("heart", "atrium", None, "heart_atrium_{}"), ("heart", "ventricle", None, "heart_ventricle_{}"),
]
SIDE_FORMS = {"left": ["left {s}", "{s}, left", "L {s}", "lt {s}", "{s} on the left", "left-sided {s}"],
              "right": ["right {s}", "{s} (right)", "R {s}", "rt {s}", "{s} on the right", "right {s}"]}

UNSIDED = [
    ("abdomen", "liver", ["liver"]), ("abdomen", "spleen", ["spleen"]), ("abdomen", "pancreas", ["pancreas"]),
    ("abdomen", "gallbladder", ["gallbladder"]), ("abdomen", "stomach", ["stomach"]),
    ("abdomen", "esophagus", ["esophagus"]), ("abdomen", "duodenum", ["duodenum"]),
    ("abdomen", "small bowel", ["small_bowel"]), ("abdomen", "colon", ["colon"]),
    ("abdomen", "urinary bladder", ["urinary_bladder"]), ("abdomen", "prostate", ["prostate"]),
    ("thorax", "trachea", ["trachea"]), ("head and neck", "thyroid gland", ["thyroid_gland"]),
    ("heart", "heart", ["heart"]), ("vessels", "aorta", ["aorta"]),
    ("vessels", "inferior vena cava", ["inferior_vena_cava"]), ("vessels", "superior vena cava", ["superior_vena_cava"]),
    ("vessels", "portal vein", ["portal_vein_and_splenic_vein"]), ("vessels", "pulmonary artery", ["pulmonary_artery"]),
    ("vessels", "brachiocephalic trunk", ["brachiocephalic_trunk"]),
    ("vessels", "superior mesenteric artery", ["superior_mesenteric_artery"]),
    ("vessels", "celiac trunk", ["celiac_trunk"]),
    ("bones", "sternum", ["sternum"]), ("bones", "sacrum", ["sacrum"]), ("bones", "skull", ["skull"]),
    ("brain", "brain", ["brain"]), ("spine", "spinal cord", ["spinal_cord"]), ("spine", "spinal canal", ["spinal_canal"]),
    ("head and neck", "brainstem", ["brainstem"]), ("head and neck", "optic chiasm", ["optic_chiasm"]),
    ("head and neck", "mandible", ["mandible"]), ("head and neck", "pituitary gland", ["pituitary_gland"]),
    ("brain", "cerebellum", ["cerebellum"]), ("brain", "thalamus", ["thalamus"]),
    ("heart", "myocardium", ["heart_myocardium"]), ("heart", "left ventricular myocardium", ["heart_myocardium"]),
    ("spine", "intervertebral discs", ["intervertebral_discs"]), ("thorax", "lymph nodes", ["lymph_nodes"]),
    ("thorax", "airway tree", ["lung_airways"]),
    ("lesions", "liver tumour", ["liver_tumor"]), ("lesions", "kidney tumor", ["kidney_tumor"]),
    ("lesions", "pancreatic tumour", ["pancreas_tumor"]), ("lesions", "lung nodules", ["lung_nodules"]),
    ("lesions", "brain metastasis", ["brain_metastasis"]), ("lesions", "renal cyst",
                                                            ["kidney_cyst_left", "kidney_cyst_right"]),
    ("brats", "enhancing tumor", ["enhancing_tumor"]), ("brats", "tumor core", ["tumor_core"]),
    ("brats", "whole tumor", ["whole_tumor"]), ("brats", "peritumoral edema", ["peritumoral_edema"]),
    ("brats", "necrotic tumor core", ["necrotic_tumor_core"]),
    ("endoscopy", "polyp", ["polyp"]), ("endoscopy", "surgical instrument", ["instrument"]),
    ("spine", "L3 vertebra", ["vertebrae_L3"]), ("spine", "fifth lumbar vertebra", ["vertebrae_L5"]),
    ("spine", "T12", ["vertebrae_T12"]), ("spine", "C2 vertebra", ["vertebrae_C2"]),
    ("bones", "left 5th rib", ["rib_left_5"]), ("bones", "right tenth rib", ["rib_right_10"]),
]
_LOBES = ["lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
          "lung_lower_lobe_right"]
_SPINE = (["sacrum", "vertebrae_S1"] + [f"vertebrae_L{i}" for i in range(1, 6)]
          + [f"vertebrae_T{i}" for i in range(1, 13)] + [f"vertebrae_C{i}" for i in range(1, 8)])
_RIBS = [f"rib_{s}_{i}" for s in ("left", "right") for i in range(1, 13)]
COLLECTIVES = [
    ("collectives", "lungs", _LOBES), ("collectives", "both lungs", _LOBES),
    ("collectives", "left lung", _LOBES[:2]), ("collectives", "right lung", _LOBES[2:]),
    ("collectives", "vertebrae", _SPINE), ("collectives", "vertebral structures", _SPINE),
    ("collectives", "vertebral column", _SPINE), ("collectives", "ribs", _RIBS),
    ("collectives", "left ribs", _RIBS[:12]), ("collectives", "lumbar vertebrae", [f"vertebrae_L{i}" for i in range(1, 6)]),
    ("collectives", "cervical spine", [f"vertebrae_C{i}" for i in range(1, 8)]),
    ("collectives", "the kidneys", ["kidney_left", "kidney_right"]), ("collectives", "renal organs",
                                                                      ["kidney_left", "kidney_right"]),
    ("collectives", "adrenals", ["adrenal_gland_left", "adrenal_gland_right"]),
    ("collectives", "parotids", ["parotid_gland_left", "parotid_gland_right"]),
    ("collectives", "optic nerves", ["optic_nerve_left", "optic_nerve_right"]),
]
PARTS = [
    ("parts", "hepatic lobe", ["liver"]), ("parts", "right lobe of the liver", ["liver"]),
    ("parts", "urinary bladder wall", ["urinary_bladder"]), ("parts", "thyroid lobe", ["thyroid_gland"]),
    ("parts", "duodenal bulb", ["duodenum"]), ("parts", "head of the pancreas", ["pancreas"]),
    ("parts", "pancreatic tail", ["pancreas"]), ("parts", "gastric fundus", ["stomach"]),
    ("parts", "gallbladder wall", ["gallbladder"]), ("parts", "cardiac silhouette", ["heart"]),
    ("parts", "portal and splenic veins", ["portal_vein_and_splenic_vein"]),
    ("parts", "right femoral head", ["femur_right"]), ("parts", "left renal cortex", ["kidney_left"]),
    ("parts", "aortic lumen", ["aorta"]), ("parts", "left ventricle cavity", ["heart_ventricle_left"]),
    ("parts", "liver segment 4", ["liver_segment_4"]), ("parts", "body of the stomach", ["stomach"]),
]
_HAN = ["esophagus", "thyroid_gland", "common_carotid_artery_right", "common_carotid_artery_left", "spinal_cord",
        "optic_nerve_left", "optic_nerve_right", "brainstem", "parotid_gland_left", "parotid_gland_right",
        "submandibular_gland_right", "submandibular_gland_left", "mandible", "optic_chiasm", "lacrimal_gland_left",
        "lacrimal_gland_right", "cochlea_left", "cochlea_right", "pituitary_gland", "arytenoid", "buccal_mucosa",
        "oral_cavity", "cricopharyngeal_inlet", "eye_anterior_left", "eye_anterior_right", "eye_posterior_left",
        "eye_posterior_right", "glottis", "supraglottic_larynx", "lips"]
_CHAMBERS = ["heart_atrium_left", "heart_atrium_right", "heart_ventricle_left", "heart_ventricle_right"]
_ABDOMINAL = ["liver", "spleen", "kidney_right", "kidney_left", "gallbladder", "stomach", "pancreas",
              "adrenal_gland_right", "adrenal_gland_left", "duodenum", "small_bowel", "colon"]
#: whole families: a count before a plural, organs at risk, organs / muscles of a region
FAMILIES = [
    ("families", "four heart chambers", _CHAMBERS), ("families", "all four cardiac chambers", _CHAMBERS),
    ("families", "head and neck organs at risk", _HAN), ("families", "organs at risk of the head and neck", _HAN),
    ("families", "head and neck OARs", _HAN), ("families", "head-and-neck organs", _HAN),
    ("families", "abdominal organs", _ABDOMINAL), ("families", "organs of the abdomen", _ABDOMINAL),
    ("families", "pelvic organs", ["urinary_bladder", "prostate", "uterus"]),
    ("families", "organs in the pelvis", ["urinary_bladder", "prostate", "uterus"]),
    ("families", "abdominal arteries", ["aorta", "celiac_trunk", "renal_arteries", "superior_mesenteric_artery"]),
    ("families", "thoracic organs", ["heart", "trachea", "esophagus"] + _LOBES),
    ("families", "abdominal muscles", ["rectus_abdominis_right", "rectus_abdominis_left", "external_oblique_right",
                                       "external_oblique_left", "internal_oblique_right", "internal_oblique_left"]),
    ("families", "muscles of the back", ["autochthon_left", "autochthon_right", "erector_spinae_left",
                                         "erector_spinae_right", "transversospinalis_left", "transversospinalis_right"]),
    ("families", "pharyngeal constrictor muscles", ["superior_pharyngeal_constrictor", "middle_pharyngeal_constrictor",
                                                    "inferior_pharyngeal_constrictor"]),
    ("families", "larynx", ["glottis", "supraglottic_larynx"]),
    ("families", "two kidneys", ["kidney_left", "kidney_right"]),
    ("families", "arteries of the neck", ["common_carotid_artery_right", "common_carotid_artery_left",
                                          "internal_carotid_artery_right", "internal_carotid_artery_left"]),
    ("families", "left neck veins", ["internal_jugular_vein_left"]),
    ("families", "pelvic veins", ["iliac_vena_left", "iliac_vena_right"]),
    ("families", "bones of the leg", ["femur_left", "femur_right", "patella", "tibia", "fibula", "tarsal",
                                      "metatarsal", "phalanges_feet"]),
    ("families", "renal cysts and tumours", ["kidney_cyst_left", "kidney_cyst_right", "kidney_tumor"]),
]
#: parts placed on their whole by a position word, and possessives
PLACED_PARTS = [
    ("placed parts", "lower pole of the right kidney", ["kidney_right"]),
    ("placed parts", "upper pole of the left kidney", ["kidney_left"]),
    ("placed parts", "anterior wall of the stomach", ["stomach"]),
    ("placed parts", "medial wall of the bladder", ["urinary_bladder"]),
    ("placed parts", "posterior segment of the right lung", _LOBES[2:]),
    ("placed parts", "liver's left lobe", ["liver"]), ("placed parts", "spleen's lower pole", ["spleen"]),
    ("placed parts", "aortic arch", ["aorta"]), ("placed parts", "descending aorta", ["aorta"]),
    ("placed parts", "sigmoid colon", ["colon"]),
]
SHORT = [
    ("short forms", "R femur", ["femur_right"]), ("short forms", "lt kidney", ["kidney_left"]),
    ("short forms", "rt adrenal", ["adrenal_gland_right"]), ("short forms", "IVC", ["inferior_vena_cava"]),
    ("short forms", "SVC", ["superior_vena_cava"]), ("short forms", "SMA", ["superior_mesenteric_artery"]),
    ("short forms", "LV", ["heart_ventricle_left"]), ("short forms", "RA", ["heart_atrium_right"]),
    ("short forms", "LA", ["heart_atrium_left"]), ("short forms", "RV", ["heart_ventricle_right"]),
    ("short forms", "CBD", ["common_bile_duct"]), ("short forms", "GB", ["gallbladder"]),
    ("short forms", "bilat kidneys", ["kidney_left", "kidney_right"]), ("short forms", "L parotid",
                                                                         ["parotid_gland_left"]),
]


def positive_phrases() -> Iterator[Tuple[str, str, List[str]]]:
    """(family, structure phrase, expected canonical terms)."""
    for family, base, plural, pattern in SIDED:
        for side, forms in SIDE_FORMS.items():
            for form in dict.fromkeys(forms):
                yield family, form.format(s=base), [pattern.format(side)]
        both = [pattern.format("left"), pattern.format("right")]
        yield family, f"bilateral {plural or base}", both
        if plural:
            yield family, f"both {plural}", both
    yield from UNSIDED
    yield from COLLECTIVES
    yield from PARTS
    yield from SHORT
    yield from FAMILIES
    yield from PLACED_PARTS


NEGATIVE_SHAPES: List[Tuple[str, str]] = [(f"N{i}", s) for i, s in enumerate([
    "Segment the {s}.", "{S} on {reg} {mod}", "Outline the {s} in this {mod}", "Please delineate the {s}",
    "Show me the {s} on {phase} phase imaging", "{S}", "Mask of the {s}", "Where is the {s}?",
])]
#: (kind, phrase, vocabulary key): every sentence must be refused with that vocabulary
NEGATIVES = [(k, p, v) for k, ps, v in [
    ("lesion asked of an organ model", ["liver tumour", "kidney tumor", "renal cyst", "liver lesion", "hepatic mass",
                                        "pancreatic cancer", "liver metastases", "kidney stone", "gallstones",
                                        "splenic infarct"], "organs"),
    ("organ asked of a lesion model", ["liver", "left kidney", "kidneys", "hepatic parenchyma", "renal organs"],
     "lesions"),
    ("look-alikes", ["aortic valve", "hepatic artery", "renal pelvis", "femoral artery", "coronary sinus",
                     "ilium fracture", "splenic artery aneurysm", "bile", "kidney transplant", "cardiac pacemaker",
                     "urinary catheter", "gastric ulcer", "pleural thickening"], "all"),
    ("absent from the model", ["femur", "left humerus", "brainstem", "optic chiasm", "trachea", "heart",
                               "urinary bladder", "ribs", "lumbar vertebrae", "parotid glands"], "btcv"),
    ("absent from the model (BraTS)", ["liver", "spleen", "kidneys", "polyp"], "brats"),
    ("other body regions", ["left thumb nail", "earlobe", "toe nail", "eyebrow", "hair", "elbow skin",
                            "fingertip"], "all"),
    ("nonsense", ["banana bread recipe", "purple dragon", "weather forecast", "asdf qwerty", "quarterly revenue",
                  "the meaning of life", "my car keys", "a red bicycle", "xyzzy", "football score"], "all"),
] for p in ps]

#: (source, name as the dataset's label map or documentation writes it, accepted canonical terms)
COVERAGE = [
    *[("BraTS", n, t) for n, t in [("NCR", ["necrotic_tumor_core"]), ("NCR/NET", ["necrotic_tumor_core"]),
                                     ("ED", ["peritumoral_edema"]), ("ET", ["enhancing_tumor"]),
                                     ("WT", ["whole_tumor"]), ("TC", ["tumor_core"]),
                                     ("necrotic and non-enhancing tumor core", ["necrotic_tumor_core"]),
                                     ("peritumoral edematous tissue", ["peritumoral_edema"]),
                                     ("GD-enhancing tumor", ["enhancing_tumor"]),
                                     ("surrounding non-enhancing FLAIR hyperintensity", ["surrounding_fluid_hyperintensity"]),
                                     ("resection cavity", ["resection_cavity"])]],
    *[("ACDC", n, t) for n, t in [("RV", ["heart_ventricle_right"]), ("MYO", ["heart_myocardium"]),
                                    ("LV", ["heart_ventricle_left"]), ("right ventricle cavity", ["heart_ventricle_right"]),
                                    ("left ventricle cavity", ["heart_ventricle_left"]),
                                    ("myocardium", ["heart_myocardium"])]],
    *[("KiTS", n, t) for n, t in [("kidney", ["kidney_left", "kidney_right"]), ("kidney tumor", ["kidney_tumor"]),
                                    ("kidney cyst", ["kidney_cyst_left", "kidney_cyst_right"]),
                                    ("renal mass", ["kidney_tumor"])]],
    *[("LiTS", n, t) for n, t in [("liver", ["liver"]), ("liver tumor", ["liver_tumor"]),
                                    ("hepatic tumour", ["liver_tumor"])]],
    *[("MSD", n, t) for n, t in [("edema", ["peritumoral_edema"]), ("non-enhancing tumor", ["necrotic_tumor_core"]),
                                   ("enhancing tumour", ["enhancing_tumor"]), ("left atrium", ["heart_atrium_left"]),
                                   ("liver", ["liver"]), ("liver cancer", ["liver_tumor"]),
                                   ("anterior hippocampus", ["hippocampus_anterior"]),
                                   ("posterior hippocampus", ["hippocampus_posterior"]),
                                   ("peripheral zone", ["prostate_peripheral_zone"]),
                                   ("transition zone", ["prostate_transition_zone"]),
                                   ("lung cancer", ["lung_tumor"]), ("pancreas", ["pancreas"]),
                                   ("pancreas cancer", ["pancreas_tumor"]), ("hepatic vessel", ["liver_vessels"]),
                                   ("hepatic vessel cancer", ["liver_tumor"]), ("spleen", ["spleen"]),
                                   ("colon cancer", ["colon_tumor"])]],
    *[("AMOS", n, t) for n, t in [("spleen", ["spleen"]), ("right kidney", ["kidney_right"]),
                                    ("left kidney", ["kidney_left"]), ("gall bladder", ["gallbladder"]),
                                    ("esophagus", ["esophagus"]), ("liver", ["liver"]), ("stomach", ["stomach"]),
                                    ("aorta", ["aorta"]), ("postcava", ["inferior_vena_cava"]),
                                    ("pancreas", ["pancreas"]), ("right adrenal gland", ["adrenal_gland_right"]),
                                    ("left adrenal gland", ["adrenal_gland_left"]), ("duodenum", ["duodenum"]),
                                    ("bladder", ["urinary_bladder"]), ("prostate/uterus", ["prostate_or_uterus"])]],
    *[("HaN-Seg", n, t) for n, t in [
        ("A_Carotid_L", ["common_carotid_artery_left"]), ("A_Carotid_R", ["common_carotid_artery_right"]),
        ("Arytenoid", ["arytenoid"]), ("Bone_Mandible", ["mandible"]), ("Brainstem", ["brainstem"]),
        ("BuccalMucosa", ["buccal_mucosa"]), ("Cavity_Oral", ["oral_cavity"]), ("Cochlea_L", ["cochlea_left"]),
        ("Cochlea_R", ["cochlea_right"]), ("Cricopharyngeus", ["cricopharyngeal_inlet"]),
        ("Esophagus_S", ["esophagus"]), ("Eye_AL", ["eye_anterior_left"]), ("Eye_AR", ["eye_anterior_right"]),
        ("Eye_PL", ["eye_posterior_left"]), ("Eye_PR", ["eye_posterior_right"]),
        ("Glnd_Lacrimal_L", ["lacrimal_gland_left"]), ("Glnd_Lacrimal_R", ["lacrimal_gland_right"]),
        ("Glnd_Submand_L", ["submandibular_gland_left"]), ("Glnd_Submand_R", ["submandibular_gland_right"]),
        ("Glnd_Thyroid", ["thyroid_gland"]), ("Glottis", ["glottis"]), ("Larynx_SG", ["supraglottic_larynx"]),
        ("Lips", ["lips"]), ("OpticChiasm", ["optic_chiasm"]), ("OpticNrv_L", ["optic_nerve_left"]),
        ("OpticNrv_R", ["optic_nerve_right"]), ("Parotid_L", ["parotid_gland_left"]),
        ("Parotid_R", ["parotid_gland_right"]), ("Pituitary", ["pituitary_gland"]),
        ("SpinalCord", ["spinal_cord"])]],
    *[("endoscopy", n, t) for n, t in [("polyp", ["polyp"]), ("instrument", ["instrument"]),
                                         ("surgical tool", ["instrument"]), ("lesion", ["lesion"])]],
]
