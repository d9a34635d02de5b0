"""UNet 3+: every decoder stage sees every encoder and every coarser decoder scale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.models.blocks import conv_bn_relu, DoubleConv, encode, encoder_levels, ScaleBridge
from nas.models.checks import check_bool, check_input, check_int, check_levels
from nas.models.registry import register_model


@register_model("unet3plus")
class UNet3Plus(nn.Module):
    """UNet 3+ (Huang et al., ICASSP 2020, arXiv:2004.08790): full-scale connected U-Net.

    Encoder: U-Net levels (two conv3×3-BN-ReLU, widths ``width * 2**i``, 2×2 max-pool). Decoder
    stage ``d`` (same resolution as encoder level ``d``) concatenates `depth` connections of
    `cat_channels` each - encoder levels finer than ``d`` max-pooled, encoder level ``d`` as is,
    coarser decoder stages (and the bottom encoder level) bilinearly up-sampled - each through a
    conv3×3-BN-ReLU, then fuses them with one conv3×3-BN-ReLU of ``cat_channels * depth``
    channels (320 at the defaults). The head is a 3×3 convolution. Full-scale skips give every
    stage both fine detail and coarse semantics with fewer parameters than U-Net.

    At the defaults (3 -> 1 channels, widths 64...1024, no deep supervision) this is layer for
    layer the public ZJUGiveLab UNet 3+ ``UNet_3Plus``: 26,971,777 parameters. The
    classification-guided module of the paper is not included (it targets organ presence
    prediction, not lesion segmentation).

    Args:
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first encoder level; level ``i`` has ``width * 2**i``.
        depth: resolution levels, 2..8 (5 in the paper).
        cat_channels: channels of each full-scale connection; default `width` (the public code
            ties ``CatChannels`` to the first encoder width, 64).
        deep_supervision: add a 3×3 side head to every coarser decoder stage and to the bottom
            encoder level, up-sampled bilinearly to the input size (the paper's deep
            supervision). In training mode the forward then returns a tuple
            ``(main, side_{1}, ..., side_{depth-1})`` from fine to coarse, to be summed by the
            loss; in eval mode, or when False, only the main logits tensor.
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, H and W divisible by
    ``2**(depth-1)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 64,
                 depth: int = 5, cat_channels: int | None = None,
                 deep_supervision: bool = False) -> None:
        super().__init__()
        name = self.registry_name
        widths = check_levels(name, in_channels, out_channels, width, depth)
        self.in_channels, self.depth = in_channels, depth
        cat = width if cat_channels is None else check_int(name, "cat_channels", cat_channels, 1)
        self.deep_supervision = check_bool(name, "deep_supervision", deep_supervision)
        up_channels = cat * depth

        self.encoder = encoder_levels(in_channels, widths, DoubleConv)
        self.pool = nn.MaxPool2d(2)

        def source_channels(level: int, stage: int) -> int:
            # finer/same levels come from the encoder, coarser ones from decoder stages, except
            # the bottom level which is the encoder output itself.
            return widths[level] if level <= stage or level == depth - 1 else up_channels

        # bridges[k][level]: connection from `level` into decoder stage depth-2-k (coarse->fine)
        stages = list(range(depth - 2, -1, -1))
        self.bridges = nn.ModuleList(
            nn.ModuleList(ScaleBridge(source_channels(level, s), cat, s - level) for level in range(depth))
            for s in stages)
        self.fuse = nn.ModuleList(conv_bn_relu(up_channels, up_channels) for _ in stages)
        self.head = nn.Conv2d(up_channels, out_channels, 3, padding=1)
        self.side_heads = None
        if deep_supervision:
            self.side_heads = nn.ModuleList(
                nn.Conv2d(up_channels if s < depth - 1 else widths[-1], out_channels, 3, padding=1)
                for s in range(1, depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_input(self.registry_name, x, self.in_channels, 2 ** (self.depth - 1))
        size = x.shape[-2:]
        enc = encode(self.encoder, self.pool, x)
        # maps[level]: encoder output for levels <= current stage, decoder output above it
        maps = list(enc)
        for k, (bridges, fuse) in enumerate(zip(self.bridges, self.fuse)):
            stage = self.depth - 2 - k
            target = enc[stage].shape[-2:]
            parts = [bridge(maps[level], target) for level, bridge in enumerate(bridges)]
            maps[stage] = fuse(torch.cat(parts, dim=1))
        main = self.head(maps[0])
        if self.side_heads is None or not self.training:
            return main
        sides = [F.interpolate(head(maps[s]), size=size, mode="bilinear", align_corners=False)
                 for s, head in enumerate(self.side_heads, start=1)]
        return (main, *sides)
