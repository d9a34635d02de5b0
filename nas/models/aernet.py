"""AER-Net: Attention U-Net decoder with residual blocks on an EfficientNet-B1 encoder."""

from __future__ import annotations

import os

import torch
from torch import nn

from nas.models.backbones import replace_stem, torchvision_features
from nas.models.blocks import AttentionGate, ResidualBlock, UpConv
from nas.models.checks import check_input, check_int
from nas.models.registry import register_model

# torchvision efficientnet_b1().features: outputs tapped as skips / bottleneck.
# index -> (channels, stride): 1 -> (16, 2), 2 -> (24, 4), 3 -> (40, 8), 5 -> (112, 16),
# 8 -> (1280, 32) (the 1×1 "top" convolution, the bottleneck).
_TAPS = (1, 2, 3, 5, 8)
_TAP_CHANNELS = (16, 24, 40, 112, 1280)


@register_model("aernet")
class AERNet(nn.Module):
    """AER-Net (Lima & Braz Júnior, "Attention Efficient Residual U-Net", seed 002).

    Encoder: torchvision EfficientNet-B1 ``features`` (built with ``weights=None``; the paper
    found B1 the best of B0-B4), tapped at strides 2, 4, 8, 16 (16, 24, 40, 112 channels) for
    the skips and at stride 32 (1280 channels) as bottleneck. Decoder, per level: `UpConv`
    (nearest up-sampling to the skip's size + conv3×3-BN-ReLU, i.e. "doubles the size, halves
    the channels"), an `AttentionGate` on the skip gated by that map (F_int = skip channels / 2),
    concatenation, and a `ResidualBlock` (two conv3×3-BN(-ReLU) + shortcut). A last up-sampling
    to the input size, a residual block and a 1×1 convolution give the logits. The paper (Keras)
    gives no channel table; the decoder here uses ``8w, 4w, 2w, w`` channels at strides 16...2
    and ``w/2`` at full resolution (``w`` = `width`).

    Up-sampling to the skip's exact size (rather than ×2) lets any input size work, although
    EfficientNet's stride-2 layers round odd sizes up.

    Args:
        in_channels: image channels; other than 3 replaces the stem convolution with a randomly
            initialised one (also when `pretrained` is given).
        out_channels: logit channels (1, or 2 = target + background).
        width: decoder width ``w`` (even, >= 2).
        pretrained: None (random initialisation) or the path of a LOCAL state-dict file of
            torchvision ``efficientnet_b1`` (whole classifier or ``features`` only). Nothing is
            ever downloaded; a missing or incompatible file is a `UserError`.
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, any H, W >= 32.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 64,
                 pretrained: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        name = self.registry_name
        self.in_channels = check_int(name, "in_channels", in_channels, 1)
        check_int(name, "out_channels", out_channels, 1)
        check_int(name, "width", width, 2, parity="even")
        self.encoder = torchvision_features("efficientnet_b1", name, pretrained)
        if in_channels != 3:
            replace_stem(self.encoder, in_channels)
        decoder_widths = [8 * width, 4 * width, 2 * width, width]
        skip_widths = list(reversed(_TAP_CHANNELS[:-1]))
        coarse = [_TAP_CHANNELS[-1], *decoder_widths[:-1]]
        self.ups = nn.ModuleList(UpConv(c, d) for c, d in zip(coarse, decoder_widths))
        self.gates = nn.ModuleList(AttentionGate(d, s, s // 2) for d, s in zip(decoder_widths, skip_widths))
        self.blocks = nn.ModuleList(ResidualBlock(d + s, d) for d, s in zip(decoder_widths, skip_widths))
        self.final_up = UpConv(width, width // 2)
        self.final_block = ResidualBlock(width // 2, width // 2)
        self.head = nn.Conv2d(width // 2, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.registry_name, x, self.in_channels, 1)
        size = x.shape[-2:]
        taps = []
        for i, layer in enumerate(self.encoder[: _TAPS[-1] + 1]):
            x = layer(x)
            if i in _TAPS:
                taps.append(x)
        x = taps.pop()
        for up, gate, block in zip(self.ups, self.gates, self.blocks):
            skip = taps.pop()
            d = up(x, skip.shape[-2:])
            x = block(torch.cat([gate(d, skip), d], dim=1))
        return self.head(self.final_block(self.final_up(x, size)))
