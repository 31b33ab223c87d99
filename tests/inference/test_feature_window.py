"""Feature-space sliding window + chunked export == nnU-Net's logit path , 2D end to end and 3D with
resampling to the original spacing, both resampling modes."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from nnunet_causal.inference.predict_text_entry import main
from nnunet_causal.inference.text_predictor import PredictionOptions, nnUNetTextPredictor
from tests.inference.tiny_model import find_our_trainers, make_model_folder, tiny_plans, use_fake_encoder


class _Float32Torch:
    """``torch`` for nnU-Net's predictor module with ``torch.half`` meaning float32: its logit aggregation is
    then float32 too, so the two paths can be compared to float32 precision (float16 rounds ~1e-2 there)."""

    def __getattr__(self, name):
        return torch.float32 if name == "half" else getattr(torch, name)


@pytest.fixture
def float32_reference(monkeypatch):
    import nnunetv2.inference.predict_from_raw_data as pfr
    monkeypatch.setattr(pfr, "torch", _Float32Torch())


def _images(folder, n=2, shape=(40, 56)):
    from PIL import Image
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(folder / f"c{i}_0000.png")


def test_feature_path_equals_logit_path_end_to_end_2d(tmp_path, monkeypatch, float32_reference):
    from PIL import Image

    use_fake_encoder(monkeypatch)
    find_our_trainers(monkeypatch)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    model = make_model_folder(tmp_path)
    _images(tmp_path / "in")
    args = ["-i", str(tmp_path / "in"), "-m", str(model), "-f", "0", "-device", "cpu", "-prompts", "lesion", "marker",
            "a purple dragon", "--open_vocabulary", "--save_binary", "--save_probabilities", "--disable_progress_bar",
            "-npp", "1", "-nps", "1"]
    used = []
    real = nnUNetTextPredictor.predict_case_from_features
    monkeypatch.setattr(nnUNetTextPredictor, "predict_case_from_features",
                        lambda self, *a, **k: used.append(1) or real(self, *a, **k))
    assert main([*args, "-o", str(tmp_path / "feat")]) == 0
    assert len(used) == 2
    monkeypatch.setattr(nnUNetTextPredictor, "uses_feature_window", lambda self: False)
    assert main([*args, "-o", str(tmp_path / "logit")]) == 0
    for case in ("c0", "c1"):
        a, b = (np.asarray(Image.open(tmp_path / d / f"{case}.png")) for d in ("feat", "logit"))
        assert a.shape == (40, 56) and np.array_equal(a, b)
        assert len(np.unique(a)) > 1  # the random model segments something: the comparison is not vacuous
        pa, pb = (np.load(tmp_path / d / f"{case}.npz")["probabilities"] for d in ("feat", "logit"))
        assert pa.shape == pb.shape == (4, 1, 40, 56) and pa.dtype == pb.dtype == np.float32
        np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-5)
        ra, rb = (json.loads((tmp_path / d / f"{case}.prompts.json").read_text())["prompts"] for d in ("feat", "logit"))
        for x, y in zip(ra, rb):
            assert x["voxel_count"] == y["voxel_count"] and x["binary_voxel_count"] == y["binary_voxel_count"]
            assert x["max_probability"] == pytest.approx(y["max_probability"], abs=1e-5)
            assert x["present"] is None and "no presence head" in x["presence_calibration"]  # old model: unknown
            ma, mb = (np.asarray(Image.open(tmp_path / d / x["binary_mask"])) for d in ("feat", "logit"))
            assert np.array_equal(ma, mb)


def _tiny_3d_predictor(monkeypatch, resampling_order=1):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunet_causal.inference.stock_prompts import caller_sets_prompts
    from nnunet_causal.training.text.nnUNetTrainerText import nnUNetTrainerText

    use_fake_encoder(monkeypatch)
    plans = tiny_plans()
    cfg = plans["configurations"].pop("2d")
    arch = cfg["architecture"]["arch_kwargs"]
    arch.update(conv_op="torch.nn.modules.conv.Conv3d", norm_op="torch.nn.modules.instancenorm.InstanceNorm3d",
                kernel_sizes=[[3, 3, 3]] * 3, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    cfg.update(patch_size=[16, 16, 16], spacing=[2.0, 1.0, 1.0], median_image_size_in_voxels=[16.0, 24.0, 24.0],
               normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False])
    cfg["resampling_fn_probabilities_kwargs"]["order"] = resampling_order
    plans["configurations"]["3d_fullres"] = cfg
    plans["image_reader_writer"] = "SimpleITKIO"
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    dj = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "lesion": 1, "marker": 2}, "file_ending": ".nii.gz"}
    torch.manual_seed(0)
    with caller_sets_prompts():
        net = nnUNetTrainerText.build_network_architecture(pm, cm, 1, 3, enable_deep_supervision=False)
    p = nnUNetTextPredictor(device=torch.device("cpu"), allow_tqdm=False, use_mirroring=True)
    p.manual_initialization(net, pm, cm, [copy.deepcopy(net.state_dict())], dj, "nnUNetTrainerText", (0, 1, 2))
    return p


PROPS = {"spacing": [1.25, 1.0, 1.0], "shape_after_cropping_and_before_resampling": (29, 21, 20),
         "shape_before_cropping": (31, 21, 23), "bbox_used_for_cropping": [[1, 30], [0, 21], [2, 22]]}


@pytest.mark.parametrize("mode", ["features", "logits"])
def test_3d_resampling_to_original_spacing_matches_nnunet_export(monkeypatch, float32_reference, mode):
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    p = _tiny_3d_predictor(monkeypatch)
    p.set_prompts(["lesion", "marker", "liver", "spleen"], open_vocabulary=True, use_embedding_resolution=False)
    p.options = PredictionOptions(resample_mode=mode, prompt_chunk_size=2)  # the running argmax crosses chunks
    data = torch.randn(1, 23, 21, 20, generator=torch.Generator().manual_seed(1))
    mine = p.predict_case(data, PROPS, save_probabilities=True)
    assert mine.resample_mode == mode
    mine = {"segmentation": mine.segmentation, "probabilities": mine.probabilities}
    logits = p.predict_logits_from_preprocessed_data(data)
    seg, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, p.plans_manager, p.configuration_manager, p.label_manager, PROPS, return_probabilities=True)
    assert mine["segmentation"].shape == seg.shape == (31, 21, 23)
    assert np.array_equal(mine["segmentation"], seg)  # the paths differ by < 1e-6, the nearest tie is 2.5e-4 apart
    assert 3 in np.unique(seg)  # a label of the second chunk wins somewhere (not vacuous)
    assert mine["probabilities"].dtype == probs.dtype == np.float32
    np.testing.assert_allclose(mine["probabilities"], probs, rtol=0, atol=1e-5)


def test_features_mode_is_refused_for_non_linear_resampling(monkeypatch):
    from nnunet_causal.errors import ModelError

    p = _tiny_3d_predictor(monkeypatch, resampling_order=3)
    p.set_prompts(["lesion"], use_embedding_resolution=False)
    p.options = PredictionOptions(resample_mode="features")
    with pytest.raises(ModelError, match="not linear"):
        p.predict_case(torch.randn(1, 23, 21, 20), PROPS)
    p.options = PredictionOptions(resample_mode="auto")
    assert p.predict_case(torch.randn(1, 23, 21, 20), PROPS).resample_mode == "logits"


def test_cross_attention_connector_keeps_logit_aggregation(monkeypatch):
    p = _tiny_3d_predictor(monkeypatch)
    p.set_prompts(["lesion"], use_embedding_resolution=False)
    assert p.uses_feature_window()
    p.network.connector.image_conditioned = True  # as CrossAttentionConnector
    assert not p.uses_feature_window()
    with pytest.raises(ValueError, match="aggregate logits"):
        p.network.head()
