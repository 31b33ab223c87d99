"""One record per prompt, the plain data the DICOM-SEG and RTSTRUCT writers take.

A :class:`PromptMask` is what a prompt segmented in one case: its label value in the label map (segment
and ROI numbers follow the label values, 1..K in prompt order), the prompt text, the canonical
structure name(s) it resolved to, and its binary mask ``(z, y, x)`` on the source series' grid.
:func:`prompt_masks` builds them from a label map and the per-case sidecar's prompt records
(``CASE.prompts.json``: ``label_value``, ``prompt``, ``trained_structures`` / ``terms``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

#: the DICOM LO value representation holds at most 64 characters
LO_MAX = 64
#: Manufacturer of the DICOM objects this package writes
MANUFACTURER = "nnunet_causal"
#: display colour (RGB) per segment / ROI, cycled
SEGMENT_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                   (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def software_version() -> str:
    """The installed package's version (Software Versions of the DICOM objects)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nnunet_causal")
    except PackageNotFoundError:
        return "unknown"


def check_masks(masks: Sequence["PromptMask"], source: Sequence, what: str) -> None:
    """Every mask lies on the source series ``(slices, Rows, Columns)``; else :class:`DatasetError` naming ``what``."""
    from nnunet_causal.errors import DatasetError

    if not source:
        raise DatasetError(f"{what}: no source images")
    shape = (len(source), int(source[0].Rows), int(source[0].Columns))
    for m in masks:
        if m.mask.shape != shape:
            raise DatasetError(f"{what}: the mask of prompt '{m.prompt}' has shape {m.mask.shape}, the source series "
                               f"{shape} (slices, rows, columns)")


@dataclass(frozen=True)
class PromptMask:
    """What one prompt segmented in one case (see the module docstring)."""
    label_value: int
    prompt: str
    structures: Tuple[str, ...]
    mask: np.ndarray

    @property
    def name(self) -> str:
        """Canonical structure name(s) joined by '+', else the prompt text."""
        return "+".join(self.structures) if self.structures else self.prompt

    @property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.mask))


def dicom_text(text: str, limit: int = LO_MAX) -> str:
    """``text`` made a valid DICOM LO / ST value: printable ASCII, no backslash, at most ``limit`` chars."""
    clean = re.sub(r"[^\x20-\x7e]", "?", str(text)).replace("\\", "/").strip()
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def prompt_masks(label_map: np.ndarray, records: Sequence[Mapping]) -> list:
    """One :class:`PromptMask` per sidecar record: the voxels of ``label_map`` that hold its structure.

    ``records``: dicts with ``label_value`` and ``prompt`` and, optionally, ``voxels_label_value`` (the
    label value holding the structure's voxels when several prompts name one structure; default
    ``label_value``), ``mask_suppressed`` (the structure was decided absent: empty mask) and
    ``trained_structures`` or ``terms`` (the canonical names; the first that is non-empty is used).
    """
    out = []
    for r in records:
        names = tuple(r.get("trained_structures") or r.get("terms") or ())
        value = int(r["label_value"])
        held = int(r.get("voxels_label_value") or value)
        mask = np.zeros(label_map.shape, bool) if r.get("mask_suppressed") else label_map == held
        out.append(PromptMask(value, str(r["prompt"]), tuple(str(n) for n in names), mask))
    return out


#: private block holding an edited result's history in DICOM-SEG and RTSTRUCT (see :func:`add_edit_history`)
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "nnunet_causal"
EDIT_HISTORY_ELEMENT = 0x01


def add_edit_history(ds, history: Mapping) -> None:
    """Store ``history`` (the case's ``CASE.edits.json`` content) in ``ds`` as JSON text.

    Private block: group ``0071``, creator ``(0071,0010) LO "nnunet_causal"``, history in
    ``(0071,1001) UT`` (UTF-8 JSON: every command, what it was parsed to, the actions, the voxels each
    changed, refused / undone flags). Readers that do not know the block ignore it; the series
    description says "edited" and lists the applied commands in short.
    """
    import json

    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(EDIT_HISTORY_ELEMENT, "UT", json.dumps(history, default=str))


def read_edit_history(ds) -> Optional[dict]:
    """The history :func:`add_edit_history` stored, or None."""
    import json

    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    except KeyError:
        return None
    return json.loads(block[EDIT_HISTORY_ELEMENT].value)


def edited_description(history: Mapping, limit: int = LO_MAX) -> str:
    """``edited: <command>; <command>...`` of the applied (not refused, not undone) commands, shortened."""
    applied = [str(e.get("command", "")) for e in history.get("edits", [])
               if not e.get("refused") and not e.get("undone")]
    return dicom_text("edited: " + "; ".join(applied) if applied else "edited: no edit applied", limit)
