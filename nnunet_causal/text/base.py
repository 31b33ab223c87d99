"""The one interface every text backend implements.

A :class:`TextEncoder` maps strings to L2-normalised float32 vectors on the CPU::

    enc = create_text_encoder("minilm")      # see nnunet_causal.text.encoders
    e = enc.encode(["liver", "renal organ"])  # torch.Tensor, shape (2, enc.dim), rows of unit norm

``id`` is a stable string that names the backend *and* its weights; it keys the embedding cache and
is recorded in the plans so that prediction embeds new prompts with the encoder used in training.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch


class TextEncoder(ABC):
    """Abstract text encoder: ``encode(list[str]) -> (N, dim)`` float32, unit-norm rows, on the CPU."""

    #: stable identifier of backend + weights, e.g. ``"minilm"`` or ``"open_clip:ViT-B-32@/x/ckpt.pt"``
    id: str
    #: embedding width D
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed ``texts``; returns a ``(len(texts), dim)`` float32 CPU tensor with L2-normalised rows."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, dim={self.dim})"
