"""The search supernet: a static U-Net backbone whose skip connections are searched cells.

Thesis "Network Structure" (UNet 3+ / ELU-Net style): a 5-level encoder (double conv
3×3-BN-ReLU, max-pool between levels; level 1 = full resolution, level 5 = bottleneck), and a
decoder for levels 4..1 where level ``d`` concatenates the outputs of all cells
``skip_<e>_<d>`` of the search space with the upsampled lower path (decoder ``d+1``, or the
bottleneck for ``d = 4``), then applies a double conv to ``widths[d-1]`` channels. The head is a
plain 1×1 conv to ``head_channels`` logits (no BN/ReLU on logits, unlike the reference
notebook). A decoder level without skips (classic space) just uses the lower path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.cell import SkipCell
from nas.search_space import LEVELS, SearchSpace, load_search_space


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


def cell_name(enc: int, dec: int) -> str:
    """Key of the cell for skip ``enc → dec`` in ``Supernet.cells`` and genotype files."""
    return f"skip_{enc}_{dec}"


class Supernet(nn.Module):
    """U-Net supernet over ``space`` (a :class:`SearchSpace` or a name/path to load).

    Input ``[B, in_channels, H, W]`` with ``H, W`` divisible by 16; output logits
    ``[B, head_channels, H, W]`` in the input's memory format. ``cells`` is an
    ``nn.ModuleDict`` keyed ``skip_<enc>_<dec>``; α live in the cells (see
    :class:`nas.cell.SkipCell`).

    ``channels_last``: run the network internally in NHWC. ``None`` (default) means on CPU
    only, where oneDNN's depthwise and 1×1 convolutions and 3×3 pools are several times faster
    in NHWC than in NCHW (a full search step about 20-40% faster); on GPU the input's format is
    kept.
    """

    def __init__(self, space: SearchSpace | str, channels_last: bool | None = None) -> None:
        super().__init__()
        if not isinstance(space, SearchSpace):
            space = load_search_space(space)
        self.space = space
        self.channels_last = channels_last
        widths = space.widths
        c = space.node_width

        ins = [space.in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, widths))
        self.cells = nn.ModuleDict(
            {
                cell_name(e, d): SkipCell(
                    widths[e - 1],
                    c,
                    space.nodes,
                    space.ops,
                    down=d - e,
                    resample_down=space.resample_down,
                    ssb_gating=space.ssb_gating,
                    csb_gating=space.csb_gating,
                )
                for e, d in sorted(space.skips, key=lambda s: (-s[1], s[0]))
            }
        )
        # decoder level d: its skips, then the lower path (widths[d] channels: level d+1)
        self._plan = [(d, space.skips_into(d)) for d in LEVELS[::-1]]
        self.decoder = nn.ModuleDict(
            {
                f"level{d}": DoubleConv(len(encs) * 2 * c + widths[d], widths[d - 1])
                for d, encs in self._plan
            }
        )
        self.head = nn.Conv2d(widths[0], space.head_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        # Also the pass of nas.models.genotype_net (called as Supernet.forward(net, x)): it only
        # relies on encoder, cells, decoder, head, _plan and an optional channels_last.
        given_format = (
            torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            else torch.contiguous_format
        )
        channels_last = getattr(self, "channels_last", None)
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
        for d, encs in self._plan:
            size = tuple(feats[d - 1].shape[-2:])
            parts = [self.cells[cell_name(e, d)](feats[e - 1], size) for e in encs]
            parts.append(F.interpolate(low, size=size, mode="bilinear", align_corners=False))
            low = self.decoder[f"level{d}"](torch.cat(parts, dim=1))
        return self.head(low).contiguous(memory_format=given_format)

    # ------------------------------------------------------------------ α bookkeeping

    def arch_parameters(self) -> list[nn.Parameter]:
        """All α, cell by cell (each: node groups, SSB, CSB)."""
        return [p for cell in self.cells.values() for p in cell.arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an α (disjoint from :meth:`arch_parameters`)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def softmax_groups(self, include_blocks: bool = True) -> list[Tensor]:
        """The α tensors each softmax normalises, for β-decay: node groups always, SSB/CSB
        when ``include_blocks`` and their gating is softmax (a sigmoid gate has no group)."""
        return [g for cell in self.cells.values() for g in cell.softmax_groups(include_blocks)]

    def alpha_rows(self) -> list[dict[str, Any]]:
        """One row per α: ``cell, group, input, op, alpha, weight`` (``alphas.csv`` rows)."""
        return [row for name, cell in self.cells.items() for row in cell.alpha_rows(name)]
