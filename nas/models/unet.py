"""U-Net and the U-shaped skeleton it shares with R2U-Net, Attention U-Net and R2AttU-Net.

The four networks differ only in the block used at each level (double conv vs. RRCNN) and in
whether an attention gate filters each skip connection, so one skeleton builds all four.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from nas.models.blocks import AttentionGate, DoubleConv, encode, encoder_levels, UpConv
from nas.models.checks import check_input, check_levels
from nas.models.registry import register_model

BlockFactory = Callable[[int, int], nn.Module]


class UNetSkeleton(nn.Module):
    """Encoder-decoder with one skip per level; the level block and the skip gating are pluggable.

    Level ``i`` (0 = full resolution) has ``width * 2**i`` channels. Encoder: block, then 2×2
    max-pool between levels. Decoder, from the bottom up: `UpConv` (nearest ×2 + conv3×3-BN-ReLU,
    halving the channels), optional `AttentionGate` on the skip (gated by the up-sampled map),
    concatenation ``[skip, up]``, block. A 1×1 convolution (with bias) gives the logits.

    Args:
        in_channels: image channels.
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first level.
        depth: number of resolution levels (``depth - 1`` poolings).
        block: ``block(in_channels, out_channels)`` builds a level block.
        attention: put an attention gate (F_int = skip channels / 2) on every skip.
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``, H and W divisible by
    ``2**(depth-1)``.
    """

    registry_name = "unet_skeleton"  # replaced by register_model on each registered subclass

    def __init__(self, in_channels: int, out_channels: int, width: int, depth: int,
                 block: BlockFactory, attention: bool, min_width: int = 1) -> None:
        super().__init__()
        name = self.registry_name
        widths = check_levels(name, in_channels, out_channels, width, depth, min_width=min_width)
        self.in_channels, self.depth = in_channels, depth
        self.encoder = encoder_levels(in_channels, widths, block)
        self.pool = nn.MaxPool2d(2)
        fine = list(reversed(widths[:-1]))  # decoder output widths, coarse -> fine
        coarse = list(reversed(widths[1:]))
        self.ups = nn.ModuleList(UpConv(c, f) for c, f in zip(coarse, fine))
        self.gates = nn.ModuleList(AttentionGate(f, f, f // 2) for f in fine) if attention else None
        self.decoder = nn.ModuleList(block(2 * f, f) for f in fine)
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.registry_name, x, self.in_channels, 2 ** (self.depth - 1))
        skips = encode(self.encoder, self.pool, x)
        x = skips.pop()
        for k, (up, block) in enumerate(zip(self.ups, self.decoder)):
            d = up(x)
            skip = skips.pop()
            if self.gates is not None:
                skip = self.gates[k](d, skip)
            x = block(torch.cat([skip, d], dim=1))
        return self.head(x)


@register_model("unet")
class UNet(UNetSkeleton):
    """U-Net (Ronneberger et al., MICCAI 2015, arXiv:1505.04597).

    Each level is two ``conv3×3 -> BN -> ReLU``; the expanding path up-samples with nearest ×2 +
    conv3×3-BN-ReLU and concatenates the encoder feature map of the same level (padded
    convolutions, so no cropping). Layer for layer this is the public LeeJunHyun/Image_Segmentation
    ``U_Net``: 34,527,041 parameters at the defaults (widths 64...1024, 3 -> 1 channels).

    Args:
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first level; level ``i`` has ``width * 2**i``.
        depth: resolution levels, 2..8 (5 = the paper's four poolings).
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, H and W divisible by
    ``2**(depth-1)`` (16 at the default depth).
    """

    # UNetSkeleton's `attention` and `min_width`, set per class: AttUNet is this class with gates.
    skip_attention, min_width = False, 1

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 64,
                 depth: int = 5) -> None:
        super().__init__(in_channels, out_channels, width, depth, block=DoubleConv,
                         attention=self.skip_attention, min_width=self.min_width)
