"""What the causal trainer falls back to when dataset.json's domain records cannot name a style.

The per-case domain records (dataset.json ``"domains"``: site, scanner, modality, a ``style`` text) are one
part of each training sample's style description (LAD's target, L_contrast's known style). Without them, or
with one domain only, that part carries nothing that varies between cases; the trainer still trains, and says
so once in its log (:func:`domain_fallback`).
"""
from __future__ import annotations

from typing import Optional

FALLBACK = ("each sample's style description is then the confounders drawn for its counterfactual view and the "
            "words measured on it; the counterfactual recipe applies unchanged")


def domain_fallback(dataset_json: dict) -> Optional[str]:
    """The log line for a dataset without domain records or with one domain only; None when it has two or more."""
    domains = dataset_json.get("domains") or {}
    if not domains:
        return ("no domain records in dataset.json (\"domains\"): every case is described as \"an image\"; "
                + FALLBACK)
    names = sorted({str(r.get("domain") or r.get("site") or "") for r in domains.values() if isinstance(r, dict)})
    if len(names) == 1:
        return (f"dataset.json names one domain only ('{names[0]}'): its record is the same part of every style "
                f"description; {FALLBACK} (leave-one-domain-out splits need two or more domains)")
    return None
