"""The static U-Net shared by the search supernet and the discrete genotype network.

Thesis "Network Structure" (UNet 3+ / ELU-Net style): a 5-level encoder (double conv
3×3-BN-ReLU, max-pool between levels; level 1 = full resolution, level 5 = bottleneck), and a
decoder for levels 4..1 where level ``d`` concatenates the outputs of the cells
``skip_<e>_<d>`` (shallowest encoder level first) with the upsampled lower path (decoder
``d+1``, or the bottleneck for ``d = 4``), then applies a double conv to ``widths[d-1]``
channels. The head is a plain 1×1 conv to ``head_channels`` logits (no BN/ReLU on logits). A
decoder level without cells just uses the lower path.

:class:`UNetBackbone` owns all of that; its subclasses (:class:`nas.supernet.Supernet`,
:class:`nas.models.genotype_net.GenotypeNet`) only say which cells to build. A cell is any
module with an ``out_channels`` attribute, called as ``cell(encoder_map, size)`` and returning
``[B, out_channels, *size]``.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.skip_grid import LEVELS, cell_name, parse_cell_name  # re-exported: cell_name, parse_cell_name

#: Builds the cells once the encoder exists: encoder widths → ``{cell name: module}``.
CellFactory = Callable[[Sequence[int]], Mapping[str, nn.Module]]


class DoubleConv(nn.Sequential):
    """(conv 3×3 → BN → ReLU) × 2, the U-Net stage."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNetBackbone(nn.Module):
    """5-level U-Net whose skip connections are the given cells.

    Args:
        in_channels: input image channels.
        widths: the 5 encoder widths (decoder level ``d`` outputs ``widths[d-1]``).
        head_channels: logit channels of the 1×1 head.
        build_cells: called once, after the encoder is built and before the decoder, with
            ``widths``; returns ``{skip_<enc>_<dec>: cell}`` for the cells that exist (any
            subset of the 16 skips, absent ones simply feed nothing). It is a callable rather
            than a ready mapping so that modules are created, and thus randomly initialised,
            in the order encoder → cells → decoder → head.
        channels_last: run the network internally in NHWC. ``None`` (default) means on CPU
            only, where oneDNN's depthwise and 1×1 convolutions and 3×3 pools are several times
            faster in NHWC than in NCHW (a full search step about 20-40% faster); on GPU the
            input's format is kept. May be changed after construction.

    Input ``[B, in_channels, H, W]`` with ``H, W`` divisible by 16; output logits
    ``[B, head_channels, H, W]`` in the input's memory format. Submodules (state-dict
    prefixes): ``encoder`` (``nn.ModuleList`` of :class:`DoubleConv`), ``cells``
    (``nn.ModuleDict``, ordered by decoder level deepest first, then encoder level),
    ``decoder`` (``nn.ModuleDict`` keyed ``level<d>``) and ``head``.
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        head_channels: int,
        build_cells: CellFactory,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) != len(LEVELS) + 1:
            raise ValueError(f"widths must have {len(LEVELS) + 1} entries, got {widths}")
        self.in_channels = in_channels
        self.widths = widths
        self.channels_last = channels_last

        ins = [in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, widths))

        built = dict(build_cells(widths))
        levels = {name: parse_cell_name(name) for name in built}
        for name, cell in built.items():
            if not isinstance(getattr(cell, "out_channels", None), int):
                raise TypeError(f"cell {name} needs an int out_channels attribute")
        order = sorted(built, key=lambda n: (-levels[n][1], levels[n][0]))
        self.cells = nn.ModuleDict({name: built[name] for name in order})

        # decoder level d: (encoder level, cell name) of its cells, shallowest first
        self._plan: list[tuple[int, list[tuple[int, str]]]] = [
            (d, sorted((e, n) for n, (e, dd) in levels.items() if dd == d)) for d in LEVELS[::-1]
        ]
        self.decoder = nn.ModuleDict(
            {
                f"level{d}": DoubleConv(
                    sum(built[n].out_channels for _, n in inputs) + widths[d], widths[d - 1]
                )
                for d, inputs in self._plan
            }
        )
        self.head = nn.Conv2d(widths[0], head_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        given_format = (
            torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            else torch.contiguous_format
        )
        channels_last = self.channels_last
        if channels_last is None:
            channels_last = x.device.type == "cpu"
        h = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        feats: list[Tensor] = []
        for level, block in enumerate(self.encoder):
            if level:
                h = F.max_pool2d(h, 2)
            h = block(h)
            feats.append(h)
        low = feats[-1]
        for d, inputs in self._plan:
            size = tuple(feats[d - 1].shape[-2:])
            parts = [self.cells[name](feats[e - 1], size) for e, name in inputs]
            parts.append(F.interpolate(low, size=size, mode="bilinear", align_corners=False))
            low = self.decoder[f"level{d}"](torch.cat(parts, dim=1))
        return self.head(low).contiguous(memory_format=given_format)


__all__ = ["CellFactory", "DoubleConv", "UNetBackbone", "cell_name", "parse_cell_name"]
