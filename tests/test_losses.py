"""Losses against hand-computed values, for 1- and 2-channel heads."""

import math

import pytest
import torch

from nas.losses import bce_loss, build_loss, class_frequency_weight, hybrid_loss, soft_dice_loss, target_probability


def test_bce_hand_computed():
    logits = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert bce_loss(logits, mask).item() == pytest.approx(expected, rel=1e-6)


def test_two_channel_head_targets_background_too():
    logits = torch.tensor([[0.0], [0.0]]).view(1, 2, 1, 1)
    mask = torch.ones(1, 1, 1, 1)
    assert bce_loss(logits, mask).item() == pytest.approx(math.log(2), rel=1e-6)
    assert target_probability(logits).shape == (1, 1, 1, 1)


def test_soft_dice_hand_computed():
    logits = torch.zeros(1, 1, 1, 2)  # p = 0.5 everywhere
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    # inter = 0.5, denom = 1 + 1 = 2 -> 1 - (2*0.5 + 1)/(2 + 1) = 1/3
    assert soft_dice_loss(logits, mask).item() == pytest.approx(1 / 3, rel=1e-6)


def test_hybrid_is_dice_plus_weighted_bce():
    logits = torch.tensor([0.0, 2.0, -1.0, 0.5]).view(1, 1, 2, 2)
    mask = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2)
    w = class_frequency_weight(mask)
    assert w == pytest.approx(3.0)
    p = torch.sigmoid(logits).flatten().tolist()
    y = mask.flatten().tolist()
    bce = sum(-(w * yi * math.log(pi) + (1 - yi) * math.log(1 - pi)) for pi, yi in zip(p, y)) / 4
    inter = sum(pi * yi for pi, yi in zip(p, y))
    dice = 1 - (2 * inter + 1) / (sum(p) + sum(y) + 1)
    assert hybrid_loss(logits, mask).item() == pytest.approx(bce + dice, rel=1e-5)
    assert build_loss("hybrid")(logits, mask).item() == pytest.approx(bce + dice, rel=1e-5)


def test_losses_have_gradients():
    logits = torch.randn(2, 2, 4, 4, requires_grad=True)
    mask = (torch.rand(2, 1, 4, 4) > 0.5).float()
    for name in ("bce", "dice", "hybrid"):
        logits.grad = None
        build_loss(name)(logits, mask).backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
