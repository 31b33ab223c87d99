"""nnUNetTrainerCausalText variants, one change each: one-part-off ablations, the generic recipe, the
parameter-efficient mode. Training lengths (``_5epochs``, ``_CPUDemo``...) are not written here: the catalogue
(:mod:`nnunet_causal.training.catalogue`) applies every schedule to every class."""
import os

import torch

from nnunet_causal.confounders.recipe import CounterfactualRecipe
from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.networks.adapters import add_decoder_adapters, freeze_pretrained
from nnunet_causal.networks.pretrained import load_stunet_pretrained
from nnunet_causal.networks.text_plans import PLANS_KEY, get_text_settings
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.causal_losses import CausalLossWeights
from nnunet_causal.training.text.nnUNetTrainerText import unwrap_network


# ---------------------------------------------------------------- ablations: each turns one part off
class nnUNetTrainerCausalText_NoPresence(nnUNetTrainerCausalText):
    """The presence ablation: no presence head, no presence loss, no calibration (``present: null``)."""
    presence_hidden_dim = None


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
ALLOW_PARTIAL_VARIABLE = "nnUNet_causal_pretrained_allow_partial"


class nnUNetTrainerCausalText_FrozenEncoder(nnUNetTrainerCausalText):
    """Parameter-efficient mode: freeze what the pretrained model knows, the encoder AND the decoder, and
    train only the text connector, the confounder bottleneck, the backbone's 1x1 output layers (decoder
    features -> voxel embedding) and rank-``adapter_rank`` LoRA adapters on the decoder's spatial
    convolutions (seed 000 trains under 9% of the parameters; measured here with rank 8 and a 2-prompt head:
    STU-Net-B 2.1%, -L 0.7%, 3D PlainConvUNet 3.1%).

    The adapters are this package's (:mod:`nnunet_causal.networks.adapters`), not ``peft``'s: peft renames
    the wrapped weights (``conv1.base_layer.weight``), which breaks loading released STU-Net checkpoints and
    nnU-Net's strict load at prediction; ours subclass ``nn.Conv3d`` so frozen weights keep their keys.
    The rank is written into the plans (``"nnunet_causal": {"adapters": {"rank": r}}``), so the predictor,
    which builds through this class's static builder, rebuilds the same network.

    The backbone weights come from ``$nnUNet_causal_pretrained_encoder``: an nnU-Net checkpoint
    (``checkpoint_final.pth`` of any earlier run on the same plans, keys ``encoder.*`` / ``decoder.*`` or
    ``backbone.*``) or a released STU-Net checkpoint (``.model`` / ``.pth``) for plans written by
    ``nnunet_causal plan-stunet``. Every encoder and decoder weight must be found (output layers excepted);
    ``$nnUNet_causal_pretrained_allow_partial=1`` loads only what fits and logs what was not loaded.
    The trainable fraction of parameters is logged.
    """
    adapter_rank = 8

    def _plans_with_text_settings(self, plans: dict, dataset_json: dict) -> dict:
        previous = (plans.get(PLANS_KEY) or {}).get("adapters")  # a model folder's / resumed run's choice
        plans = super()._plans_with_text_settings(plans, dataset_json)
        plans[PLANS_KEY]["adapters"] = previous or {"where": "decoder", "rank": int(self.adapter_rank)}
        return plans

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        network = nnUNetTrainerCausalText.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision)
        adapters = get_text_settings(plans_manager.plans).get("adapters")
        if adapters:  # absent only in plans of models trained before adapters existed
            add_decoder_adapters(network, int(adapters["rank"]))
        return network

    def configure_optimizers(self):
        path = os.environ.get(PRETRAINED_ENCODER_VARIABLE)
        if not path:
            raise NnunetCausalError(f"{type(self).__name__} needs pretrained backbone weights: export "
                                    f"{PRETRAINED_ENCODER_VARIABLE}=/path/to/checkpoint_final.pth (or a STU-Net "
                                    f".model file)")
        allow_partial = os.environ.get(ALLOW_PARTIAL_VARIABLE, "0").lower() in ("1", "true", "yes")
        net = unwrap_network(self.network)
        report = load_stunet_pretrained(net.backbone, path, only=("encoder.", "decoder."),
                                        allow_partial=allow_partial)
        if allow_partial and (report["missing"] or report["unused"] or report["mismatched"]):
            self.print_to_log_file(f"partial load of {path}: not in the checkpoint {report['missing']}; "
                                   f"no place in the network {report['unused']}; shape {report['mismatched']}")
        trainable, total = freeze_pretrained(net)
        rank = (get_text_settings(self.plans_manager.plans).get("adapters") or {}).get("rank")
        self.trainable_fraction = trainable / total
        self.print_to_log_file(f"frozen encoder and decoder from {path} ({len(report['loaded'])} tensors); "
                               f"trainable parameters {trainable:,} of {total:,} "
                               f"({100 * self.trainable_fraction:.2f}%): text connector, confounder bottleneck, "
                               f"output layers, rank-{rank} decoder adapters")
        self.optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], self.initial_lr,
                                         weight_decay=self.weight_decay, momentum=0.99, nesterov=True)
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
        return self.optimizer, PolyLRScheduler(self.optimizer, self.initial_lr, self.num_epochs)


class nnUNetTrainerCausalText_AlwaysIntervene(nnUNetTrainerCausalText):
    """GIN/IPA views of every training sample (``intervention_probability = 1.0``) instead of the recipe's share."""
    intervention_probability = 1.0


# ---------------------------------------------------------------- counterfactual views (dictionary do(z))
class nnUNetTrainerCausalText_NoCounterfactual(nnUNetTrainerCausalText):
    """No counterfactual views: the confounder dictionary acts on features only."""
    counterfactual_views = False


class nnUNetTrainerCausalText_GenericRecipe(nnUNetTrainerCausalText):
    """The generic recipe (:class:`~nnunet_causal.confounders.recipe.CounterfactualRecipe`'s defaults: 70 % of
    the samples become a view, every kind drawn with probability 0.5, the label-aware one too, entry weights as
    written) in place of the dictionary's header: on the endoscopy and CT families, the baseline the header's
    recipe is measured against; on MRI, whose header holds this recipe, the same as the default."""
    counterfactual_recipe = CounterfactualRecipe()
