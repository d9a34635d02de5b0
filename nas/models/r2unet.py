"""R2U-Net: U-Net whose level blocks are recurrent residual convolutional units."""

from __future__ import annotations

from functools import partial

from nas.models.blocks import RRCNNBlock
from nas.models.checks import check_int
from nas.models.registry import register_model
from nas.models.unet import UNetSkeleton


@register_model("r2unet")
class R2UNet(UNetSkeleton):
    """R2U-Net (Alom et al., 2018, arXiv:1802.06955): recurrent residual U-Net.

    The U-Net skeleton with every double convolution replaced by an RRCNN block: a 1×1
    convolution, then two recurrent blocks (one shared conv3×3-BN-ReLU unrolled `t` steps) whose
    output is added to the 1×1 output. Recurrence widens the receptive field and the residual
    eases training at the parameter cost of a single 3×3 convolution per recurrent block. This
    matches the public LeeJunHyun/Image_Segmentation ``R2U_Net``: 39,091,393 parameters at the
    defaults.

    Args:
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1, or 2 = target + background).
        width: channels of the first level; level ``i`` has ``width * 2**i``.
        depth: resolution levels, 2..8.
        t: recurrence steps per recurrent block (>= 1; 2 in the paper).
    Shape: ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` logits, H and W divisible by
    ``2**(depth-1)``.
    """

    # UNetSkeleton's `attention` and `min_width`, set per class: R2AttUNet is this class with gates.
    skip_attention, min_width = False, 1

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 64,
                 depth: int = 5, t: int = 2) -> None:
        check_int(self.registry_name, "t", t, 1)
        super().__init__(in_channels, out_channels, width, depth, block=partial(RRCNNBlock, t=t),
                         attention=self.skip_attention, min_width=self.min_width)
