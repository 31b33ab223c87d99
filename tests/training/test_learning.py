"""A learning test: the text-prompted network, its connector and the prompt loss learn an easy task.

Two prompts ("disk", "square") on 32x32 RGB images with a red disk and a blue square at random places;
200 Adam steps of batch 8 on the CPU (about 30 s). Stated target: Dice >= 0.8 for both structures on 16
unseen images. A silent regression in the head (query . features + bias), the connector, the prompt
embeddings or the Dice/BCE loss makes this fail.
"""
import numpy as np
import torch

from nnunet_causal.training.losses import PromptDiceBCELoss
from tests.networks.test_text_network import tiny_backbone


def _batch(rng, n, size=32):
    x = rng.normal(0, 0.3, (n, 3, size, size)).astype(np.float32)
    y = np.zeros((n, 1, size, size), np.int64)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx, r = rng.integers(7, size - 7), rng.integers(7, size - 7), rng.integers(3, 6)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        sy, sx = rng.integers(1, size - 7, 2)
        square = np.zeros_like(disk)
        square[sy:sy + 6, sx:sx + 6] = True
        square &= ~disk
        x[i][:, disk] += np.array([1.5, -0.5, -0.5], np.float32)[:, None]
        x[i][:, square] += np.array([-0.5, -0.5, 1.5], np.float32)[:, None]
        y[i, 0, disk], y[i, 0, square] = 1, 2
    return torch.from_numpy(x), torch.from_numpy(y)


def test_text_network_learns_two_prompted_structures():
    from nnunet_causal.networks.text_network import TextPromptedSegmentationNetwork

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = TextPromptedSegmentationNetwork(tiny_backbone(ds=False, out=8), num_prompts=2, text_dim=12, embed_dim=8)
    net.set_prompt_embeddings(torch.nn.functional.normalize(torch.randn(2, 12), dim=1))
    loss_fn = PromptDiceBCELoss(2)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    net.train()
    for _ in range(200):
        x, y = _batch(rng, 8)
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    net.eval()
    x, y = _batch(np.random.default_rng(1), 16)
    with torch.no_grad():
        logits = net(x)[:, 1:]
    for k in (1, 2):
        pred, ref = logits[:, k - 1] > 0, y[:, 0] == k
        dice = 2 * (pred & ref).sum().item() / (pred.sum() + ref.sum()).item()
        assert dice >= 0.8, f"structure {k}: Dice {dice:.3f} < 0.8 after 200 steps"
