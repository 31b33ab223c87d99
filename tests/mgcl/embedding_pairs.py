"""Organ features with K = 3 nearby captions each (unit vectors), shared by the MGCL loss tests."""
import torch
import torch.nn.functional as F


def organs_and_captions(n: int, seed: int, dim: int = 16):
    """``(organ (n, dim), captions (n, 3, dim), caption texts)``: caption j of organ i lies near organ i."""
    torch.manual_seed(seed)
    organ = F.normalize(torch.randn(n, dim), dim=-1)
    captions = F.normalize(organ[:, None] + 0.2 * torch.randn(n, 3, dim), dim=-1)
    texts = [[f"organ {i} caption {j}" for j in range(3)] for i in range(n)]
    return organ, captions, texts
