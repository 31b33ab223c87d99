"""GIN and IPA: appearance changes, geometry and statistics kept, per-sample randomness, errors."""
import pytest
import torch

from nnunet_causal.augmentation.gin import GINTransform, check_batch, gin, ipa, smooth_mask, symmetric_kl
from nnunet_causal.errors import DatasetError


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 16, 16), (2, 2, 16, 16), (2, 4, 6, 8, 8)])
def test_gin_changes_appearance_keeps_shape_and_statistics(shape):
    x = torch.randn(shape) * 2 + 1
    y = gin(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().mean() > 1e-3
    dims = tuple(range(2, x.ndim))
    # a * renormalised + (1 - a) * x has the input's mean exactly
    torch.testing.assert_close(y.mean(dims), x.mean(dims), atol=1e-4, rtol=1e-4)


def test_gin_is_random_per_sample():
    x = torch.randn(1, 3, 16, 16).repeat(2, 1, 1, 1)
    y = gin(x)
    assert not torch.allclose(y[0], y[1])


def test_constant_channel_stays_finite():
    x = torch.randn(2, 2, 16, 16)
    x[:, 1] = 3.0
    y = gin(x)
    assert torch.isfinite(y).all() and torch.all(y[:, 1] == 3.0)


def test_ipa_mask_smooth_and_bounded():
    m = smooth_mask((32, 32), 2)
    assert m.min() >= 0 and m.max() <= 1
    assert (m[..., 1:, :] - m[..., :-1, :]).abs().max() < 0.2  # low frequency
    assert ipa(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_transform_only_touches_the_image():
    seg = torch.randint(0, 2, (1, 16, 16))
    out = GINTransform()(image=torch.randn(3, 16, 16), segmentation=seg.clone())
    assert torch.equal(out["segmentation"], seg) and out["image"].shape == (3, 16, 16)


def test_bad_batches_raise_clear_errors():
    x = torch.randn(2, 1, 8, 8)
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(DatasetError, match="case_b"):
        check_batch(x, ["case_a", "case_b"])
    with pytest.raises(DatasetError, match="smaller than"):
        check_batch(torch.randn(1, 1, 2, 8, 8), ["c"])


def test_symmetric_kl_zero_for_equal_predictions():
    a = torch.randn(2, 3, 8, 8)
    assert symmetric_kl(a, a) < 1e-6 and symmetric_kl(a, torch.randn(2, 3, 8, 8)) > 0
    assert symmetric_kl(a, a, sigmoid=True) < 1e-6


def test_mix_with_original_keeps_a_fraction_clean():
    import pytest
    import torch

    from nnunet_causal.augmentation.gin import mix_with_original

    x = torch.zeros(400, 1, 2, 2)
    views = torch.ones_like(x)
    assert mix_with_original(views, x, 1.0) is views
    torch.testing.assert_close(mix_with_original(views, x, 0.0), x)
    mixed = mix_with_original(views, x, 0.5, generator=torch.Generator().manual_seed(0))
    per_sample = mixed.flatten(1)
    assert bool(((per_sample == 0).all(1) | (per_sample == 1).all(1)).all())  # whole samples, never blends
    assert 0.4 < per_sample[:, 0].mean().item() < 0.6
    with pytest.raises(ValueError, match="must lie in"):
        mix_with_original(views, x, 1.5)


def test_gin_in_workers_goes_after_spatial_and_intensity_augmentation():
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_causal.training.gin.nnUNetTrainerGIN import GINMixin

    class _T(GINMixin, nnUNetTrainer):
        gin_location = "workers"

        def __init__(self):  # only get_training_transforms is exercised
            pass

    pipeline = _T().get_training_transforms((32, 32), (0, 0), None, (0, 1), False, foreground_labels=[1]).transforms
    names = [type(t).__name__ for t in pipeline]
    gin_at = names.index("GINTransform")
    spatial_at = next(i for i, t in enumerate(pipeline) if isinstance(t, SpatialTransform))
    intensity = [i for i, t in enumerate(pipeline) if type(t).__name__ == "RandomTransform"]
    assert spatial_at < gin_at and max(intensity) < gin_at
    assert isinstance(pipeline[gin_at + 1], MirrorTransform)


def test_gin_ipa_step_keeps_the_planned_batch_size():
    from types import SimpleNamespace

    from nnunet_causal.training.gin.nnUNetTrainerGIN import GINIPAMixin

    seen = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            seen.append(x.shape[0])
            return self.conv(x)

    class Base:
        def train_step(self, batch):
            raise AssertionError("the paired step must not fall back to the plain one")

    class T(GINIPAMixin, Base):
        gin_location = "device"

    t = T()
    t.device, t.network = torch.device("cpu"), Net()
    t.optimizer = torch.optim.SGD(t.network.parameters(), 0.1)
    t.grad_scaler = None
    t.label_manager = SimpleNamespace(has_regions=False)
    t.loss = lambda out, target: out.mean() * 0 + out.float().pow(2).mean()
    out = t.train_step({"data": torch.randn(6, 3, 16, 16), "target": torch.zeros(6, 1, 16, 16)})
    assert seen == [6] and torch.isfinite(torch.as_tensor(out["loss"]))


@pytest.mark.parametrize("mixin", ["GINMixin", "GINIPAMixin"])
def test_nonfinite_intensities_stop_training_on_any_step_naming_the_case(mixin):
    from types import SimpleNamespace

    import nnunet_causal.training.gin.nnUNetTrainerGIN as trainers

    steps = []

    class Base:
        def train_step(self, batch):
            steps.append(batch["data"].shape[0])
            return {"loss": 0.0}

    class T(getattr(trainers, mixin), Base):
        gin_location = "device"

    t = T()
    t.device, t.network = torch.device("cpu"), torch.nn.Conv2d(3, 2, 1)
    t.optimizer = torch.optim.SGD(t.network.parameters(), 0.1)
    t.grad_scaler = None
    t.label_manager = SimpleNamespace(has_regions=False)
    t.loss = lambda out, target: out.float().pow(2).mean()
    for step in range(60):
        data = torch.randn(4, 3, 16, 16)
        keys = [f"case_{step}_{i}" for i in range(4)]
        if step == 37:
            data[1, 2, 5, 5] = float("inf")
            data[2, 0, 0, 0] = float("nan")
        batch = {"data": data, "target": torch.zeros(4, 1, 16, 16), "keys": keys}
        if step < 37:
            t.train_step(batch)
            continue
        with pytest.raises(DatasetError, match=r"NaN or infinite intensities in case\(s\) case_37_1, case_37_2: "):
            t.train_step(batch)
        break
    assert step == 37


def test_gin_and_ipa_draw_on_the_input_device_without_a_generator():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    assert gin(x).dtype == torch.float64 and smooth_mask((16, 16), 2, dtype=torch.float64).dtype == torch.float64
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(ipa(x, generator=g1), ipa(x, generator=g2))  # a CPU generator stays reproducible
