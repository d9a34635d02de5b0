"""Attention U-Net: U-Net whose skip connections pass through attention gates."""

from __future__ import annotations

from nas.models.registry import register_model
from nas.models.unet import UNet


@register_model("attunet")
class AttUNet(UNet):
    """Attention U-Net (Oktay et al., MIDL 2018, arXiv:1804.03999).

    U-Net in which each skip feature map ``x`` is multiplied by an additive attention map
    computed with the up-sampled decoder map ``g`` as gating signal (``W_g``, ``W_x``: 1×1
    conv + BN; ReLU; ``psi``: 1×1 conv + BN + sigmoid; F_int = skip channels / 2), so the decoder
    receives skip features only where they matter. Matches the public
    LeeJunHyun/Image_Segmentation ``AttU_Net``: 34,878,573 parameters at the defaults.

    Args:
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first level (>= 2, so F_int >= 1); level ``i`` has ``width * 2**i``.
        depth: resolution levels, 2..8.
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, H and W divisible by
    ``2**(depth-1)``.
    """

    skip_attention, min_width = True, 2  # gates with F_int = width / 2, so width >= 2
