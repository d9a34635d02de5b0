"""R2AttU-Net: R2U-Net with attention-gated skip connections."""

from __future__ import annotations

from nas.models.r2unet import R2UNet
from nas.models.registry import register_model


@register_model("r2attunet")
class R2AttUNet(R2UNet):
    """R2AttU-Net (R2U-Net of Alom et al., 2018 + attention gates of Oktay et al., 2018).

    RRCNN level blocks as in `R2UNet` and an attention gate on every skip as in `AttUNet` (the
    combination the seed report "Optimizing R2U-Net ... with Attention and Hybrid Loss" trains).
    Matches the public LeeJunHyun/Image_Segmentation ``R2AttU_Net``: 39,442,925 parameters at
    the defaults.

    Args:
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first level (>= 2); level ``i`` has ``width * 2**i``.
        depth: resolution levels, 2..8.
        t: recurrence steps per recurrent block (>= 1; 2 in the paper).
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, H and W divisible by
    ``2**(depth-1)``.
    """

    skip_attention, min_width = True, 2  # gates with F_int = width / 2, so width >= 2
