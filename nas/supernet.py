"""The search supernet: the static U-Net backbone whose skip connections are searched cells.

The backbone (5-level double-conv encoder, full-scale decoder, 1×1 head, channels-last
handling and the forward pass) is :class:`nas.backbone.UNetBackbone`, shared with the discrete
network of :mod:`nas.models.genotype_net`; this module only builds one :class:`SkipCell` per
skip of the search space and adds the α bookkeeping.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from nas.backbone import DoubleConv, UNetBackbone, cell_name
from nas.cell import SkipCell, weight_parameters
from nas.search_space import SearchSpace, load_search_space


class Supernet(UNetBackbone):
    """U-Net supernet over ``space`` (a :class:`SearchSpace` or a name/path to load).

    Input ``[B, in_channels, H, W]`` with ``H, W`` divisible by 16; output logits
    ``[B, head_channels, H, W]`` in the input's memory format. ``cells`` is an
    ``nn.ModuleDict`` keyed ``skip_<enc>_<dec>`` holding one :class:`nas.cell.SkipCell` per
    skip of the space; α live in the cells.

    ``channels_last``: run the network internally in NHWC; ``None`` (default) means on CPU
    only (see :class:`nas.backbone.UNetBackbone`). ``alpha_init``: α start as
    ``alpha_init · N(0, 1)`` (see :class:`nas.cell.SkipCell`).
    """

    def __init__(self, space: SearchSpace | str, channels_last: bool | None = None,
                 alpha_init: float = 1e-3) -> None:
        if not isinstance(space, SearchSpace):
            space = load_search_space(space)

        def build_cells(widths: list[int]) -> dict[str, nn.Module]:
            return {
                cell_name(e, d): SkipCell(
                    widths[e - 1],
                    space.node_width,
                    space.nodes,
                    space.ops,
                    down=d - e,
                    resample_down=space.resample_down,
                    ssb_gating=space.ssb_gating,
                    csb_gating=space.csb_gating,
                    alpha_init=alpha_init,
                )
                for e, d in sorted(space.skips, key=lambda s: (-s[1], s[0]))
            }

        super().__init__(
            space.in_channels, space.widths, space.head_channels, build_cells, channels_last
        )
        self.space = space

    # ------------------------------------------------------------------ α bookkeeping

    def arch_parameters(self) -> list[nn.Parameter]:
        """All α, cell by cell (each: node groups, SSB, CSB)."""
        return [p for cell in self.cells.values() for p in cell.arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an α (disjoint from :meth:`arch_parameters`)."""
        return weight_parameters(self)

    def softmax_groups(self, include_blocks: bool = True) -> list[Tensor]:
        """The α tensors each softmax normalises, for β-decay: node groups always, SSB/CSB
        when ``include_blocks`` and their gating is softmax (a sigmoid gate has no group)."""
        return [g for cell in self.cells.values() for g in cell.softmax_groups(include_blocks)]

    def alpha_rows(self) -> list[dict[str, Any]]:
        """One row per α: ``cell, group, input, op, alpha, weight`` (``alphas.csv`` rows)."""
        return [row for name, cell in self.cells.items() for row in cell.alpha_rows(name)]


# DoubleConv and cell_name are re-exported from nas.backbone for existing importers.
__all__ = ["DoubleConv", "Supernet", "cell_name"]
