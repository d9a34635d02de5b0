"""ELU-Net: U-Net with deep skips from the same and all coarser encoder levels."""

from __future__ import annotations

import torch
from torch import nn

from nas.models.blocks import DoubleConv, encode, encoder_levels, ScaleBridge
from nas.models.checks import check_input, check_levels
from nas.models.registry import register_model


@register_model("elunet")
class ELUNet(nn.Module):
    """ELU-Net (Deng et al., IEEE Access 10:35932, 2022): efficient and lightweight U-Net.

    Encoder: U-Net levels (two conv3×3-BN-ReLU, widths ``width * 2**i``, 2×2 max-pool).
    Decoder stage ``d`` (levels numbered 0 = full resolution ... ``depth-1`` = bottom) receives:

    - the decoder stage below, ``d+1`` (for the deepest stage: the bottom encoder level),
      bilinearly up-sampled;
    - the **same-scale** encoder level ``d``;
    - every **larger-scale** (coarser) encoder level ``d+1 .. depth-2``, bilinearly up-sampled.

    Each connection passes a conv3×3-BN-ReLU to ``width * 2**d`` channels; the concatenation
    (``depth - d`` connections) goes through a double conv to ``width * 2**d``. With depth 5 the
    four stages concatenate 2, 3, 4 and 5 connections, as in the paper's figure and the public
    FrexG/ELU-Net-pytorch code. Compared with UNet 3+ this drops the pooled finer-encoder
    connections and the decoder-to-decoder connections except from the stage directly below -
    the subset that the paper found sufficient, and the reason it is lighter.

    Implementation choice: a coarser map is up-sampled bilinearly before its 3×3 convolution
    (UNet 3+ style) rather than by a chain of transposed convolutions, which saves parameters
    and matches how the searched network resamples.

    Args:
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first level; level ``i`` has ``width * 2**i`` (the reference code
            suggests small widths such as 8 for the "lightweight" variant).
        depth: resolution levels, 2..8 (5 in the paper).
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, H and W divisible by
    ``2**(depth-1)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 64,
                 depth: int = 5) -> None:
        super().__init__()
        name = self.registry_name
        widths = check_levels(name, in_channels, out_channels, width, depth)
        self.in_channels, self.depth = in_channels, depth
        self.encoder = encoder_levels(in_channels, widths, DoubleConv)
        self.pool = nn.MaxPool2d(2)
        stages = list(range(depth - 2, -1, -1))  # coarse -> fine
        # from_below[k]: decoder stage d+1 (or bottom encoder) -> stage d
        self.from_below = nn.ModuleList(ScaleBridge(widths[d + 1], widths[d], -1) for d in stages)
        # from_encoder[k][j]: encoder level d+j -> stage d, j = 0 .. depth-2-d
        self.from_encoder = nn.ModuleList(
            nn.ModuleList(ScaleBridge(widths[level], widths[d], d - level) for level in range(d, depth - 1))
            for d in stages)
        self.decoder = nn.ModuleList(DoubleConv((depth - d) * widths[d], widths[d]) for d in stages)
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.registry_name, x, self.in_channels, 2 ** (self.depth - 1))
        enc = encode(self.encoder, self.pool, x)
        x = enc[-1]
        for k, (below, bridges, block) in enumerate(zip(self.from_below, self.from_encoder, self.decoder)):
            d = self.depth - 2 - k
            target = enc[d].shape[-2:]
            parts = [below(x, target)]
            parts += [bridge(enc[d + j], target) for j, bridge in enumerate(bridges)]
            x = block(torch.cat(parts, dim=1))
        return self.head(x)
