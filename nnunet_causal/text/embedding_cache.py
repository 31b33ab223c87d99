"""Text embeddings computed once per (encoder id, text): kept in memory and on disk.

On-disk format, one folder per encoder: ``<cache_dir>/<sha1(encoder.id)>/``

* ``encoder.json`` -- ``{"id": encoder.id, "dim": D, "format": 1}``
* ``<sha1(text)>.npz`` -- one text: arrays ``text`` (0-d unicode, the exact text) and ``embedding``
  (``(D,)`` float32, unit norm). Written to a temporary name and renamed, so concurrent trainers can share
  the folder and an interrupted write never leaves a half-written file under its final name.

``cache_dir`` is ``$nnUNet_causal_cache`` or ``~/.cache/nnunet_causal/text_embeddings``. A file that cannot
be read, holds another text, has the wrong shape or is not unit norm is reported (a warning naming the
file) and recomputed, never used.

:class:`LazyTextEncoder` builds its backend only on the first cache miss, so prediction with prompts
embedded before (training) never loads text-model weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from nnunet_causal.files import atomic_path, write_json_atomic
from nnunet_causal.errors import TextEncoderError
from nnunet_causal.text.base import TextEncoder

logger = logging.getLogger(__name__)

CACHE_VARIABLE = "nnUNet_causal_cache"
FORMAT_VERSION = 1
NORM_TOLERANCE = 1e-3


def default_cache_dir() -> Path:
    """``$nnUNet_causal_cache`` or ``~/.cache/nnunet_causal/text_embeddings`` (read when called)."""
    env = os.environ.get(CACHE_VARIABLE, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nnunet_causal" / "text_embeddings"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def encoder_cache_folder(encoder_id: str, cache_dir: Optional[os.PathLike] = None) -> Path:
    """Folder holding the embeddings of encoder ``encoder_id``."""
    return Path(cache_dir or default_cache_dir()) / _sha1(encoder_id)


class CachedTextEncoder(TextEncoder):
    """Wraps ``encoder``: each distinct text is embedded once, then served from memory or disk.

    ``encode(texts) -> (N, D)`` float32 CPU, unit-norm rows, identical to ``encoder.encode`` up to float32
    round-off. Disk writes that fail (read-only home) are reported once; the memory cache keeps working.
    """

    def __init__(self, encoder: TextEncoder, cache_dir: Optional[os.PathLike] = None):
        self._inner: Optional[TextEncoder] = encoder
        self._setup(encoder.id, cache_dir, encoder.dim)

    def _setup(self, encoder_id: str, cache_dir: Optional[os.PathLike], dim: Optional[int]) -> None:
        self.id = encoder_id
        self.folder = encoder_cache_folder(encoder_id, cache_dir)
        self._dim = dim
        self._memory: Dict[str, torch.Tensor] = {}
        self._writable = True

    # -- backend ----------------------------------------------------------------------------------------
    def _backend(self) -> TextEncoder:
        return self._inner

    @property
    def backend(self) -> TextEncoder:
        """The wrapped encoder (loaded now if lazy); its ``encode`` bypasses the cache (e.g. for timing)."""
        return self._backend()

    _encoder = backend  # older name, still used by nnunet_causal.benchmarking.perf

    @property
    def dim(self) -> int:
        """Embedding width D: known, else read from ``encoder.json``, else from the (loaded) backend."""
        if self._dim is None:
            self._dim = self._recorded_dim() or int(self._backend().dim)
        return self._dim

    def _recorded_dim(self) -> Optional[int]:
        meta = self.folder / "encoder.json"
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            logger.warning("unreadable embedding-cache file %s (%s): ignoring it", meta, e)
            return None
        if info.get("id") != self.id or not isinstance(info.get("dim"), int):
            logger.warning("embedding-cache file %s describes encoder %r, expected %r: ignoring it", meta,
                           info.get("id"), self.id)
            return None
        return info["dim"]

    # -- disk -------------------------------------------------------------------------------------------
    def _read(self, text: str) -> Optional[torch.Tensor]:
        path = self.folder / f"{_sha1(text)}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stored, vec = str(data["text"]), np.asarray(data["embedding"], dtype=np.float32)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            logger.warning("corrupt embedding-cache file %s (%s: %s): recomputing", path, type(e).__name__, e)
            return None
        problem = None
        if stored != text:
            problem = f"holds the text {stored!r}, not {text!r}"
        elif vec.shape != (self.dim,):
            problem = f"has shape {vec.shape}, expected ({self.dim},)"
        elif not np.isfinite(vec).all() or abs(float(np.linalg.norm(vec)) - 1.0) > NORM_TOLERANCE:
            problem = "is not a finite unit vector"
        if problem:
            logger.warning("corrupt embedding-cache file %s %s: recomputing", path, problem)
            return None
        return torch.from_numpy(vec)

    def _write(self, text: str, vec: torch.Tensor) -> None:
        if not self._writable:
            return
        try:
            meta = self.folder / "encoder.json"
            if not meta.exists():
                write_json_atomic(meta, {"id": self.id, "dim": int(vec.shape[0]), "format": FORMAT_VERSION})
            with atomic_path(self.folder / f"{_sha1(text)}.npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, text=np.array(text), embedding=vec.numpy().astype(np.float32))
        except OSError as e:
            logger.warning("cannot write the embedding cache in %s (%s); continuing with memory only",
                           self.folder, e)
            self._writable = False

    # -- public -----------------------------------------------------------------------------------------
    def cached(self, texts: Sequence[str]) -> List[bool]:
        """Whether each text is available without running the backend (memory or a valid disk file)."""
        return [self._lookup(t) is not None for t in texts]

    def _lookup(self, text: str) -> Optional[torch.Tensor]:
        if text not in self._memory:
            vec = self._read(text)
            if vec is not None:
                self._memory[text] = vec
        return self._memory.get(text)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, D)`` embeddings of ``texts``; only texts seen neither in memory nor on disk reach the backend."""
        texts = [str(t) for t in texts]
        missing = [t for t in dict.fromkeys(texts) if self._lookup(t) is None]
        if missing:
            fresh = self._backend().encode(missing)
            for text, vec in zip(missing, fresh):
                self._memory[text] = vec.detach().float().cpu().clone()
                self._write(text, self._memory[text])
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self._memory[t] for t in texts])


class LazyTextEncoder(CachedTextEncoder):
    """A :class:`CachedTextEncoder` whose backend is built by ``factory()`` on the first cache miss.

    ``encoder_id`` must be the id the factory's encoder will have (see
    :func:`nnunet_causal.text.encoders.encoder_id`); ``dim`` may be given, else it comes from the cache's
    ``encoder.json`` or, failing that, from loading the backend.
    """

    def __init__(self, factory: Callable[[], TextEncoder], encoder_id: str,
                 cache_dir: Optional[os.PathLike] = None, dim: Optional[int] = None):
        self._factory, self._inner = factory, None
        self._setup(encoder_id, cache_dir, dim)

    @property
    def loaded(self) -> bool:
        """Whether the backend weights have been loaded."""
        return self._inner is not None

    def _backend(self) -> TextEncoder:
        if self._inner is None:
            encoder = self._factory()
            if encoder.id != self.id or (self._dim is not None and encoder.dim != self._dim):
                raise TextEncoderError(f"text encoder {encoder.id} (dim {encoder.dim}) was loaded, but the "
                                       f"embedding cache expects {self.id} (dim {self._dim})")
            self._inner = encoder
        return self._inner


@lru_cache(maxsize=16)
def _shared_encoder(spec: str, cache_dir: Optional[str], device: str, lazy: bool) -> CachedTextEncoder:
    from nnunet_causal.text.encoders import create_text_encoder, encoder_id

    if lazy:
        return LazyTextEncoder(lambda: create_text_encoder(spec, device), encoder_id(spec), cache_dir)
    return CachedTextEncoder(create_text_encoder(spec, device), cache_dir)


def get_text_encoder(spec: Optional[str] = None, dataset_json: Optional[dict] = None, cache: bool = True,
                     lazy: bool = True, cache_dir: Optional[os.PathLike] = None,
                     device: str = "cpu") -> TextEncoder:
    """The text encoder for ``spec`` (default: :func:`~nnunet_causal.text.encoders.resolve_text_encoder_spec`
    of ``dataset_json``), wrapped in the embedding cache; one shared instance per spec, folder and device.

    ``lazy`` (default) defers loading weights until a text is missing from the cache; ``cache=False``
    returns the bare backend (loaded now, nothing stored).
    """
    from nnunet_causal.text.encoders import create_text_encoder, resolve_text_encoder_spec

    spec = spec or resolve_text_encoder_spec(dataset_json)
    if not cache:
        return create_text_encoder(spec, device)
    folder = str(Path(cache_dir or default_cache_dir()).expanduser().resolve())
    return _shared_encoder(spec, folder, device, lazy)
