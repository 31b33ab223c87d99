"""Radiology-style reports for the synthetic phantoms, written from organ facts that the generator knows.

MGCL (OpenVocabCT, seed 002, section III.B) pretrains the text encoder on image-report pairs. The phantoms
have no reports of their own, so one is written per case from its *facts*: which structures are present,
how large each one is compared with the generator's reference shape (a size word), which side a paired
organ is on, and the lesions painted into the image. Wording varies on purpose (several templates per
fact, several names per organ), so that a text encoder cannot learn one sentence per organ.

:data:`REPORT_NAMES` are the only organ names the reports use. Evaluation prompts that must be *held out of
training* (synonyms and paraphrases such as "hepar" or "kidney on the left side") come from
:data:`HELD_OUT_NAMES`, which no report contains -- the benchmark relies on that.

Reports are written to ``reports.jsonl`` in the dataset folder, one ``{"image": CASE, "report": TEXT,
"facts": {...}}`` per line (the format ``nnunet_causal pretrain-text`` reads), and dataset.json gets
``"reports": "reports.jsonl"``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from nnunet_causal.files import atomic_path

REPORTS_FILE = "reports.jsonl"

#: organ names used in the written reports (training wording)
REPORT_NAMES: Dict[str, List[str]] = {
    "liver": ["liver", "hepatic parenchyma", "liver parenchyma"],
    "spleen": ["spleen", "splenic tissue"],
    "stomach": ["stomach", "gastric organ"],
    "kidney_right": ["right kidney", "right renal organ"],
    "kidney_left": ["left kidney", "left renal organ"],
    "pancreas": ["pancreas", "pancreatic tissue"],
    "gallbladder": ["gallbladder", "gall bladder"],
    "aorta": ["aorta", "abdominal aorta"],
    "polyp": ["polyp", "colorectal polyp", "polypoid lesion"],
}
#: synonyms and paraphrases that no report uses (for held-out evaluation; all known to the resolver)
HELD_OUT_NAMES: Dict[str, List[str]] = {
    "liver": ["hepar", "hepatic tissue"],
    "spleen": ["lien"],
    "stomach": ["gaster", "ventriculus"],
    "kidney_right": ["kidney on the right side", "right nephros"],
    "kidney_left": ["kidney on the left side", "left nephros"],
    "pancreas": ["pancreatic gland"],
    "gallbladder": ["cholecyst", "biliary vesicle"],
    "aorta": ["main artery"],
    "polyp": ["adenoma", "colonic polyp"],
}
SIZE_WORDS = {"small": ["is small", "appears small", "is reduced in size"],
              "normal": ["is normal in size", "is of normal size", "has a normal size"],
              "large": ["is enlarged", "appears enlarged", "is increased in size"]}
ABSENT_TEMPLATES = ["No {name} is seen.", "The {name} is surgically absent.", "There is no {name}."]
LESION_TEMPLATES = ["A hypodense lesion is seen in the {name}.", "The {name} contains a focal lesion.",
                    "There is a hypodense focal lesion within the {name}."]
NO_LESION_TEMPLATES = ["The {name} {size}, without focal lesion.", "The {name} {size} and unremarkable.",
                       "{Name} {size}; no focal abnormality."]
CLOSING = ["No free fluid.", "No lymphadenopathy.", "Bones are unremarkable.", "No ascites."]
#: organs a phantom may lack (surgery) and organs that may carry a lesion, when reports are generated
MAY_BE_ABSENT = ("gallbladder", "spleen", "kidney_left", "kidney_right")
MAY_HAVE_LESION = ("liver", "kidney_left", "kidney_right", "spleen")


def size_word(ratio: float) -> str:
    """``small`` below 0.8 times the reference volume, ``large`` above 1.25, else ``normal``."""
    return "small" if ratio < 0.8 else ("large" if ratio > 1.25 else "normal")


def write_ct_report(rng: np.random.Generator, facts: Mapping[str, dict]) -> str:
    """One report from ``facts = {organ: {"present": bool, "size": word, "lesion": bool}}`` (organ order kept)."""
    sentences = []
    for organ, f in facts.items():
        name = str(rng.choice(REPORT_NAMES[organ]))
        if not f["present"]:
            sentences.append(str(rng.choice(ABSENT_TEMPLATES)).format(name=name))
            continue
        size = str(rng.choice(SIZE_WORDS[f["size"]]))
        if f.get("lesion"):
            sentences.append(f"The {name} {size}.")
            sentences.append(str(rng.choice(LESION_TEMPLATES)).format(name=name))
        else:
            sentences.append(str(rng.choice(NO_LESION_TEMPLATES)).format(name=name, Name=name.capitalize(),
                                                                        size=size))
    order = rng.permutation(len(sentences))  # findings are not always listed in the same order
    text = " ".join(sentences[i] for i in order)
    return f"{text} {rng.choice(CLOSING)}"


def write_endoscopy_report(rng: np.random.Generator, polyps: Sequence[dict]) -> str:
    """One report from the frame's polyps (each ``{"size": word, "position": words}``)."""
    if not polyps:
        return str(rng.choice(["No polyp is seen in this frame.", "There is no polyp; the mucosa is normal.",
                               "No polypoid lesion is identified."]))
    parts = []
    for p in polyps:
        name = str(rng.choice(REPORT_NAMES["polyp"]))
        size = {"small": "small", "normal": "medium-sized", "large": "large"}[p["size"]]
        parts.append(str(rng.choice(["A {size} {name} in the {pos} of the frame.",
                                     "There is a {size} {name} at the {pos}.",
                                     "The {pos} shows a {size} {name}."])).format(size=size, name=name,
                                                                                    pos=p["position"]))
    return " ".join(parts) + " " + str(rng.choice(["Mucosa otherwise normal.", "No bleeding."]))


def frame_position(mask: np.ndarray) -> str:
    """Words for where a 2D mask's centroid lies: ``upper left part`` ... ``centre``."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    cy, cx = ys.mean() / h, xs.mean() / w
    vert = "upper" if cy < 0.4 else ("lower" if cy > 0.6 else "")
    horiz = "left" if cx < 0.4 else ("right" if cx > 0.6 else "")
    words = " ".join(w for w in (vert, horiz) if w)
    return f"{words} part" if words else "centre"


def write_reports_file(folder: Path, reports: Mapping[str, str], facts: Optional[Mapping[str, dict]] = None) -> Path:
    """``folder/reports.jsonl`` (atomically): one ``{"image", "report", "facts"}`` line per case."""
    path = Path(folder) / REPORTS_FILE
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for case, text in reports.items():
                row = {"image": case, "report": text}
                if facts is not None:
                    row["facts"] = facts.get(case, {})
                f.write(json.dumps(row) + "\n")
    return path
