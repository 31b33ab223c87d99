"""AAL regions merged into lobes by their code's thousands digit."""
import numpy as np
import pytest

from nnunet_causal.data.aal import aal_lobe_lookup
from nnunet_causal.errors import DatasetError


def test_regions_map_to_the_position_of_their_lobe(tmp_path):
    names = tmp_path / "aal.nii.txt"
    names.write_text("1 Precentral_L 2001\n2 Insula_L 3001\n\n5 Temporal_Sup_R 8112\n7 Cerebelum_3_L 9021\n")
    lookup = aal_lobe_lookup(names, [8, 2])
    assert lookup.dtype == np.uint8 and lookup.tolist() == [0, 2, 0, 0, 0, 1, 0, 0]
    atlas = np.array([[1, 5], [7, 0]])
    assert lookup[atlas].tolist() == [[2, 1], [0, 0]]


def test_a_malformed_line_is_named(tmp_path):
    names = tmp_path / "aal.nii.txt"
    names.write_text("1 Precentral_L 2001\nPrecentral_R 2002\n")
    with pytest.raises(DatasetError, match=r"aal.nii.txt:2: expected 'index name code'"):
        aal_lobe_lookup(names, [2])
