"""nnUNetTrainerCausalText variants: epoch schedules, one-part-off ablations, parameter-efficient mode."""
import os

import torch

from nnunet_causal.errors import NnunetCausalError
from nnunet_causal.networks.adapters import add_decoder_adapters, freeze_pretrained
from nnunet_causal.networks.pretrained import load_stunet_pretrained
from nnunet_causal.networks.text_plans import PLANS_KEY, get_text_settings
from nnunet_causal.training.causal.nnUNetTrainerCausalText import nnUNetTrainerCausalText
from nnunet_causal.training.causal_losses import CausalLossWeights
from nnunet_causal.training.schedules import (CPUDemoSchedule, CPU2000StepsSchedule, CPU4000StepsSchedule,
                                              CPU5000StepsSchedule, CPULongSchedule)
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


class nnUNetTrainerCausalText_CueBreaking(nnUNetTrainerCausalText):
    """Every sample becomes a counterfactual view, and 60 % of them act on the structure against its
    surroundings (the dictionary's label-aware kinds). Where a lesion's spurious cue is several redundant
    features (colour *and* reflections), a view that breaks one leaves the other; the dictionary's joint entry
    breaks them together and carries the highest ``@weight`` of its kind. Drawing ~ ``weight ** 4`` makes it
    nearly the only one drawn (99.8 % with the shipped endoscopy weights). Such a trainer needs a longer
    schedule than stock to learn shape instead of the cue: on the CPU benchmark (``benchmarks/RESULTS_cpu.md``,
    3 seeds) held-out Dice is about 0.3 at 2000 steps, 0.56-0.62 at 4000 and 0.63-0.65 at 5000 (in-domain 1.8
    points below stock at 1000 steps, 5.2 below stock at 5000), where stock stays near 0.1;
    nnU-Net's own 1000 x 250 steps are far beyond all. :class:`nnUNetTrainerCausalText_CueBreakingFactual50`
    (half of the samples factual) closes most of the in-domain gap."""
    counterfactual_probability = 1.0
    counterfactual_label_aware_probability = 0.6
    counterfactual_weight_exponent = 4.0


class nnUNetTrainerCausalText_CueBreaking_CPULong(CPULongSchedule, nnUNetTrainerCausalText_CueBreaking):
    pass


class nnUNetTrainerCausalText_CPU2000steps(CPU2000StepsSchedule, nnUNetTrainerCausalText):
    pass


class nnUNetTrainerCausalText_CueBreaking_CPU2000steps(CPU2000StepsSchedule, nnUNetTrainerCausalText_CueBreaking):
    pass


class nnUNetTrainerCausalText_CueBreaking_CPU4000steps(CPU4000StepsSchedule, nnUNetTrainerCausalText_CueBreaking):
    pass


class nnUNetTrainerCausalText_CueBreaking_CPU5000steps(CPU5000StepsSchedule, nnUNetTrainerCausalText_CueBreaking):
    pass


class nnUNetTrainerCausalText_CueBreakingPaired(nnUNetTrainerCausalText_CueBreaking):
    """The cue-breaking views paired with their factual samples: half of each batch, every sample once as it
    is and once as do(z), both segmented, plus the symmetric KL between the two predictions (weight 1, as
    IPA's). The factual half is the sources' own frames; the consistency term asks the prediction not to
    move under do(z), which is what the causal audit measures."""
    counterfactual_consistency_weight = 1.0


class nnUNetTrainerCausalText_CueBreakingPaired_CPU2000steps(CPU2000StepsSchedule,
                                                             nnUNetTrainerCausalText_CueBreakingPaired):
    pass


class nnUNetTrainerCausalText_CueBreakingNoGIN(nnUNetTrainerCausalText_CueBreaking):
    """The cue-breaking views without GIN/IPA on top: the dictionary's colour, NBI and exposure entries
    already change the appearance, and a GIN view of a counterfactual view leaves the network almost no
    frame that looks like a real one."""
    image_intervention = "none"


class nnUNetTrainerCausalText_CueBreakingFactual(nnUNetTrainerCausalText_CueBreaking):
    """A fifth of the samples stay factual while the share of views that break the structure's cue stays at
    60 % (0.8 x 0.75): the cue is no more available than in :class:`nnUNetTrainerCausalText_CueBreaking`,
    whose remaining 40 % keep it under whole-image changes only, but the network also sees clean frames."""
    counterfactual_probability = 0.8
    counterfactual_label_aware_probability = 0.75


class nnUNetTrainerCausalText_CueBreakingNoGIN_CPU2000steps(CPU2000StepsSchedule,
                                                            nnUNetTrainerCausalText_CueBreakingNoGIN):
    pass


class nnUNetTrainerCausalText_CueBreakingFactual_CPU2000steps(CPU2000StepsSchedule,
                                                              nnUNetTrainerCausalText_CueBreakingFactual):
    pass


class nnUNetTrainerCausalText_CueBreakingNoGIN_CPU5000steps(CPU5000StepsSchedule,
                                                            nnUNetTrainerCausalText_CueBreakingNoGIN):
    pass


class nnUNetTrainerCausalText_CueBreakingFactual_CPU5000steps(CPU5000StepsSchedule,
                                                              nnUNetTrainerCausalText_CueBreakingFactual):
    pass


class nnUNetTrainerCausalText_CueBreakingFactual40(nnUNetTrainerCausalText_CueBreaking):
    """Two fifths of the samples stay factual and every counterfactual view breaks the structure's cue (60 %,
    as in :class:`nnUNetTrainerCausalText_CueBreaking`); whole-image changes then come with those views and
    with GIN/IPA only. With fewer factual frames the outlines regress towards the mean lesion size (small
    lesions dilated, large ones eroded) where stock follows the colour edge; with two fifths, on the CPU
    benchmark at 5000 steps (3 seeds, ``benchmarks/RESULTS_cpu.md``): held-out Dice 0.67 / 0.59 (stock at
    the same budget 0.08 / 0.06), in-domain 2.1 points below that stock (2.1 on 180 new source frames). The
    audit's price: more weight on the highlights the sources put on lesions ("a frame without specular
    reflections" 0.42 against 0.19 with no factual frames)."""
    counterfactual_probability = 0.6
    counterfactual_label_aware_probability = 1.0


class nnUNetTrainerCausalText_CueBreakingFactual40_CPU5000steps(CPU5000StepsSchedule,
                                                                nnUNetTrainerCausalText_CueBreakingFactual40):
    pass


class nnUNetTrainerCausalText_CueBreakingFactual50(nnUNetTrainerCausalText_CueBreaking):
    """Half of the samples stay factual, the other half are cue-breaking views (every counterfactual view
    includes the label-aware kind): the recommended setting where a structure's colour or contrast against its
    surroundings is the spurious cue. One step along the trade-off measured between
    :class:`nnUNetTrainerCausalText_CueBreaking` (no factual frames: in-domain 5.2 points below stock) and
    :class:`nnUNetTrainerCausalText_CueBreakingFactual40` (2.1 below). On the CPU benchmark at 5000 steps
    (3 seeds, ``benchmarks/RESULTS_cpu.md``): held-out Dice 0.64 / 0.60 (stock at the same budget 0.08 / 0.06),
    in-domain 1.8 points below that stock (1.6 on 180 new source frames), sensitivity to the joint spurious
    cue 0.14 against stock's 0.61. The share was chosen on that benchmark; its siteU (a shift no dictionary
    entry simulates) is the check that it was not fitted to the named shifts only. GIN/IPA still acts on half
    of all samples, factual ones included, as in the parent."""
    counterfactual_probability = 0.5
    counterfactual_label_aware_probability = 1.0


class nnUNetTrainerCausalText_CueBreakingFactual50_CPU5000steps(CPU5000StepsSchedule,
                                                                nnUNetTrainerCausalText_CueBreakingFactual50):
    pass
