"""Child processes of the fault catalogue: each publishes numbered versions of one output in a loop until it is
killed (``python -m tests.faults.fault_children KIND FOLDER FIRST LAST``).

* ``checkpoint``: nnUNetTrainerText.save_checkpoint (the training's write path) of epoch FIRST..LAST to
  ``FOLDER/checkpoint_latest.pth``;
* ``encoder``: the MGCL encoder folder (``write_encoder_folder``) of version FIRST..LAST to ``FOLDER/encoder``.
Each version is recognisable: the checkpoint's epoch, the encoder's ``text.txt`` and its metadata's ``epochs``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch


def write_checkpoint(folder: Path, epoch: int) -> None:
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    t = nnUNetTrainerText.__new__(nnUNetTrainerText)
    t.local_rank, t.disable_checkpointing, t.is_ddp = 0, False, False
    torch.manual_seed(epoch)
    t.network = torch.nn.Linear(256, 256)
    t.optimizer = torch.optim.SGD(t.network.parameters(), 0.1)
    t.grad_scaler, t._best_ema, t.current_epoch = None, 0.5, epoch - 1   # nnU-Net saves current_epoch + 1
    t.logger = SimpleNamespace(get_checkpoint=lambda: {"train_losses": [float(epoch)]})
    t.my_init_kwargs, t.inference_allowed_mirroring_axes = {}, (0, 1)
    t.save_checkpoint(str(folder / "checkpoint_latest.pth"))


class _Text:
    dim = 8

    def __init__(self, version: int):
        self.version = version

    def save(self, folder: Path) -> None:
        (Path(folder) / "text.txt").write_text(f"version {self.version}\n" + "x" * 20000)


def write_encoder(folder: Path, version: int) -> None:
    from nnunet_causal.mgcl.encoder_folder import write_encoder_folder

    s = SimpleNamespace(encoder="minilm", tune="last_k", last_k=1, lora_rank=4, model_folder=str(folder), fold="0",
                        extractor="rules", captions_per_organ=1, epochs=version, laterality_negatives=True,
                        text_contrast_weight=0.0)
    run = SimpleNamespace(out=folder / "encoder", text=_Text(version), projection=torch.nn.Linear(8, 8),
                          clip_scale=torch.nn.Linear(1, 1), mgcl_scale=torch.nn.Linear(1, 1), image_dim=8,
                          position_dims=0, encoder=torch.nn.Linear(64, 64),
                          info={"plans": {"plans_name": "p"}, "configuration": "2d", "checkpoint": "c.pth"},
                          history=[{"epoch": 0, "loss": 1.0}], s=s, folders=folder, report_path=None, counts={})
    write_encoder_folder(run)


def main(argv) -> None:
    kind, folder, first, last = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    write = {"checkpoint": write_checkpoint, "encoder": write_encoder}[kind]
    for version in range(first, last + 1):
        write(folder, version)
        (folder / "published.txt").write_text(str(version))


if __name__ == "__main__":
    main(sys.argv[1:])
