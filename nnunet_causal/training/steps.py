"""Pieces shared by trainers that replace nnU-Net's ``train_step``."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from torch import autocast

from nnunetv2.utilities.helpers import dummy_context

from nnunet_causal.errors import DatasetError


def device_context(device: torch.device):
    """nnU-Net's rule: autocast on CUDA only."""
    return autocast(device.type, enabled=True) if device.type == "cuda" else dummy_context()


def to_device(batch: dict, device: torch.device):
    data = batch["data"].to(device, non_blocking=True)
    target = batch["target"]
    if isinstance(target, list):
        target = [t.to(device, non_blocking=True) for t in target]
    else:
        target = target.to(device, non_blocking=True)
    return data, target


def optimizer_step(trainer, loss: torch.Tensor) -> None:
    """Backward, gradient clipping at 12 and the optimiser step, with nnU-Net's grad scaler on CUDA."""
    if trainer.grad_scaler is not None:
        trainer.grad_scaler.scale(loss).backward()
        trainer.grad_scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), 12)
        trainer.grad_scaler.step(trainer.optimizer)
        trainer.grad_scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.network.parameters(), 12)
        trainer.optimizer.step()


def split_batch(output: Union[torch.Tensor, List[torch.Tensor]], n: int):
    """Split network outputs (tensor or deep-supervision list) into the first ``n`` samples and the rest."""
    if isinstance(output, (list, tuple)):
        return [o[:n] for o in output], [o[n:] for o in output]
    return output[:n], output[n:]


def highest_resolution(output):
    return output[0] if isinstance(output, (list, tuple)) else output


def paired_halves(batch: dict) -> dict:
    """The first half of ``batch`` twice (data, every target level, keys): rows ``[:n]`` and ``[n:]`` are the
    same samples, for two views of each inside nnU-Net's planned batch size (as the GIN/IPA pairing)."""
    data = batch["data"]
    n = max(1, data.shape[0] // 2)
    target = batch["target"]
    twice = (lambda t: torch.cat([t[:n], t[:n]]))
    out = {**batch, "data": twice(data),
           "target": [twice(t) for t in target] if isinstance(target, list) else twice(target)}
    if batch.get("keys") is not None:
        keys = list(batch["keys"])[:n]
        out["keys"] = keys + keys
    return out


def nonfinite_flags(x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool on ``x``'s device: True for each sample holding a NaN or an infinity. Launches one
    reduction and does not wait for it (no host-device sync); read it with :func:`raise_on_nonfinite`."""
    return ~torch.isfinite(x.flatten(1)).all(1)


def raise_on_nonfinite(flags: torch.Tensor, keys: Optional[Sequence[str]] = None) -> None:
    """A clear :class:`DatasetError` naming the cases whose ``flags`` (from :func:`nonfinite_flags`) are set.

    Call it after the step's own host sync (the loss read back to the CPU), so reading the flags waits for
    nothing: every step is checked at the cost of one reduction and a copy of ``B`` booleans. The step that
    met the bad batch has updated the weights, but training stops before any checkpoint holds them."""
    if bool(flags.any()):
        bad = [str(keys[i]) if keys is not None else f"sample {i}" for i in torch.nonzero(flags).flatten().tolist()]
        raise DatasetError(f"NaN or infinite intensities in case(s) {', '.join(bad)}: fix or remove them before "
                           f"training")
