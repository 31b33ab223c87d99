"""Text-side caption contrast: one structure's captions together, other structures' and mirrored ones apart."""
import torch
import torch.nn.functional as F

from nnunet_causal.mgcl.caption_contrast import caption_contrast_loss, caption_groups

LEFT = ["The left kidney is small.", "left renal organ: normal."]
RIGHT = ["The right kidney is enlarged.", "right renal organ: normal."]
MIRRORED = ["The right kidney is small.", "right renal organ: normal."]   # of LEFT; the second is a real RIGHT one


def _groups():
    return caption_groups([LEFT, RIGHT, ["The liver is normal.", "hepatic tissue normal."]],
                          ["kidney_left", "kidney_right", "liver"], MIRRORED, ["kidney_left", "kidney_left"])


def test_groups_merge_identical_texts_and_a_mirror_that_is_a_real_caption_keeps_its_structure():
    texts, labels, mirrored_of = _groups()
    assert len(texts) == 7 and texts[-1] == "The right kidney is small."
    assert labels[texts.index("right renal organ: normal.")] == {"kidney_right"}
    assert labels[-1] == frozenset() and mirrored_of[-1] == {"kidney_left"}
    shared = caption_groups([["both kidneys normal."], ["both kidneys normal."]], ["kidney_left", "kidney_right"])
    assert shared[1] == [{"kidney_left", "kidney_right"}]


def _embed(texts, side_blind: bool):
    """Clusters per structure; ``side_blind``: left, right and mirrored kidney sentences share one cluster."""
    g = torch.Generator().manual_seed(0)
    centre = {"left": torch.randn(16, generator=g), "right": torch.randn(16, generator=g),
              "liver": torch.randn(16, generator=g)}
    if side_blind:
        centre["right"] = centre["left"]
    rows = []
    for t in texts:
        key = "liver" if ("liver" in t or "hepatic" in t) else ("left" if "left" in t else "right")
        rows.append(centre[key] + 0.1 * torch.randn(16, generator=g))
    return F.normalize(torch.stack(rows), dim=-1)


def test_a_side_aware_text_space_has_lower_loss_than_a_side_blind_one_or_a_wrong_grouping():
    texts, labels, mirrored_of = _groups()
    aware = caption_contrast_loss(_embed(texts, side_blind=False), labels, mirrored_of)
    blind = caption_contrast_loss(_embed(texts, side_blind=True), labels, mirrored_of)
    assert aware < 0.1 and blind > 0.5
    mixed = list(labels)
    mixed[1], mixed[3] = labels[3], labels[1]          # one left and one right caption change places
    assert caption_contrast_loss(_embed(texts, side_blind=False), mixed, mirrored_of) > aware + 1.0
    emb = _embed(texts, side_blind=True).requires_grad_()
    caption_contrast_loss(emb, labels, mirrored_of).backward()
    assert emb.grad.abs().sum() > 0


def test_a_mirror_caption_is_a_negative_of_its_own_structure_only():
    right = ["The right kidney is enlarged.", "right renal organ: normal."]
    texts, labels, mirrored_of = caption_groups([right], ["kidney_right"], ["The right kidney is small."],
                                                ["kidney_left"])
    emb = F.normalize(torch.ones(3, 4), dim=-1)   # the mirror sits on the right kidney's captions
    assert caption_contrast_loss(emb, labels, mirrored_of) is None            # no negative for a right anchor
    texts, labels, mirrored_of = caption_groups([LEFT], ["kidney_left"], ["The right kidney is small."],
                                                ["kidney_left"])
    assert caption_contrast_loss(emb, labels, mirrored_of) > 0.5              # for a left anchor it is one
