"""Shared train-step pieces: pairing two views of each sample inside the planned batch."""
import torch

from nnunet_causal.training.steps import paired_halves, split_batch


def test_paired_halves_repeat_the_first_half_of_data_targets_and_keys():
    data = torch.arange(5 * 2 * 4 * 4, dtype=torch.float32).reshape(5, 2, 4, 4)
    target = [torch.arange(5).reshape(5, 1, 1, 1).expand(5, 1, 4, 4), torch.arange(5).reshape(5, 1, 1, 1)]
    out = paired_halves({"data": data, "target": target, "keys": list("abcde"), "other": 7})
    assert out["data"].shape[0] == 4 and torch.equal(out["data"][:2], data[:2])
    assert torch.equal(out["data"][2:], data[:2])
    assert [t[:, 0].flatten()[0].item() for t in [out["target"][1][i] for i in range(4)]] == [0, 1, 0, 1]
    assert out["target"][0].shape == (4, 1, 4, 4) and out["keys"] == ["a", "b", "a", "b"] and out["other"] == 7
    first, second = split_batch(out["target"], 2)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_a_batch_of_one_is_paired_with_itself():
    out = paired_halves({"data": torch.ones(1, 1, 2, 2), "target": torch.zeros(1, 1, 2, 2)})
    assert out["data"].shape[0] == 2 and out["target"].shape[0] == 2 and "keys" not in out
