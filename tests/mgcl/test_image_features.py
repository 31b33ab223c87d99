"""Mask pooling of encoder features and where encoder weights are found in a checkpoint."""
import pytest
import torch

from nnunet_causal.errors import ModelError
from nnunet_causal.mgcl.image_features import encoder_weights, pool_features


def test_mask_pooling_averages_each_structure_and_marks_presence():
    f0 = torch.zeros(1, 2, 4, 4)
    f0[0, 0, :2] = 1.0                                   # channel 0 is on in the top half
    f0[0, 1, 2:] = 1.0                                   # channel 1 in the bottom half
    f1 = torch.ones(1, 3, 2, 2)                          # a coarser stage
    seg = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    seg[0, 0, :2, :2] = 1                                # structure 1: top left
    seg[0, 0, 3, 3] = 2                                  # structure 2: one voxel (below min_voxels)
    organ, present, glob = pool_features([f0, f1], seg, [1, 2, 3], min_voxels=2)
    assert organ.shape == (1, 3, 5) and glob.shape == (1, 5)
    assert present.tolist() == [[True, False, False]]
    assert torch.allclose(organ[0, 0, :2], torch.tensor([1.0, 0.0]))    # normalised stage-0 part: top half only
    assert torch.allclose(glob[0, :2], torch.tensor([0.5, 0.5]).sqrt())


def test_encoder_weights_of_our_and_stock_checkpoints():
    w = torch.zeros(1)
    assert list(encoder_weights({"backbone.encoder.stages.0.w": w, "connector.x": w}, "ours")) == ["stages.0.w"]
    assert list(encoder_weights({"encoder.stages.0.w": w, "decoder.y": w}, "stock")) == ["stages.0.w"]
    with pytest.raises(ModelError, match="no encoder weights"):
        encoder_weights({"model.layer.w": w}, "other.pth")


def _info(plans: dict) -> dict:
    return {"plans": plans, "checkpoint": "/models/fold_0/checkpoint_final.pth"}


def test_frozen_input_normalization_follows_the_plans():
    from nnunet_causal.mgcl.image_features import frozen_input_normalization

    x = torch.tensor([[[[0.0, 10.0], [1000.0, 3.0]]]])
    ranked = frozen_input_normalization(_info({"nnunet_causal": {"input_normalization": "rank"}}))(x)
    r = 3 ** 0.5                  # ranks 0, 2/3, 1, 1/3 mapped onto [-sqrt 3, sqrt 3]
    assert torch.allclose(ranked, torch.tensor([[[[-r, r / 3], [r, -r / 3]]]]))
    for plans in ({}, {"nnunet_causal": {}}, {"nnunet_causal": {"input_normalization": "none"}}):
        assert torch.equal(frozen_input_normalization(_info(plans))(x), x)
    with pytest.raises(ModelError, match="checkpoint_final.pth.*'histogram'"):
        frozen_input_normalization(_info({"nnunet_causal": {"input_normalization": "histogram"}}))
