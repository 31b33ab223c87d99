"""nnUNetTrainerCausalText: the text trainer plus causal interventions on features and images.

What it adds to :class:`~nnunet_causal.training.text.nnUNetTrainerText.nnUNetTrainerText`:

* the confounder cross-attention bottleneck with MTRS (seed 001; :mod:`nnunet_causal.networks.confounder_attention`)
  over the dataset's confounder dictionary (:mod:`nnunet_causal.text.confounders`), whose embeddings are
  computed once and saved with the network;
* L_causal, L_contrast (seed 001) and L_LAD (seed 000) on bottleneck features projected to text space
  (:mod:`nnunet_causal.training.causal_losses`), ``loss = L_seg + g(epoch) (l1 L_causal + l2 L_contrast)
  + l3 L_LAD`` with ``g = 0`` during the first ``warmup_fraction`` of the epochs (also gating the
  bottleneck's intervention);
* counterfactual views (on by default): per sample, dictionary confounders set by do(z) on the image
  (:mod:`nnunet_causal.confounders.counterfactual`, label-aware ones included), so the segmentation sees
  each named confounder with and without the anatomy it co-occurred with;
* GIN + IPA image interventions on a random half of the samples (device side, without IPA's paired
  consistency term, which would double the batch; see :mod:`nnunet_causal.training.gin.nnUNetTrainerGIN`);
* optionally (``counterfactual_consistency_weight > 0``) paired views: half of the planned batch, each sample
  once factual and once as its counterfactual do(z) view, both with the segmentation loss, plus
  ``w * symmetric KL`` between the two predictions (IPA's consistency term, Ouyang et al. TMI 2022, applied to
  the dictionary's interventions). It penalises what the causal audit measures, a prediction that moves
  under do(z), while the factual half keeps the sources' own frames in training.

Style descriptions for LAD describe the view the network actually sees: each case's domain record (site,
scanner, modality, its ``style`` text), the descriptions of the confounders drawn for its counterfactual
view (the *known* z) and words measured on the final view after every intervention (noise, contrast,
sharpness; :mod:`~nnunet_causal.training.causal.style_words`, chosen on the device), embedded as a bag of
these parts (cached; see :meth:`~nnUNetTrainerCausalText.style_embeddings`), or ``style_captioner(image) -> str``
when a subclass sets one. A case without a domain record uses the rest (logged once). L_contrast gets each sample's known style as an extra
negative. L_causal, L_contrast, L_LAD and the gate are logged per epoch (training log, the checkpoint's
logging and ``progress_causal.png`` beside nnU-Net's ``progress.png``).

Every option is a class attribute; ablations are one-line subclasses (``variants.py``), schedules are generated
for every trainer by :mod:`nnunet_causal.training.catalogue`. The counterfactual recipe (share of views, of
label-aware views, weight exponent, GIN/IPA share, consistency weight) is the header of the dataset's
confounder dictionary (:mod:`nnunet_causal.confounders.recipe`, ``docs/trainers.md``).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch.nn import functional as F

from nnunet_causal.augmentation.gin import check_patch, gin, ipa, mix_with_original, symmetric_kl
from nnunet_causal.training.causal.domains import domain_fallback
from nnunet_causal.training.causal.loss_logging import CausalLossLogging
from nnunet_causal.training.causal.style_words import (MEASURED_WORDS, measured_word_index,
                                                       patch_style_words)
from nnunet_causal.training.counterfactual.nnUNetTrainerCounterfactual import (CounterfactualMixin,
                                                                               label_map_for_simulators)
from nnunet_causal.networks.builder import build_text_network
from nnunet_causal.networks.confounder_attention import ConfounderCrossAttention
from nnunet_causal.networks.text_plans import get_text_settings
from nnunet_causal.training.text.plan_settings import add_text_settings
from nnunet_causal.training.causal_losses import (CausalLossWeights, class_fractions, label_fractions,
                                                  progressive_gate, total_causal_loss)
from nnunet_causal.training.steps import (device_context, highest_resolution, nonfinite_flags, optimizer_step,
                                         paired_halves, raise_on_nonfinite, split_batch, to_device)
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText, unwrap_network


class nnUNetTrainerCausalText(CausalLossLogging, CounterfactualMixin, nnUNetTrainerText):
    # ---- MCDRL bottleneck
    confounder_layers = 3          # L; 0 = no intervention (ablation)
    mtrs_alpha = 0.5               # fraction of bottleneck positions intervened on; 1.0 = no MTRS
    bottleneck_width = 64
    # ---- losses and schedule
    loss_weights = CausalLossWeights()  # lambda1 0.5, lambda2 0.1, lambda3 0.1, tau 0.5
    warmup_fraction = 0.2
    # ---- image interventions
    counterfactual_views = True     # dictionary do(z) views (CounterfactualMixin settings)
    # the next three, like the counterfactual_* settings: None = from the dictionary's recipe
    # (nnunet_causal.confounders.recipe); a subclass that sets one pins it
    image_intervention: Optional[str] = None               # "gin_ipa" | "gin" | "none"
    intervention_probability: Optional[float] = None       # fraction of samples that get a GIN/IPA view
    counterfactual_consistency_weight: Optional[float] = None  # > 0: paired factual / do(z) views + w * sym. KL
    # ---- LAD style descriptions
    style_captioner: Optional[Callable[[np.ndarray], str]] = None

    def _plans_with_text_settings(self, plans: dict, dataset_json: dict) -> dict:
        from nnunet_causal.text.confounders import confounders_for_dataset
        causal = {"confounders": confounders_for_dataset(dataset_json), "layers": self.confounder_layers,
                  "alpha": self.mtrs_alpha, "width": self.bottleneck_width}
        return add_text_settings(plans, dataset_json, embed_dim=self.text_embed_dim, connector=self.text_connector,
                                 causal=causal)

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        return build_text_network(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                  enable_deep_supervision, bottleneck_factory=_confounder_bottleneck)

    # ------------------------------------------------------------------ set-up
    def _embed_prompts(self) -> None:
        super()._embed_prompts()
        from nnunet_causal.text.embedding_cache import get_text_encoder

        settings = get_text_settings(self.plans_manager.plans)
        encoder = get_text_encoder(settings["text_encoder"])
        confounders = settings["causal"]["confounders"]
        net = unwrap_network(self.network)
        net.bottleneck.set_confounder_embeddings(encoder.encode(confounders))
        anchors = []
        for names in settings["prompts"].values():
            e = encoder.encode([f"a {names[0]} with {c[0].lower() + c[1:]}" for c in confounders]).mean(0)
            anchors.append(F.normalize(e, dim=0))
        self._anchors = torch.stack(anchors).to(self.device)
        self._encoder = encoder
        self._domains: Dict[str, dict] = self.dataset_json.get("domains") or {}
        fallback = domain_fallback(self.dataset_json)
        if fallback:
            self.print_to_log_file(f"causal: {fallback}")
        self._warned_missing_domain = not self._domains  # the line above said it for every case
        self.print_to_log_file(f"causal: {len(confounders)} confounders, L={net.bottleneck.num_layers}, "
                               f"alpha={net.bottleneck.alpha}, weights={self.loss_weights}, "
                               f"warm-up {self.warmup_fraction:.0%} of {self.num_epochs} epochs, "
                               f"image intervention: {self.image_intervention}")

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._gate = progressive_gate(self.current_epoch, self.num_epochs, self.warmup_fraction)
        unwrap_network(self.network).bottleneck.gate.fill_(self._gate)
        if self.current_epoch == int(round(self.warmup_fraction * self.num_epochs)):
            self.print_to_log_file("causal intervention switched on")

    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        unwrap_network(self.network).return_aux = False

    # ------------------------------------------------------------------ LAD style texts
    def on_train_start(self):
        if self.counterfactual_views:
            super().on_train_start()
        else:
            nnUNetTrainerText.on_train_start(self)
            self.settle_recipe()

    def _described_parts(self, keys, known: Optional[List[List[str]]]) -> List[List[str]]:
        """The host-side parts of each description: the domain record (or "an image") and the known z."""
        parts = []
        for b, key in enumerate(keys):
            rec = self._domains.get(str(key))
            if rec is None:
                if not self._warned_missing_domain:
                    self.print_to_log_file(f"WARNING: no domain record for case {key} (and maybe others): its "
                                           f"style description uses measured statistics only")
                    self._warned_missing_domain = True
                head = "an image"
            else:
                head = f"{rec.get('modality', 'image')} from {rec.get('site') or rec['domain']}, {rec['style']}"
            parts.append([head, *((known[b] if known is not None else None) or [])])
        return parts

    def style_parts(self, keys, data: torch.Tensor, known: Optional[List[List[str]]] = None) -> List[List[str]]:
        """The parts of each sample's style description of the view ``data`` the network sees: its domain
        record (or "an image"), the descriptions of the confounders set on it (``known[b]``, its
        counterfactual z) and the words measured on the view (readable form; reads statistics to the host)."""
        return [ps + [f"an image with {words}"]
                for ps, words in zip(self._described_parts(keys, known), patch_style_words(data))]

    def _measured_word_table(self, device: torch.device) -> torch.Tensor:
        """(18, D) embeddings of every measured description (:data:`MEASURED_WORDS`), embedded once."""
        table = getattr(self, "_measured_word_embeddings", None)
        if table is None or table.device != device:
            table = self._encoder.encode([f"an image with {w}" for w in MEASURED_WORDS]).to(device)
            self._measured_word_embeddings = table
        return table

    def style_embeddings(self, keys, data: torch.Tensor, known: Optional[List[List[str]]] = None) -> torch.Tensor:
        """(B, D) unit-norm style embeddings, the normalised mean of the embeddings of the parts that
        :meth:`style_parts` lists (a bag of parts). Each part comes from a small finite set (domains, dictionary
        entries, the 18 measured descriptions), so every part is served from the embedding cache; embedding
        the joined sentence instead would meet a new text at nearly every step (the combinations of drawn
        confounders) and run the text encoder on the CPU each time. The measured part is chosen on the
        device (:func:`measured_word_index`, a gather from :meth:`_measured_word_table`): no host sync."""
        if self.style_captioner is not None:
            return self._encoder.encode([self.style_captioner(d.detach().cpu().numpy()) for d in data])
        described = self._described_parts(keys, known)
        unique = sorted({p for ps in described for p in ps})
        emb = self._encoder.encode(unique)
        index = {p: i for i, p in enumerate(unique)}
        host_sum = torch.stack([emb[[index[p] for p in ps]].sum(0) for ps in described])
        measured = self._measured_word_table(data.device)[measured_word_index(data)]
        counts = torch.tensor([len(ps) + 1 for ps in described], dtype=host_sum.dtype)[:, None]
        return F.normalize((host_sum.to(data.device, non_blocking=True) + measured) /
                           counts.to(data.device, non_blocking=True), dim=1)

    # ------------------------------------------------------------------ training step
    def _image_intervention(self, data: torch.Tensor) -> torch.Tensor:
        if self.image_intervention == "none":
            return data
        with torch.no_grad():
            if self.image_intervention == "gin":
                views = gin(data)
            else:  # half of each batch as GIN views, half as IPA views (no second forward pass)
                n = data.shape[0] // 2
                views = torch.cat([gin(data[:n]), ipa(data[n:])]) if n else gin(data)
            return mix_with_original(views, data, self.intervention_probability)

    def paired_views(self) -> bool:
        return self.counterfactual_views and self.counterfactual_consistency_weight > 0

    def train_step(self, batch: dict) -> dict:
        if self.paired_views():
            batch = paired_halves(batch)
        with self.masked_prompts(batch):
            return self._causal_train_step(batch)

    def _causal_train_step(self, batch: dict) -> dict:
        data, target = to_device(batch, self.device)
        keys = batch.get("keys", [f"sample {i}" for i in range(data.shape[0])])
        check_patch(data)
        flags = nonfinite_flags(data)  # read after the step's own sync: every step checked, nothing waits
        known = None
        n = data.shape[0] // 2 if self.paired_views() else 0   # paired: rows [:n] stay factual, [n:] get do(z)
        if self.counterfactual_views:
            t0 = target[0] if isinstance(target, list) else target
            with torch.no_grad():
                cf = self.counterfactual_sampler()(data[n:], label_map_for_simulators(t0[n:], self.label_manager))
            self.last_counterfactual = cf
            data = torch.cat([data[:n], cf.data]) if n else cf.data
            known = [[] for _ in range(n)] + list(cf.descriptions)
        data = self._image_intervention(data)
        styles = None
        if self.loss_weights.lad > 0 or known is not None:  # describes the view the network sees
            styles = self.style_embeddings(keys, data, known).to(self.device)
        net = unwrap_network(self.network)
        net.return_aux = True
        self.optimizer.zero_grad(set_to_none=True)
        with device_context(self.device):
            output, aux = self.network(data)
            seg = self.loss(output, target)
            t0 = target[0] if isinstance(target, list) else target
            k = net.num_prompts
            grid = aux["grid"]
            fractions = class_fractions(t0[:, :k].float(), grid) if self.label_manager.has_regions \
                else label_fractions(t0, k, grid)
            parts = total_causal_loss(aux, None, aux["text_embeddings"], self._anchors,
                                      net.bottleneck.confounder_embeddings, styles, self.loss_weights,
                                      getattr(self, "_gate", 1.0), aux["grid"],
                                      known_styles=styles if known is not None else None, fractions=fractions)
            loss = seg + parts["total"]
            if n:
                # per-prompt sigmoid outputs (PromptDiceBCELoss); channel 0 is the constant background logit
                logits = highest_resolution(output)
                logits = logits if self.label_manager.has_regions else logits[:, 1:]
                factual, counterfactual = split_batch(logits, n)
                parts["consistency"] = symmetric_kl(factual.float(), counterfactual.float(), sigmoid=True)
                loss = loss + self.counterfactual_consistency_weight * parts["consistency"]
        optimizer_step(self, loss)
        out = {"loss": loss.detach().cpu().numpy(), "seg_loss": seg.detach().cpu().numpy()}
        for name in ("causal", "contrast", "lad", "consistency"):
            if name in parts:
                out[f"l_{name}"] = parts[name].detach().cpu().numpy()
        raise_on_nonfinite(flags, keys)
        return out


def _confounder_bottleneck(configuration_manager, settings: dict):
    causal = settings.get("causal")
    if not causal:
        raise ValueError("plans lack the 'causal' settings of nnUNetTrainerCausalText")
    channels = configuration_manager.network_arch_init_kwargs["features_per_stage"][-1]
    return ConfounderCrossAttention(channels, len(causal["confounders"]), settings["text_dim"],
                                    d_model=causal["width"], num_layers=causal["layers"], alpha=causal["alpha"])
