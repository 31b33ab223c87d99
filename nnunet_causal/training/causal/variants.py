"""nnUNetTrainerCausalText variants: epoch schedules, one-part-off ablations, parameter-efficient mode."""
import os

import torch

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.causal_losses import CausalLossWeights
from nnunet_causal.training.schedules import CPUDemoSchedule, CPULongSchedule
from nnunet_causal.training.text.nnUNetTrainerText import unwrap_network


class nnUNetTrainerCausalText_1epoch(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1


class nnUNetTrainerCausalText_2epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2


class nnUNetTrainerCausalText_5epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5


class nnUNetTrainerCausalText_10epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 10


class nnUNetTrainerCausalText_20epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 20


class nnUNetTrainerCausalText_50epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 50


class nnUNetTrainerCausalText_100epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 100


class nnUNetTrainerCausalText_250epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 250


class nnUNetTrainerCausalText_500epochs(nnUNetTrainerCausalText):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 500


# ---------------------------------------------------------------- ablations: each turns one part off
class nnUNetTrainerCausalText_NoMTRS(nnUNetTrainerCausalText):
    """Intervene at every bottleneck position (alpha = 1)."""
    mtrs_alpha = 1.0


class nnUNetTrainerCausalText_NoBottleneck(nnUNetTrainerCausalText):
    """No confounder cross-attention (the text projection for the losses stays)."""
    confounder_layers = 0


class nnUNetTrainerCausalText_NoLAD(nnUNetTrainerCausalText):
    """No linguistic adversarial disentanglement loss (lambda3 = 0)."""
    loss_weights = CausalLossWeights(lad=0.0)


class nnUNetTrainerCausalText_NoCausalLoss(nnUNetTrainerCausalText):
    """No L_causal (lambda1 = 0)."""
    loss_weights = CausalLossWeights(causal=0.0)


class nnUNetTrainerCausalText_NoImageIntervention(nnUNetTrainerCausalText):
    """No GIN/IPA image interventions."""
    image_intervention = "none"


class nnUNetTrainerCausalText_GINOnly(nnUNetTrainerCausalText):
    """GIN without IPA blending."""
    image_intervention = "gin"


# ---------------------------------------------------------------- parameter-efficient mode
PRETRAINED_ENCODER_VARIABLE = "nnUNet_causal_pretrained_encoder"


class nnUNetTrainerCausalText_FrozenEncoder(nnUNetTrainerCausalText):
    """Freeze a pretrained image encoder; train decoder, text head and causal modules only (seed 000 trains
    under 9% of the parameters this way).

    The encoder weights come from ``$nnUNet_causal_pretrained_encoder``: an nnU-Net checkpoint
    (``checkpoint_final.pth`` of any earlier run on the same plans, keys ``encoder.*`` or
    ``backbone.encoder.*``) or a released STU-Net checkpoint (``.model`` / ``.pth``) for STUNet plans.
    The trainable fraction of parameters is logged.
    """

    def configure_optimizers(self):
        path = os.environ.get(PRETRAINED_ENCODER_VARIABLE)
        if not path:
            raise NnunetCausalError(f"{type(self).__name__} needs pretrained encoder weights: export "
                                    f"{PRETRAINED_ENCODER_VARIABLE}=/path/to/checkpoint_final.pth (or a STU-Net "
                                    f".model file)")
        from nnunet_causal.networks.pretrained import load_encoder_weights
        net = unwrap_network(self.network)
        report = load_encoder_weights(net.backbone, path)
        for p in net.backbone.encoder.parameters():
            p.requires_grad_(False)
        total = sum(p.numel() for p in net.parameters())
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        self.trainable_fraction = trainable / total
        self.print_to_log_file(f"frozen encoder from {path} ({report['loaded']} tensors); trainable parameters "
                               f"{trainable:,} of {total:,} ({100 * self.trainable_fraction:.2f}%)")
        self.optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], self.initial_lr,
                                         weight_decay=self.weight_decay, momentum=0.99, nesterov=True)
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
        return self.optimizer, PolyLRScheduler(self.optimizer, self.initial_lr, self.num_epochs)


class nnUNetTrainerCausalText_CPUDemo(CPUDemoSchedule, nnUNetTrainerCausalText):
    """Short CPU schedule (see :class:`~nnunet_causal.training.schedules.CPUDemoSchedule`)."""


class nnUNetTrainerCausalText_NoImageIntervention_CPUDemo(nnUNetTrainerCausalText_CPUDemo):
    """The CPU-demo schedule without GIN/IPA (benchmark ablation)."""
    image_intervention = "none"


class nnUNetTrainerCausalText_AlwaysIntervene(nnUNetTrainerCausalText):
    """GIN/IPA views of every training sample (``intervention_probability = 1.0``) instead of half of them."""
    intervention_probability = 1.0


# ---------------------------------------------------------------- counterfactual views (dictionary do(z))
class nnUNetTrainerCausalText_NoCounterfactual(nnUNetTrainerCausalText):
    """No counterfactual views: the confounder dictionary acts on features only (the trainer before the
    dictionary gained simulators)."""
    counterfactual_views = False


class nnUNetTrainerCausalText_CPULong(CPULongSchedule, nnUNetTrainerCausalText):
    """The robustness benchmark's CPU schedule (see :class:`~nnunet_causal.training.schedules.CPULongSchedule`)."""


class nnUNetTrainerCausalText_NoCounterfactual_CPULong(CPULongSchedule, nnUNetTrainerCausalText_NoCounterfactual):
    pass
