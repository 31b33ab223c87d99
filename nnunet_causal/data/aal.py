"""AAL atlas regions merged into lobes, for datasets built on the atlas (Debian ``mricron-data``:
``aal.nii.gz`` with its names file ``aal.nii.txt``).

Names-file format, one region per line: ``index name code``, e.g. ``1 Precentral_L 2001``. The thousands digit
of ``code`` is the region's lobe: 2 frontal, 3 insula, 4 limbic, 5 occipital, 6 parietal, 7 central structures,
8 temporal, 9 cerebellum (hemispheres and vermis).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_causal.errors import DatasetError


def aal_lobe_lookup(names_file: Path, lobe_digits: Sequence[int]) -> np.ndarray:
    """Lookup table ``index -> label``: an AAL region index maps to ``1 + i`` when its code's thousands digit is
    ``lobe_digits[i]``, else to 0. Index the table with the atlas image to get the merged label map."""
    codes = {}
    for number, line in enumerate(Path(names_file).read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit() or not fields[2].isdigit():
            raise DatasetError(f"{names_file}:{number}: expected 'index name code', got {line.strip()!r}")
        codes[int(fields[0])] = int(fields[2])
    if not codes:
        raise DatasetError(f"{names_file}: no regions")
    lookup = np.zeros(max(codes) + 1, np.uint8)
    for value, digit in enumerate(lobe_digits, start=1):
        for index, code in codes.items():
            if code // 1000 == digit:
                lookup[index] = value
    return lookup
