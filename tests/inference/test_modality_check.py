"""The warning for an image that does not look like CT given to a CT-normalised model."""
import logging

import numpy as np
import pytest

from nnunet_causal.inference.modality_check import modality_warning, not_ct_reasons, warn_if_not_ct
from nnunet_causal.synthetic.ct_mr_pairs import render_pair

PROPS = {"0": {"percentile_00_5": -57.0, "percentile_99_5": 212.0, "mean": 60.0, "std": 40.0}}


@pytest.fixture(scope="module")
def pair():
    return render_pair([5, 0], (12, 32, 32))


def test_ct_passes_mr_and_unit_images_do_not(pair):
    assert not_ct_reasons(pair.ct) == []
    assert any("no air" in r for r in not_ct_reasons(pair.mr))
    unit = (pair.ct - pair.ct.min()) / (pair.ct.max() - pair.ct.min())
    reasons = not_ct_reasons(unit)
    assert len(reasons) == 2 and "span only" in reasons[1]
    stored = pair.ct + 1024.0              # stored values without the rescale intercept: air at 0
    assert not_ct_reasons(stored)
    inside_body = pair.ct[pair.ct > -200]   # a tight crop without air still has fat below -50 HU
    assert not_ct_reasons(inside_body) == []


def test_warning_names_case_and_normalisation(pair):
    msg = modality_warning(pair.mr[None], "mr_0000 (mr_0000_0000.nii.gz)", ["CTNormalization"], PROPS)
    assert "case mr_0000 (mr_0000_0000.nii.gz)" in msg and "CTNormalization" in msg
    assert "-57..212 HU" in msg and "channel 0" in msg and "docs/cross_modality.md" in msg
    assert modality_warning(pair.ct[None], "ct_0000", ["CTNormalization"], PROPS) is None
    assert modality_warning(pair.mr[None], "mr_0000", ["ZScoreNormalization"], PROPS) is None   # z-scored model
    two = np.stack([pair.ct, pair.mr])
    msg = modality_warning(two, "x", ["CTNormalization", "CTNormalization"], None)
    assert "channel 1" in msg and "channel 0" not in msg and "HU window" in msg


def test_warn_logs_once_per_call(pair, caplog):
    with caplog.at_level(logging.WARNING, logger="nnunet_causal.inference.modality_check"):
        assert warn_if_not_ct(pair.mr[None], "mr_0000", ["CTNormalization"], PROPS)
        assert warn_if_not_ct(pair.ct[None], "ct_0000", ["CTNormalization"], PROPS) is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "mr_0000" in caplog.records[0].getMessage()
