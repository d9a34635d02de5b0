"""Building blocks shared by the baselines, so no two models carry their own copy of a block.

The first five follow the widely used public PyTorch code of U-Net / R2U-Net / Attention U-Net
(LeeJunHyun/Image_Segmentation) layer for layer - convolutions *with* bias followed by
BatchNorm - because the parameter counts of those networks are asserted exactly in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def encoder_levels(in_channels: int, widths: list[int], block) -> nn.ModuleList:
    """One `block(c_in, c_out)` per level: in_channels -> widths[0] -> widths[1] -> ..."""
    return nn.ModuleList(block(c_in, c_out) for c_in, c_out in zip([in_channels, *widths[:-1]], widths))


def encode(levels: nn.ModuleList, pool: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Run the encoder (`pool` between levels); every level's output, finest first."""
    outputs = []
    for i, level in enumerate(levels):
        x = level(x if i == 0 else pool(x))
        outputs.append(x)
    return outputs


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3,
                 bias: bool = True) -> nn.Sequential:
    """``Conv(k×k, 'same' padding) -> BatchNorm -> ReLU``; the unit almost every block is made of."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DoubleConv(nn.Sequential):
    """U-Net level block: two ``conv3×3 -> BN -> ReLU`` (the first changes the channel count).

    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(*conv_bn_relu(in_channels, out_channels),
                         *conv_bn_relu(out_channels, out_channels))


class UpConv(nn.Module):
    """Decoder up-sampling: nearest ×2 (or to an explicit size) then ``conv -> BN -> ReLU``.

    Nearest up-sampling plus a learned convolution (instead of a transposed convolution) is what
    the public U-Net/R2U-Net/AttU-Net code uses; `size` lets encoders whose stride-2 layers round
    odd sizes up (EfficientNet) meet their skip features exactly.

    Args:
        in_channels: channels of the coarse feature map.
        out_channels: channels after the convolution.
        kernel_size: convolution kernel (3 in the public code; 1 for a cheap projection).
    Shape: ``[B, in, H, W] -> [B, out, 2H, 2W]`` (or ``[B, out, *size]``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class RecurrentBlock(nn.Module):
    """Recurrent convolutional layer of R2U-Net (Alom et al., 2018).

    ONE ``conv3×3 -> BN -> ReLU`` `f` (shared over time steps) is unrolled: ``x1 = f(x)``, then
    `t` times ``x1 = f(x + x1)``; the feed-forward input is re-injected at every step, so the
    effective receptive field grows with `t` at no extra parameters.

    Args:
        channels: input = output channels.
        t: recurrence steps (2 in the paper and the public code).
    """

    def __init__(self, channels: int, t: int = 2) -> None:
        super().__init__()
        self.t = t
        self.conv = conv_bn_relu(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv(x)
        for _ in range(self.t):
            x1 = self.conv(x + x1)
        return x1


class RRCNNBlock(nn.Module):
    """Recurrent residual convolutional unit (RRCU) of R2U-Net.

    A 1×1 convolution (with bias) maps to `out_channels`; two `RecurrentBlock` s follow and their
    output is added back to the 1×1 output (the residual that eases optimisation).

    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, t: int = 2) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.recurrent = nn.Sequential(RecurrentBlock(out_channels, t), RecurrentBlock(out_channels, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1x1(x)
        return x + self.recurrent(x)


class AttentionGate(nn.Module):
    """Additive attention gate of Attention U-Net (Oktay et al., 2018).

    ``psi = sigmoid(BN(conv1×1(ReLU(BN(W_g g) + BN(W_x x)))))`` is a per-pixel weight in (0, 1)
    that the decoder's gating signal `g` puts on the skip features `x`, suppressing irrelevant
    regions before they are concatenated. All 1×1 convolutions have a bias (public code).

    Args:
        gate_channels: channels of `g` (F_g).
        skip_channels: channels of `x` (F_l).
        inter_channels: channels of the intermediate map (F_int; F_l / 2 in the public code).
    Shape: ``g [B, F_g, H, W], x [B, F_l, H, W] -> [B, F_l, H, W]``.
    """

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(gate_channels, inter_channels, 1), nn.BatchNorm2d(inter_channels))
        self.w_x = nn.Sequential(nn.Conv2d(skip_channels, inter_channels, 1), nn.BatchNorm2d(inter_channels))
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        psi = self.psi(self.relu(self.w_g(g) + self.w_x(x)))
        return x * psi


class ResidualBlock(nn.Module):
    """Residual block (He et al., 2016) used by the AER-Net decoder.

    ``ReLU(BN(conv3×3(ReLU(BN(conv3×3 x)))) + shortcut(x))`` where the shortcut is the identity,
    or ``conv1×1 -> BN`` when the channel count changes. Convolutions feeding a BatchNorm have no
    bias (it would be cancelled by the BN mean).

    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, bias=False),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ScaleBridge(nn.Module):
    """One full-scale skip connection (UNet 3+ / ELU-Net): resample, then ``conv3×3 -> BN -> ReLU``.

    A feature map `scale` levels finer than its target is max-pooled by ``2**scale`` (ceil mode,
    as in UNet 3+); one that is coarser (`scale` < 0) is bilinearly up-sampled to the target
    size; ``scale == 0`` only convolves. The convolution maps any source width to the common
    width of the connections that are concatenated at the target decoder stage.

    Args:
        in_channels: channels of the source feature map.
        out_channels: channels of the connection (UNet 3+ calls this ``CatChannels``).
        scale: target level minus source level (> 0: pool, < 0: up-sample, 0: same scale).
    Shape: ``[B, in, h, w] -> [B, out, *size]``.
    """

    def __init__(self, in_channels: int, out_channels: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = conv_bn_relu(in_channels, out_channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.scale > 0:
            k = 2 ** self.scale
            x = F.max_pool2d(x, kernel_size=k, stride=k, ceil_mode=True)
        elif self.scale < 0:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(x)
