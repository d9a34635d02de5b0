"""Losses for 1-channel (target) and 2-channel (target, background) heads.

With two channels each is an independent sigmoid (thesis: target and background learned
independently); the target probability is always `sigmoid(logits[:, :1])`.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def target_probability(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits[:, :1].float())


def _targets_for(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Expand a [B,1,H,W] mask to the head's channels: [mask] or [mask, 1-mask]."""
    if logits.shape[1] == 1:
        return mask
    if logits.shape[1] == 2:
        return torch.cat([mask, 1.0 - mask], dim=1)
    raise ValueError(f"expected 1 or 2 output channels, got {logits.shape[1]}")


def _prepare(logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits as float32, target per channel)``: what every loss below starts from."""
    return logits.float(), _targets_for(logits, mask)


def _bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: Optional[float]) -> torch.Tensor:
    if pos_weight is None:
        return F.binary_cross_entropy_with_logits(logits, target)
    # Weight the positive class of each channel: target for channel 0, background for channel 1.
    weight = torch.where(target > 0.5, torch.full_like(target, pos_weight), torch.ones_like(target))
    if logits.shape[1] == 2:
        weight[:, 1:] = 1.0
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def _soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    dims = (2, 3)
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + eps) / (denom + eps)).mean()


def bce_loss(logits: torch.Tensor, mask: torch.Tensor, pos_weight: Optional[float] = None) -> torch.Tensor:
    return _bce(*_prepare(logits, mask), pos_weight)


def soft_dice_loss(logits: torch.Tensor, mask: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image and channel (smoothing eps), averaged."""
    return _soft_dice(*_prepare(logits, mask), eps)


def class_frequency_weight(mask: torch.Tensor) -> float:
    """Positive-class weight = #negative / #positive pixels (1 when a class is absent)."""
    pos = float(mask.sum())
    neg = float(mask.numel()) - pos
    return neg / pos if pos > 0 and neg > 0 else 1.0


def hybrid_loss(logits: torch.Tensor, mask: torch.Tensor, pos_weight: Optional[float] = None) -> torch.Tensor:
    """Seed 000's hybrid loss: soft Dice + class-weighted BCE (weight from the batch if not set)."""
    w = class_frequency_weight(mask) if pos_weight is None else pos_weight
    logits, target = _prepare(logits, mask)
    return _soft_dice(logits, target, eps=1.0) + _bce(logits, target, pos_weight=w)


def build_loss(name: str, pos_weight: Optional[float] = None) -> LossFn:
    if name == "bce":
        return lambda logits, mask: bce_loss(logits, mask, pos_weight)
    if name == "dice":
        return soft_dice_loss
    if name == "hybrid":
        return lambda logits, mask: hybrid_loss(logits, mask, pos_weight)
    raise ValueError(f"unknown loss {name!r}")
