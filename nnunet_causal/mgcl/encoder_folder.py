"""The folder ``nnunet_causal pretrain-text`` writes, and reading it back.

Layout (format 1)::

    OUT/
      modules.json, config.json, model.safetensors, tokenizer files, ...   # a sentence-transformers model
      mgcl.json          # metadata: fingerprint, base encoder, tune mode, image model, dataset, loss history
      image_head.pth     # {"projection": state_dict, "clip_scale", "mgcl_scale", "image_dim", "text_dim",
                         #  "position_dims" (0 or 3: the organ-position term; absent in older folders = 0)}
      image_encoder.pth  # {"encoder_weights": the frozen encoder's state_dict, "plans_name", "configuration",
                         #  "source_checkpoint"} -- the third stage (nnUNetTrainerText_FrozenEncoders) loads it
      loss_curve.png

The text backends load it with the spec ``mgcl:OUT`` (:mod:`nnunet_causal.text.encoders`). The folder is
assembled under a temporary name beside ``OUT`` and replaces an older one by renames
(:func:`~nnunet_causal.files.replace_folder`), so ``OUT`` holds the old folder or the new one, never a mix.
"""
from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import torch

from nnunet_causal.files import (load_torch_file, make_temp_dir, recover_folder, remove_stale_temps, replace_folder,
                                 write_json_atomic)
from nnunet_causal.errors import ModelError
from nnunet_causal.text.encoders import MGCL_METADATA

FORMAT = 1
IMAGE_HEAD, IMAGE_ENCODER, LOSS_CURVE = "image_head.pth", "image_encoder.pth", "loss_curve.png"


def plot_loss_curve(history, path: Path) -> None:
    """Total, CLIP, MGCL and (where used) caption-contrast loss per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("loss", "clip", "mgcl", "text"):
        if any(name in h for h in history):  # "text": runs with the caption-contrast term
            ax.plot(epochs, [h.get(name, float("nan")) for h in history], marker="o",
                    label={"loss": "total"}.get(name, name))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("MGCL text-encoder pretraining")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_encoder_folder(run) -> Path:
    """Write the folder of a finished :class:`~nnunet_causal.mgcl.pretrain._Run` to ``run.out``."""
    out = Path(run.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(out)
    remove_stale_temps(out.parent)  # folders half-written by killed runs
    tmp = make_temp_dir(out.parent, prefix=f".tmp_{out.name}_")
    try:
        run.text.save(tmp)
        torch.save({"projection": run.projection.state_dict(), "clip_scale": run.clip_scale.state_dict(),
                    "mgcl_scale": run.mgcl_scale.state_dict(), "image_dim": run.image_dim, "text_dim": run.text.dim,
                    "position_dims": run.position_dims},
                   tmp / IMAGE_HEAD)
        torch.save({"encoder_weights": {k: v.cpu() for k, v in run.encoder.state_dict().items()},
                    "plans_name": run.info["plans"].get("plans_name"), "configuration": run.info["configuration"],
                    "source_checkpoint": run.info["checkpoint"]}, tmp / IMAGE_ENCODER)
        plot_loss_curve(run.history, tmp / LOSS_CURVE)
        meta = {"format": FORMAT, "fingerprint": secrets.token_hex(8), "base_encoder": run.s.encoder,
                "tune": run.s.tune, "last_k": run.s.last_k, "lora_rank": run.s.lora_rank,
                "image_model": str(Path(run.s.model_folder).resolve()), "fold": run.s.fold,
                "checkpoint": run.info["checkpoint"], "configuration": run.info["configuration"],
                "dataset": run.folders.name, "reports": str(run.report_path) if run.report_path else None,
                "extractor": run.s.extractor, "captions_per_organ": run.s.captions_per_organ,
                "corpus": run.counts, "epochs": run.s.epochs, "history": run.history,
                "image_dim": run.image_dim, "text_dim": run.text.dim, "position_dims": run.position_dims,
                "laterality_negatives": run.s.laterality_negatives,
                "text_contrast_weight": run.s.text_contrast_weight}
        write_json_atomic(tmp / MGCL_METADATA, meta)
        replace_folder(tmp, out)  # the old folder stays until the new one is in place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_metadata(folder) -> dict:
    path = Path(folder) / MGCL_METADATA
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not an MGCL encoder folder ({e}); write one with nnunet_causal pretrain-text") from e


def load_image_encoder_weights(folder) -> dict:
    """``image_encoder.pth`` of an MGCL folder (the frozen encoder the text encoder was aligned to)."""
    path = Path(folder) / IMAGE_ENCODER
    if not path.is_file():
        raise ModelError(f"{path} does not exist: {folder} is not a complete MGCL encoder folder")
    return load_torch_file(path, "cpu")


def load_image_head(folder, device: str = "cpu"):
    """``(projection, clip_scale, mgcl_scale)`` modules of an MGCL folder, in eval mode."""
    from nnunet_causal.mgcl.image_features import ImageProjection
    from nnunet_causal.mgcl.losses import LogitScale

    state = load_torch_file(Path(folder) / IMAGE_HEAD, device)
    projection = ImageProjection(int(state["image_dim"]), int(state["text_dim"]),
                                 position_dims=int(state.get("position_dims", 0)))  # 0: folders before the term
    projection.load_state_dict(state["projection"])
    scales = []
    for key in ("clip_scale", "mgcl_scale"):
        scale = LogitScale()
        scale.load_state_dict(state[key])
        scales.append(scale.eval())
    return projection.to(device).eval(), *scales

