"""A text-prompted segmentation network that wraps any nnU-Net backbone (PlainConvUNet, ResEnc, STUNet).

The backbone is built from the plans exactly as nnU-Net would build it, but with ``num_classes = E``: its
segmentation layers (one 1x1 conv per decoder stage) then emit an ``E``-dimensional embedding per voxel
at every deep-supervision scale. The text head turns prompt embeddings into queries and computes
``logit_k = <q_k, F(x)> + b_k`` (OpenVocabCT, seed 002).

Output channels follow nnU-Net's conventions so that nnU-Net's own loss wrappers, validation, predictor
and export work unchanged:

* label-based datasets: channel 0 is a constant background logit 0 and channel k is prompt k. The
  argmax over ``[0, l_1, ..., l_K]`` is the prompt with the largest logit among those with
  ``sigmoid(l_k) > 0.5`` -- i.e. independent sigmoid decisions turned into one label map; softmax
  "probabilities" relate to the sigmoid by ``sigmoid(l_k) = p_k / (p_k + p_0)``.
* region-based datasets (BraTS): K sigmoid channels, no background channel.

Buffers (in the state_dict, so prediction of the trained prompts never loads the text encoder):
``prompt_embeddings (K, D_text)``. Training-only synonym banks are non-persistent buffers.
The input first goes through :class:`~nnunet_causal.networks.input_normalization.InputNormalization` (the
identity unless the plans ask for ``"rank"``, as a dataset declared cross-modality does; no weights).
An optional ``bottleneck`` module (the confounder cross-attention of seed 001) transforms the deepest
encoder feature map before the decoder sees it. An optional presence head
(:mod:`nnunet_causal.networks.presence_head`) scores whether each prompt's structure is in the input; its
weights are in the state_dict only for models built with ``presence_hidden_dim`` (plans entry
``"presence"``), so older checkpoints load unchanged.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from torch import nn

from nnunet_causal.networks.input_normalization import InputNormalization
from nnunet_causal.networks.presence_head import PresenceHead
from nnunet_causal.networks.text_head import build_connector, prompt_logits, union_logits


class TextPromptedSegmentationNetwork(nn.Module):
    """Backbone + text head. ``forward(x)`` returns a tensor, or a list (highest resolution first) with
    deep supervision, each of shape ``(B, K + add_background, *spatial)``."""

    def __init__(self, backbone: nn.Module, num_prompts: int, text_dim: int, embed_dim: int,
                 connector: str = "mlp", add_background: bool = True, connector_hidden_dim: int = 256,
                 bottleneck: Optional[nn.Module] = None, presence_hidden_dim: Optional[int] = None,
                 input_normalization: str = "none"):
        super().__init__()
        for attr in ("encoder", "decoder"):
            if not hasattr(backbone, attr):
                raise TypeError(f"backbone {type(backbone).__name__} has no '{attr}': text guidance needs an "
                                f"encoder/decoder network such as PlainConvUNet, ResidualEncoderUNet or STUNet")
        self.backbone = backbone
        self.input_normalization = InputNormalization(input_normalization)
        self.num_scales = len(backbone.decoder.seg_layers)
        self.num_prompts, self.text_dim, self.embed_dim = num_prompts, text_dim, embed_dim
        self.add_background = add_background
        self.connector = build_connector(connector, text_dim, embed_dim, self.num_scales, connector_hidden_dim)
        self.bottleneck = bottleneck
        self.register_buffer("prompt_embeddings", torch.zeros(num_prompts, text_dim))
        # training-only: every synonym of every prompt, sampled once per step (not saved)
        self.register_buffer("synonym_embeddings", None, persistent=False)
        self.register_buffer("synonym_table", None, persistent=False)
        self.register_buffer("synonym_counts", None, persistent=False)
        # inference-only: arbitrary prompts and merged categories (not saved)
        self.register_buffer("inference_embeddings", None, persistent=False)
        self.register_buffer("inference_groups", None, persistent=False)
        self.register_buffer("inference_valid", None, persistent=False)
        #: set by trainers that need intermediate tensors; forward then returns ``(output, aux)``
        self.return_aux = False
        self.presence = PresenceHead(embed_dim, text_dim, presence_hidden_dim) if presence_hidden_dim else None
        # training-only: text embeddings of structures the dataset never holds (presence negatives, not saved)
        self.register_buffer("presence_negatives", None, persistent=False)
        #: training: presence logits ``(B, K + N_negatives)`` of the last forward pass (read by the loss)
        self.last_presence: Optional[torch.Tensor] = None
        #: inference: when a list, every forward pass appends its presence logits ``(B, outputs - 1)``
        self.presence_recorder: Optional[list] = None

    # nnU-Net's trainer toggles ``network.decoder.deep_supervision`` and reads ``network.encoder``
    @property
    def decoder(self) -> nn.Module:
        return self.backbone.decoder

    @property
    def encoder(self) -> nn.Module:
        return self.backbone.encoder

    # ---------------------------------------------------------------- prompts
    def set_prompt_embeddings(self, embeddings: torch.Tensor) -> None:
        """Copy the trained prompts' text embeddings ``(K, D_text)`` into the network (saved with it)."""
        if tuple(embeddings.shape) != (self.num_prompts, self.text_dim):
            raise ValueError(f"expected prompt embeddings of shape {(self.num_prompts, self.text_dim)}, "
                             f"got {tuple(embeddings.shape)}")
        self.prompt_embeddings.copy_(embeddings.to(self.prompt_embeddings))

    def set_training_synonyms(self, embeddings: torch.Tensor, owners: Sequence[int]) -> None:
        """Register every training text ``(S, D_text)`` and the prompt index it belongs to.

        In training mode each forward pass draws one text per prompt uniformly from its synonyms, so the
        connector learns a neighbourhood of the text space instead of a single point.
        """
        owners = torch.as_tensor(owners, dtype=torch.long)
        counts = torch.bincount(owners, minlength=self.num_prompts)
        if (counts == 0).any():
            raise ValueError(f"prompts {torch.nonzero(counts == 0).flatten().tolist()} have no training text")
        table = torch.zeros(self.num_prompts, int(counts.max()), dtype=torch.long)
        fill = [0] * self.num_prompts
        for row, k in enumerate(owners.tolist()):
            table[k, fill[k]] = row
            fill[k] += 1
        device = self.prompt_embeddings.device
        self.synonym_embeddings = embeddings.to(device=device, dtype=self.prompt_embeddings.dtype)
        self.synonym_table = table.to(device)
        self.synonym_counts = counts.to(device)

    def set_inference_prompts(self, embeddings: Optional[torch.Tensor],
                              groups: Optional[List[List[int]]] = None) -> None:
        """Segment arbitrary prompts: ``embeddings (M, D_text)``; output ``g`` is the union (max of logits)
        of rows ``groups[g]`` (default: one row each). ``None`` restores the trained prompts.

        The output then always has a background channel first (``1 + len(groups)`` channels).
        """
        if embeddings is None:
            self.inference_embeddings = self.inference_groups = self.inference_valid = None
            return
        m = embeddings.shape[0]
        groups = [[i] for i in range(m)] if groups is None else groups
        if not groups or any(not g for g in groups) or any(i < 0 or i >= m for g in groups for i in g):
            raise ValueError(f"invalid prompt groups {groups} for {m} embeddings")
        width = max(len(g) for g in groups)
        idx = torch.zeros(len(groups), width, dtype=torch.long)
        valid = torch.zeros(len(groups), width, dtype=torch.bool)
        for gi, g in enumerate(groups):
            idx[gi, :len(g)] = torch.as_tensor(g)
            valid[gi, :len(g)] = True
        device = self.prompt_embeddings.device
        self.inference_embeddings = embeddings.to(device=device, dtype=self.prompt_embeddings.dtype)
        self.inference_groups, self.inference_valid = idx.to(device), valid.to(device)

    @property
    def num_outputs(self) -> int:
        if self.inference_groups is not None:
            return 1 + self.inference_groups.shape[0]
        return self.num_prompts + int(self.add_background)

    def _active_text_embeddings(self) -> torch.Tensor:
        if self.inference_embeddings is not None:
            return self.inference_embeddings
        if self.training and self.synonym_embeddings is not None:
            draw = (torch.rand(self.num_prompts, device=self.synonym_counts.device) * self.synonym_counts).long()
            rows = self.synonym_table.gather(1, draw.unsqueeze(1)).squeeze(1)
            return self.synonym_embeddings[rows]
        return self.prompt_embeddings

    # ---------------------------------------------------------------- forward
    def _decode(self, x: torch.Tensor):
        skips = self.backbone.encoder(self.input_normalization(x))
        aux = {}
        if self.bottleneck is not None:
            skips = list(skips)
            # MTRS selects positions by the TRAINED prompts, whatever is being segmented: a trained structure's
            # mask must not change when other prompts are asked for in the same call
            skips[-1], aux = self.bottleneck(skips[-1], self.prompt_embeddings)
        return self.backbone.decoder(skips), aux

    def _presence(self, features: torch.Tensor, text: torch.Tensor) -> None:
        """Presence logits of the active prompts: kept for the loss (training) or recorded (inference)."""
        if self.presence is None:
            return
        if self.training:
            negatives = self.presence_negatives
            rows = text if negatives is None else torch.cat((text, negatives.to(text)), 0)
            self.last_presence = self.presence(features, rows)
        elif self.presence_recorder is not None:
            logits = self.presence(features, text)
            if self.inference_groups is not None:
                logits = union_logits(logits, self.inference_groups, self.inference_valid)
            self.presence_recorder.append(logits.detach().float())

    def voxel_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-voxel embeddings ``F (B, E, *spatial)`` at the highest resolution (presence recorded as in
        ``forward``). With the MLP connector ``forward(x)[:, k] = <q_k, F> + b_k`` (see :meth:`head`)."""
        feats, _ = self._decode(x)
        f = feats[0] if isinstance(feats, (list, tuple)) else feats
        self._presence(f, self._active_text_embeddings())
        return f

    def head(self):
        """``(queries (M, E), bias (M,))`` of the active text rows at the highest resolution, for connectors
        whose queries do not depend on the image (``connector.image_conditioned`` False)."""
        if self.connector.image_conditioned:
            raise ValueError(f"{type(self.connector).__name__} computes its queries from the image; aggregate "
                             f"logits, not voxel embeddings")
        q, b = self.connector.text_queries(self._active_text_embeddings())
        return q[:, 0], b[:, 0]

    def forward(self, x: torch.Tensor):
        feats, aux = self._decode(x)
        text = self._active_text_embeddings()
        feats_list = feats if isinstance(feats, (list, tuple)) else [feats]
        self._presence(feats_list[0], text)
        queries, bias = self.connector(text, feats_list[0])
        outs = []
        for s, f in enumerate(feats_list):
            logits = prompt_logits(f, queries[:, :, s], bias[:, :, s])
            if self.inference_groups is not None:
                logits = union_logits(logits, self.inference_groups, self.inference_valid)
            if self.add_background or self.inference_groups is not None:
                logits = torch.cat((torch.zeros_like(logits[:, :1]), logits), 1)
            outs.append(logits)
        out: Union[torch.Tensor, List[torch.Tensor]] = outs if isinstance(feats, (list, tuple)) else outs[0]
        if self.return_aux:
            aux.update(features=feats_list[0], text_embeddings=text)
            return out, aux
        return out

    def compute_conv_feature_map_size(self, input_size):
        """Delegates to the backbone (used by nnU-Net's planners for VRAM estimates)."""
        return self.backbone.compute_conv_feature_map_size(input_size)
