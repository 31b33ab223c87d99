"""Laterality: the case-frame position term separates mirror-image organs; mirrored captions are hard negatives."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnunet_causal.mgcl.image_features import ImageProjection, pool_features
from nnunet_causal.mgcl.laterality import is_lateral_label, mirror_caption, mirror_negatives
from nnunet_causal.mgcl.losses import LogitScale, mgcl_loss
from nnunet_causal.mgcl.organ_position import organ_positions, slice_positions
from tests.mgcl.embedding_pairs import organs_and_captions


def _kidneys(width=32):
    """One 2D slice: two identical discs at mirrored x (label 1 at small x, label 2 at large x)."""
    yy, xx = np.mgrid[:16, :width]
    seg = np.zeros((16, width), np.int64)
    seg[(yy - 8) ** 2 + (xx - width // 4) ** 2 <= 9] = 1
    seg[(yy - 8) ** 2 + (xx - 3 * width // 4) ** 2 <= 9] = 2
    return torch.from_numpy(seg)[None, None]


def test_positions_are_in_the_case_frame_not_the_patch_frame():
    seg = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    seg[:, 0, 1, 2] = 1                                   # same voxel of the patch in both samples
    lbs = torch.tensor([[0.0, 0.0, 0.0], [4.0, 10.0, -2.0]])   # second patch: slice 4, shifted (x padded)
    shapes = torch.tensor([[9.0, 21.0, 21.0], [9.0, 21.0, 21.0]])
    pos = organ_positions(seg, [1, 3], lbs, shapes)
    assert pos.shape == (2, 2, 3)
    expected = torch.tensor([[2 * 0 / 8 - 1, 2 * 1 / 20 - 1, 2 * 2 / 20 - 1],
                             [2 * 4 / 8 - 1, 2 * 11 / 20 - 1, 2 * 0 / 20 - 1]])
    assert torch.allclose(pos[:, 0], expected)
    assert torch.equal(pos[:, 1], torch.zeros(2, 3))     # absent structure: 0
    lbs2, shapes2 = slice_positions([4], [[9, 21, 21]])
    assert torch.equal(lbs2, torch.tensor([[4.0, 0.0, 0.0]])) and torch.equal(shapes2, shapes[:1])


def test_the_position_term_separates_left_from_right_where_pooled_features_cannot():
    torch.manual_seed(0)
    seg = _kidneys()
    feats = [torch.ones(1, 4, 16, 32), torch.ones(1, 8, 8, 16)]   # constant features: the discs look the same
    organ, present, _ = pool_features(feats, seg, [1, 2], min_voxels=2)
    assert present.all() and torch.allclose(organ[0, 0], organ[0, 1])
    pos = organ_positions(seg, [1, 2], *slice_positions([3], [[8, 16, 32]]))
    assert pos[0, 0, 2] < 0 < pos[0, 1, 2]                # x: label 1 on the small-x side
    text = F.normalize(torch.randn(2, 16), dim=-1)          # "left kidney" / "right kidney" captions
    scale = torch.tensor(20.0)

    def fit(projection, use_position):
        opt = torch.optim.Adam(projection.parameters(), 1e-2)
        for _ in range(150):
            out = projection(organ[0], pos[0] if use_position else None)
            loss = mgcl_loss(out, text[:, None], [["left"], ["right"]], scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = projection(organ[0], pos[0] if use_position else None)
        return float(loss.detach()), out @ text.t()

    loss_pos, sim_pos = fit(ImageProjection(organ.shape[-1], 16, hidden=32, position_dims=3), True)
    loss_none, sim_none = fit(ImageProjection(organ.shape[-1], 16, hidden=32), False)
    assert sim_pos[0, 0] > sim_pos[0, 1] and sim_pos[1, 1] > sim_pos[1, 0]   # each organ its own side
    assert torch.allclose(sim_none[0], sim_none[1])                          # without it: indistinguishable
    assert loss_pos < 0.1 < np.log(2) - 0.05 < loss_none
    with pytest.raises(Exception, match="without a position term"):
        ImageProjection(organ.shape[-1], 16)(organ[0], pos[0])


def test_mirror_captions_only_for_lateral_structures_naming_one_side():
    assert is_lateral_label("kidney_left") and is_lateral_label("Right-Kidney") and not is_lateral_label("liver")
    assert mirror_caption("The left kidney is small.") == "The right kidney is small."
    assert mirror_caption("Right renal organ: LEFT? no") is None          # both sides named
    assert mirror_caption("Left kidney, upright") == "Right kidney, upright"  # whole words only
    assert mirror_negatives("kidney_left", ["The left kidney is small.", "Kidneys are normal."]) == \
        ["The right kidney is small."]
    assert mirror_negatives("liver", ["The right lobe of the liver is enlarged."]) == []


def test_hard_negatives_raise_the_loss_of_a_side_blind_text_space_and_correct_pairing_stays_lower():
    organ, captions, texts = organs_and_captions(4, seed=1)
    scale = LogitScale()()
    plain = mgcl_loss(organ, captions, texts, scale)
    # a mirror caption embedded like organ 0's own captions (the encoder ignores the side word): much harder
    blind = captions[0, :1].clone()
    with_blind = mgcl_loss(organ, captions, texts, scale, blind, [0], ["organ 0 mirrored"])
    far = F.normalize(-organ[:1], dim=-1)                   # a mirror caption the encoder keeps apart
    with_far = mgcl_loss(organ, captions, texts, scale, far, [0], ["organ 0 mirrored"])
    assert 0.0 <= float(with_far - plain) < 1e-3 and float(with_blind - plain) > 0.1
    # a hard negative whose text is one of its organ's own captions is masked
    assert torch.isclose(mgcl_loss(organ, captions, texts, scale, blind, [0], ["organ 0 caption 0"]), plain)
    # the correct pairing still has the lower loss with hard negatives
    wrong = captions[torch.tensor([1, 2, 3, 0])]
    assert with_blind < mgcl_loss(organ, wrong, texts, scale, blind, [0], ["organ 0 mirrored"])


def test_the_loader_reports_each_patch_box_in_its_case_and_refuses_mirroring(tmp_path):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from nnunet_causal.errors import DatasetError
    from nnunet_causal.mgcl.organ_position import CaseFramePatchLoader
    from tests.mgcl.fixtures import make_preprocessed

    folder = make_preprocessed(tmp_path) / "preprocessed" / "Dataset001_Tiny2D" / "nnUNetPlans_2d"
    cases = sorted(p.stem for p in folder.glob("*.pkl"))
    dataset = infer_dataset_class(str(folder))(str(folder), cases)
    labels = LabelManager({"background": 0, "lesion": 1, "marker": 2}, None)
    np.random.seed(0)
    loader = CaseFramePatchLoader(dataset, 3, (20, 20), (20, 20), labels, oversample_foreground_percent=0.5)
    batch = loader.generate_train_batch()
    assert batch["bbox_lbs"].shape == batch["case_shapes"].shape == (3, 3)
    for b, key in enumerate(batch["keys"]):
        data, seg, _, _ = dataset.load_case(key)
        z, y, x = (int(v) for v in batch["bbox_lbs"][b])
        assert tuple(batch["case_shapes"][b].tolist()) == tuple(float(n) for n in data.shape[1:])
        assert torch.equal(batch["target"][b, 0].long(), torch.from_numpy(np.asarray(seg[0, z, y:y + 20, x:x + 20])).long())
    with pytest.raises(DatasetError, match="mirroring"):
        CaseFramePatchLoader(dataset, 3, (20, 20), (20, 20), labels, transforms=lambda **kw: kw)
