"""Embeddings computed once per (encoder id, text), kept in memory and on disk.

On-disk format (one folder per encoder, ``<cache_dir>/<sha1(encoder id)[:16]>/``):

* ``encoder.json``: ``{"id": ..., "dim": D}``
* ``<sha1(text)>.npy``: the float32 vector ``(D,)`` of one text, written atomically.

``cache_dir`` is ``$nnUNet_causal_cache`` or ``~/.cache/nnunet_causal/text_embeddings``. A corrupt or
mis-sized vector is reported (warning naming the file) and recomputed, never used.

:class:`LazyTextEncoder` loads the backend only when a text is not cached, so prediction with cached
prompts never loads weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from nnunet_causal.data.raw_dataset import atomic_path, write_json_atomic
from nnunet_causal.text.base import TextEncoder

logger = logging.getLogger(__name__)
CACHE_VARIABLE = "nnUNet_causal_cache"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "nnunet_causal" / "text_embeddings")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class CachedTextEncoder(TextEncoder):
    """Wraps ``encoder`` (or a factory for it, see :class:`LazyTextEncoder`) with the two-level cache."""

    def __init__(self, encoder: TextEncoder, cache_dir: Optional[os.PathLike] = None, persist: bool = True):
        self._encoder = encoder
        self.id, self.dim = encoder.id, encoder.dim
        self._memory: Dict[str, torch.Tensor] = {}
        self.persist = persist
        self.folder = Path(cache_dir or default_cache_dir()) / _sha1(self.id)[:16]

    def _backend(self) -> TextEncoder:
        return self._encoder

    def _load(self, text: str) -> Optional[torch.Tensor]:
        path = self.folder / f"{_sha1(text)}.npy"
        if not path.exists():
            return None
        try:
            vec = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - a corrupt cache file is reported and recomputed
            logger.warning("corrupt embedding cache file %s (%s): recomputing", path, e)
            return None
        if vec.shape != (self.dim,) or not np.all(np.isfinite(vec)):
            logger.warning("embedding cache file %s has shape %s (expected (%d,)): recomputing", path, vec.shape,
                           self.dim)
            return None
        return torch.from_numpy(vec.astype(np.float32))

    def _store(self, text: str, vec: torch.Tensor) -> None:
        if not self.persist:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            meta = self.folder / "encoder.json"
            if not meta.exists():
                write_json_atomic(meta, {"id": self.id, "dim": self.dim})
            with atomic_path(self.folder / f"{_sha1(text)}.npy") as tmp:
                np.save(tmp, vec.numpy().astype(np.float32), allow_pickle=False)
        except OSError as e:  # a read-only home must not stop training; the memory cache still works
            logger.warning("cannot write embedding cache in %s: %s", self.folder, e)
            self.persist = False

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        missing = []
        for t in dict.fromkeys(texts):
            if t not in self._memory:
                vec = self._load(t) if self.persist else None
                if vec is None:
                    missing.append(t)
                else:
                    self._memory[t] = vec
        if missing:
            fresh = self._backend().encode(missing)
            for t, vec in zip(missing, fresh):
                self._memory[t] = vec.clone()
                self._store(t, self._memory[t])
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self._memory[t] for t in texts])


class LazyTextEncoder(CachedTextEncoder):
    """A cached encoder whose backend is built by ``factory`` on the first cache miss.

    ``encoder_id`` and ``dim`` must be known up front (they are recorded in the plans of a trained model).
    """

    def __init__(self, factory: Callable[[], TextEncoder], encoder_id: str, dim: int,
                 cache_dir: Optional[os.PathLike] = None):
        self._factory, self._loaded = factory, None
        self.id, self.dim = encoder_id, dim
        self._memory = {}
        self.persist = True
        self.folder = Path(cache_dir or default_cache_dir()) / _sha1(self.id)[:16]

    def _backend(self) -> TextEncoder:
        if self._loaded is None:
            self._loaded = self._factory()
            if self._loaded.id != self.id or self._loaded.dim != self.dim:
                raise RuntimeError(f"text encoder {self._loaded.id} (dim {self._loaded.dim}) does not match the "
                                   f"expected {self.id} (dim {self.dim})")
        return self._loaded


@lru_cache(maxsize=8)
def _cached_encoder(spec: str) -> CachedTextEncoder:
    from nnunet_causal.text.encoders import create_text_encoder
    return CachedTextEncoder(create_text_encoder(spec))


def get_text_encoder(spec: Optional[str] = None, dataset_json: Optional[dict] = None) -> CachedTextEncoder:
    """The cached encoder for ``spec`` (default: :func:`~nnunet_causal.text.encoders.resolve_text_encoder_spec`);
    one instance per spec and process."""
    from nnunet_causal.text.encoders import resolve_text_encoder_spec
    return _cached_encoder(spec or resolve_text_encoder_spec(dataset_json))
