"""CLIP + MGCL: the correct pairing has the lower loss; identical texts are no negatives."""
import torch
import torch.nn.functional as F

from nnunet_causal.mgcl.losses import LogitScale, clip_loss, mgcl_loss
from tests.mgcl.embedding_pairs import organs_and_captions


def test_correct_pairing_has_lower_loss():
    organ, captions, texts = organs_and_captions(5, seed=0)
    scale = LogitScale()()
    right = mgcl_loss(organ, captions, texts, scale)
    wrong = mgcl_loss(organ, captions[torch.tensor([1, 2, 3, 4, 0])], texts, scale)
    assert right < 0.5 < wrong
    image = F.normalize(torch.randn(4, 16), dim=-1)
    assert clip_loss(image, image, scale) < clip_loss(image, image[torch.tensor([1, 0, 3, 2])], scale)


def test_identical_texts_are_masked_and_gradients_reach_the_temperature():
    organ = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    # both organs' captions point at organ 0, with identical text: no negative pushes them apart
    captions = F.normalize(torch.tensor([[[1.0, 0.1]], [[1.0, 0.1]]]), dim=-1)
    shared = mgcl_loss(organ, captions, [["same sentence"], ["same sentence"]], torch.tensor(10.0))
    distinct = mgcl_loss(organ, captions, [["one"], ["two"]], torch.tensor(10.0))
    assert shared < distinct
    scale = LogitScale()
    loss = clip_loss(organ, organ, scale(), ["a", "b"])
    loss.backward()
    assert scale.log_scale.grad is not None
