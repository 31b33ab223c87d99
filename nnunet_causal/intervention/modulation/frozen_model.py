"""Load one fold of a trained text model through nnU-Net's predictor, frozen (shared by ``train-tci`` and the
intervention session)."""
from __future__ import annotations

import torch

from nnunet_causal.errors import ModelError
from nnunet_causal.inference.model_folder import ModelFolder, parse_fold, unwrap_network

__all__ = ["load_frozen_predictor", "parse_fold"]


def load_frozen_predictor(model_folder, fold="0", checkpoint: str = "checkpoint_final.pth",
                          device: torch.device = torch.device("cpu"), use_mirroring: bool = True,
                          step_size: float = 0.5):
    """An :class:`~nnunet_causal.inference.text_predictor.nnUNetTextPredictor` of ``fold`` whose network holds
    that fold's weights, in eval mode, every parameter frozen. Checks the folder first (clear errors)."""
    from nnunet_causal.inference.text_predictor import nnUNetTextPredictor
    from nnunet_causal.networks.text_network import TextPromptedSegmentationNetwork

    fold = parse_fold(fold)
    ModelFolder(model_folder).check([fold], checkpoint)
    predictor = nnUNetTextPredictor(tile_step_size=step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                    perform_everything_on_device=device.type == "cuda", device=device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), (fold,), checkpoint)
    net = unwrap_network(predictor.network)
    if not isinstance(net, TextPromptedSegmentationNetwork):
        raise ModelError(f"{model_folder} holds a {type(net).__name__}, not a text-prompted network: test-time "
                         f"intervention needs a model trained with -tr nnUNetTrainerText (or a variant)")
    net.load_state_dict(predictor.list_of_parameters[0])
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    predictor.network = net
    return predictor
