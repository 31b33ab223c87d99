"""The network's input normalisation travels from a declared dataset.json through the plans into the network."""
import pytest

from nnunet_causal.data.cross_modality import declare_cross_modality
from nnunet_causal.errors import DatasetError
from nnunet_causal.networks.text_plans import PLANS_KEY
from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText
from nnunet_causal.training.text.plan_settings import add_text_settings
from tests.inference.tiny_model import DATASET_JSON, PLANS, managers, use_fake_encoder


def _network(plans):
    plans_manager, configuration = managers(plans)
    return nnUNetTrainerText.build_network_architecture(plans_manager, configuration, 3, 3, False)


def test_a_declared_dataset_trains_a_rank_normalising_network(monkeypatch):
    use_fake_encoder(monkeypatch)
    monkeypatch.delenv("nnUNet_causal_text_encoder", raising=False)
    declared = declare_cross_modality(DATASET_JSON)
    plans = add_text_settings(PLANS, declared, embed_dim=8)
    assert plans[PLANS_KEY]["input_normalization"] == "rank"
    assert _network(plans).input_normalization.mode == "rank"
    plain = add_text_settings(PLANS, DATASET_JSON, embed_dim=8)
    assert "input_normalization" not in plain[PLANS_KEY]                   # in-modality: nnU-Net's input
    assert _network(plain).input_normalization.mode == "none"
    # settings already in the plans (a model trained before the key existed) keep the network they had
    resumed = add_text_settings({**PLANS, PLANS_KEY: plain[PLANS_KEY]}, declared, embed_dim=8)
    assert "input_normalization" not in resumed[PLANS_KEY]


def test_an_unknown_normalisation_is_one_error_naming_the_key(monkeypatch):
    use_fake_encoder(monkeypatch)
    monkeypatch.delenv("nnUNet_causal_text_encoder", raising=False)
    bad = {**DATASET_JSON, "cross_modality": {"input_normalization": "histogram"}}
    with pytest.raises(DatasetError, match=r"'cross_modality.input_normalization' is 'histogram'; expected one "
                                           r"of none, rank"):
        add_text_settings(PLANS, bad, embed_dim=8)
