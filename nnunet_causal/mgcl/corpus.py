"""The text side of MGCL per training case: its report and the organ-level captions of each structure.

Sources, per case of nnU-Net's preprocessed training set:

* a report (from ``--reports FILE`` or dataset.json ``"reports"``) -> captions by an extractor (the offline
  :class:`RuleExtractor` or :class:`~nnunet_causal.mgcl.llm.LLMExtractor`);
* no report -> captions from the labels (:mod:`nnunet_causal.mgcl.label_captions`); the "report" used by
  the CLIP term is then the captions joined.

Captions are cached per case and extractor: ``<nnUNet_preprocessed>/<dataset>/mgcl_captions/<sha1 of the
extractor id, 12 hex>/<case>.json`` holding the sha1 of the report the captions came from; a changed report
is extracted again. Positive captions of a structure that the case's mask does not contain (the report and
the mask disagree) are dropped and counted; negated captions are kept in the cache but never paired.
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from nnunet_causal.files import write_json_atomic
from nnunet_causal.errors import DatasetError
from nnunet_causal.mgcl.captions import Caption, extract_captions
from nnunet_causal.mgcl.label_captions import label_captions, structure_volumes
from nnunet_causal.text.vocabulary import Vocabulary

logger = logging.getLogger(__name__)
CACHE_FOLDER = "mgcl_captions"


class RuleExtractor:
    """The offline default: sentence split + grounding (:func:`~nnunet_causal.mgcl.captions.extract_captions`)."""

    id = "rules:v1"

    def __init__(self, vocabulary: Vocabulary):
        self.vocabulary = vocabulary
        self.dropped: Dict[str, int] = {}

    def extract(self, report: str) -> List[Caption]:
        return extract_captions(report, self.vocabulary)


@dataclass
class CaseText:
    """``captions[label]``: positive caption texts of a structure present in the case's mask."""
    case: str
    report: str
    source: str
    captions: Dict[str, List[str]] = field(default_factory=dict)
    negated: Dict[str, List[str]] = field(default_factory=dict)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def present_structures(data_folder: Path, case: str, structures: Mapping[str, int]) -> List[str]:
    """Structures whose label occurs in the case's preprocessed mask (nnU-Net's ``class_locations``)."""
    pkl = data_folder / f"{case}.pkl"
    if not pkl.is_file():
        raise DatasetError(f"case {case} has no mask in {data_folder} (no {pkl.name}): it is not a preprocessed "
                           f"training case; run nnUNetv2_plan_and_preprocess with its label in labelsTr")
    with open(pkl, "rb") as f:
        props = pickle.load(f)
    locations = props.get("class_locations") or {}
    return [n for n, v in structures.items() if len(locations.get(v, locations.get(int(v), ()))) > 0]


def _load_seg(data_folder: Path, case: str) -> np.ndarray:
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset = infer_dataset_class(str(data_folder))(str(data_folder), [case])
    seg = dataset.load_case(case)[1]
    return np.asarray(seg)


def build_corpus(data_folder: Path, cases: List[str], structures: Mapping[str, int], names: Mapping[str, str],
                 reports: Optional[Mapping[str, str]], extractor, transpose_backward=(0, 1, 2),
                 cache_root: Optional[Path] = None) -> tuple:
    """``({case: CaseText}, counts)`` for ``cases`` (see the module docstring); ``counts`` holds the numbers of
    report / label cases, captions and dropped captions (for the log)."""
    data_folder = Path(data_folder)
    cache_root = Path(cache_root) if cache_root else data_folder.parent / CACHE_FOLDER
    counts = {"report_cases": 0, "label_cases": 0, "captions": 0, "contradict_mask": 0}
    out: Dict[str, CaseText] = {}
    label_cases = [c for c in cases if not reports or c not in reports]
    medians = {}
    if label_cases:
        segs = {c: _load_seg(data_folder, c) for c in label_cases}
        medians = structure_volumes(segs, structures)
    for case in cases:
        present = set(present_structures(data_folder, case, structures))
        report = (reports or {}).get(case)
        if report is not None:
            captions = _cached(cache_root, extractor, case, report, lambda: extractor.extract(report))
            counts["report_cases"] += 1
            source = "report"
        else:
            seg = segs[case]
            fingerprint = hashlib.sha1(np.ascontiguousarray(seg).tobytes()).hexdigest() + json.dumps(medians)
            captions = _cached(cache_root, _LABELS, case, fingerprint,
                               lambda: label_captions(seg, structures, names, medians, transpose_backward))
            counts["label_cases"] += 1
            source = "labels"
        text = CaseText(case, report or " ".join(c.text for c in captions if not c.negated) or "no findings", source)
        for c in captions:
            if c.negated:
                text.negated.setdefault(c.structure, []).append(c.text)
            elif c.structure in present:
                text.captions.setdefault(c.structure, []).append(c.text)
                counts["captions"] += 1
            else:
                counts["contradict_mask"] += 1
        out[case] = text
    if counts["contradict_mask"]:
        logger.warning("%d caption(s) describe a structure that the case's mask does not contain: not used",
                       counts["contradict_mask"])
    for reason, n in (getattr(extractor, "dropped", None) or {}).items():
        logger.warning("%d caption(s) dropped by the extractor's filter: %s", n, reason)
    return out, counts


class _LabelSource:
    id = "labels:v1"


_LABELS = _LabelSource()


def _cached(cache_root: Path, extractor, case: str, report: str, compute) -> List[Caption]:
    folder = cache_root / _sha1(extractor.id)[:12]
    path = folder / f"{case}.json"
    key = _sha1(report)
    if path.is_file():
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj.get("report_sha1") == key and obj.get("extractor") == extractor.id:
                return [Caption(**c) for c in obj["captions"]]
        except (OSError, ValueError, TypeError, KeyError):
            logger.warning("caption cache %s is unreadable: extracting again", path)
    captions = list(compute())
    try:
        write_json_atomic(path, {"extractor": extractor.id, "report_sha1": key,
                                 "captions": [c.as_dict() for c in captions]})
    except OSError as e:  # a read-only preprocessed folder: work on, without the cache
        logger.warning("cannot write the caption cache %s (%s)", path, e)
    return captions
