"""Improved U-Net: a lighter U-Net built from separable, inverted-bottleneck 7×7 blocks."""

from __future__ import annotations

import torch
from torch import nn

from nas.models.blocks import encode, encoder_levels, UpConv
from nas.models.checks import check_input, check_int, check_levels
from nas.models.registry import register_model


class InvertedSeparableBlock(nn.Sequential):
    """Depthwise k×k conv + BN, then an inverted bottleneck of pointwise convolutions.

    ``dw k×k -> BN -> pw 1×1 (expand to expansion·out) -> ReLU -> pw 1×1 (compress to out) -> BN
    -> ReLU``. The depthwise convolution sees a large (7×7) window for few parameters; the
    expand/compress pair mixes channels in a wide space (ConvNeXt / MobileNetV2 style).

    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, expansion: int) -> None:
        hidden = expansion * out_channels
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                      groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


@register_model("improved_unet")
class ImprovedUNet(nn.Module):
    """Improved U-Net (seed 004, "U-Net Models": classic U-Net with small improvements).

    The seed lists five changes to U-Net that cut parameters: depthwise-separable convolutions,
    batch normalisation, 7×7 kernels, an inverse bottleneck (expand ×4 then compress) and
    additive instead of concatenated skips. Each level here is two `InvertedSeparableBlock` s
    (the first changes the channels); levels are joined by 2×2 max-pool in the encoder and by
    nearest ×2 + 1×1 conv-BN-ReLU (halving the channels) in the decoder, where the encoder map of
    the same level is *added* before the level's blocks. A 1×1 convolution gives the logits.
    The seed gives no layer table, so these details are this implementation's reading of it.

    Args:
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first level; level ``i`` has ``width * 2**i``.
        depth: resolution levels, 2..8.
        kernel_size: depthwise kernel, odd (7 in the seed).
        expansion: inverted-bottleneck expansion factor (4 in the seed).
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, H and W divisible by
    ``2**(depth-1)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 64,
                 depth: int = 5, kernel_size: int = 7, expansion: int = 4) -> None:
        super().__init__()
        name = self.registry_name
        widths = check_levels(name, in_channels, out_channels, width, depth)
        self.in_channels, self.depth = in_channels, depth
        check_int(name, "kernel_size", kernel_size, 1, parity="odd")  # odd: 'same' padding
        check_int(name, "expansion", expansion, 1)

        def level(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(InvertedSeparableBlock(c_in, c_out, kernel_size, expansion),
                                 InvertedSeparableBlock(c_out, c_out, kernel_size, expansion))

        self.encoder = encoder_levels(in_channels, widths, level)
        self.pool = nn.MaxPool2d(2)
        fine = list(reversed(widths[:-1]))
        self.ups = nn.ModuleList(UpConv(2 * f, f, kernel_size=1) for f in fine)
        self.decoder = nn.ModuleList(level(f, f) for f in fine)
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.registry_name, x, self.in_channels, 2 ** (self.depth - 1))
        skips = encode(self.encoder, self.pool, x)
        x = skips.pop()
        for up, block in zip(self.ups, self.decoder):
            x = block(up(x) + skips.pop())
        return self.head(x)
