"""MobileNetV2 encoder + transposed-convolution decoder (seed 003)."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from nas.models.backbones import replace_stem, torchvision_features
from nas.models.checks import check_float, check_input, check_int
from nas.models.registry import register_model

_STRIDE = 32  # MobileNetV2 halves the resolution five times
_ENCODER_CHANNELS = 1280


@register_model("mobilenetv2_unet")
class MobileNetV2UNet(nn.Module):
    """MobileNetV2 U-Net (Sandler et al., CVPR 2018 encoder; decoder of seed 003, Chaubey).

    Encoder: torchvision MobileNetV2 ``features`` (``weights=None``; 1280 channels at stride 32).
    Decoder, exactly the seed's Table 1: five ``ConvTranspose2d(k=4, s=2, p=1) -> BN -> ReLU ->
    Dropout`` stages 1280 -> 512 -> 256 -> 128 -> 64 -> 32 (``8w ... w/2`` with ``w`` = `width`
    = 64), then a 1×1 convolution. Despite the name the seed's network has NO skip connections;
    it is kept that way so results compare with the seed.

    Inputs whose size is not a multiple of 32 are zero-padded at the bottom/right to the next
    multiple and the logits cropped back, so any size works and pixels stay aligned.

    Args:
        in_channels: image channels; other than 3 replaces the stem convolution with a randomly
            initialised one (also when `pretrained` is given).
        out_channels: logit channels (1, or 2 = target + background).
        width: decoder width ``w`` (even, >= 2); stages have ``8w, 4w, 2w, w, w/2`` channels.
        dropout: dropout probability after each decoder stage, in [0, 1) (0.5 in the seed).
        pretrained: None (random initialisation) or the path of a LOCAL state-dict file of
            torchvision ``mobilenet_v2`` (whole classifier or ``features`` only). Nothing is ever
            downloaded; a missing or incompatible file is a `UserError`.
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, any H, W.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 64,
                 dropout: float = 0.5, pretrained: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        name = self.registry_name
        self.in_channels = check_int(name, "in_channels", in_channels, 1)
        check_int(name, "out_channels", out_channels, 1)
        check_int(name, "width", width, 2, parity="even")
        check_float(name, "dropout", dropout, 0.0, 1.0)
        self.encoder = torchvision_features("mobilenet_v2", name, pretrained)
        if in_channels != 3:
            replace_stem(self.encoder, in_channels)
        widths = [_ENCODER_CHANNELS, 8 * width, 4 * width, 2 * width, width, width // 2]
        stages = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            stages += [nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.decoder = nn.Sequential(*stages)
        self.head = nn.Conv2d(widths[-1], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self.registry_name, x, self.in_channels, 1)
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % _STRIDE, -w % _STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.head(self.decoder(self.encoder(x)))
        return logits[..., :h, :w]
