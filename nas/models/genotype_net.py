"""The discrete network of a genotype: the supernet's U-Net with only the kept ops in its cells.

Registered as ``genotype`` in :mod:`nas.models.registry`, so ``nas retrain --genotype FILE``
builds it through the same registry as the baselines.

Design choices the thesis leaves open (documented here so results can be compared):

- **Node = weighted sum** of its kept edges, with the edges' discretized weights renormalised
  per node to sum 1 (fixed buffers, not trained). Keeping the search's relative strengths costs
  nothing and the ops' affine BatchNorms can rescale anyway.
- **SSB** = Σ of its kept nodes with the kept weights renormalised to sum 1 (fixed buffers).
- **CSB** = concat of its kept nodes, each × its gate value (fixed), then a trainable 1×1 conv
  to the node width (no bias, as in the supernet).
- A cell outputs ``concat(SSB, CSB)`` of the blocks that kept a node; a cell with no kept output
  is absent and its decoder level reads only its other inputs.

The encoder (double conv per level), the decoder plan, the head and the forward pass are the
supernet's backbone (:class:`nas.backbone.UNetBackbone`), and node 0 (resampling and projection)
is the search cell's :class:`nas.cell.CellInput`, so the searched and the retrained network
differ only in their cells.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from nas.backbone import UNetBackbone, parse_cell_name
from nas.cell import CellInput, accept_legacy_input_keys
from nas.genotype import CellGenotype, Edge, Genotype, load_genotype
from nas.models.checks import check_float, check_input, check_int
from nas.models.registry import register_model
from nas.ops import build_op

GenotypeLike = Union[Genotype, Mapping[str, Any], str, os.PathLike]


def _normalised(weights: list[float]) -> Tensor:
    """``weights / sum``; equal weights when they sum to 0 (a hand-edited file)."""
    t = torch.tensor(weights, dtype=torch.float32)
    total = float(t.sum())
    return t / total if total > 0 else torch.full_like(t, 1.0 / max(len(weights), 1))


def scaled(width: int, multiplier: float) -> int:
    """A width × the multiplier, rounded, at least 1."""
    return max(1, int(round(width * multiplier)))


class GenotypeCell(nn.Module):
    """A skip cell with only its kept edges (see the module docstring for the arithmetic).

    Args:
        cell: the cell's genotype.
        c_in: channels of the encoder feature map.
        node_width: channels of every node.
        down: decoder level − encoder level (negative: upsampling), as in :class:`~nas.cell.CellInput`.
        resample_down: ``maxpool`` or ``bilinear``.
        live: ``cell.live()`` when the caller has already computed it.

    Shapes: ``[B, c_in, H, W]`` → ``[B, out_channels, *size]``, ``out_channels`` =
    ``node_width`` × (number of non-empty blocks).

    Node 0 is the search cell's :class:`~nas.cell.CellInput` (``node0``) with an affine
    projection BatchNorm.
    """

    def __init__(self, cell: CellGenotype, c_in: int, node_width: int, down: int, resample_down: str,
                 live: Optional[tuple[list[Edge], list[int], list[int]]] = None) -> None:
        super().__init__()
        edges, ssb_nodes, csb_nodes = cell.live() if live is None else live
        if not ssb_nodes and not csb_nodes:
            raise ValueError("cell has no kept output block; leave it out of the network")
        self.node0 = CellInput(c_in, node_width, down, resample_down, affine=True)
        self.ops = nn.ModuleList(build_op(e.op, node_width, node_width, affine=True) for e in edges)
        self._sources = [e.from_ for e in edges]
        # (node, indices of its edges), nodes in increasing order, each node's edges in genotype order
        self._node_edges = [(node, [i for i, e in enumerate(edges) if e.to == node])
                            for node in sorted({e.to for e in edges})]
        weights = torch.zeros(len(edges))
        for _, idx in self._node_edges:
            weights[idx] = _normalised([edges[i].weight for i in idx])
        self.register_buffer("edge_weights", weights)
        self.ssb_nodes, self.csb_nodes = ssb_nodes, csb_nodes
        self.register_buffer("ssb_weights", _normalised([cell.ssb.weights[cell.ssb.nodes.index(n)] for n in ssb_nodes]))
        self.register_buffer("csb_gates", torch.tensor([cell.csb.weights[cell.csb.nodes.index(n)] for n in csb_nodes],
                                                       dtype=torch.float32))
        self.csb_conv = nn.Conv2d(len(csb_nodes) * node_width, node_width, 1, bias=False) if csb_nodes else None
        self.out_channels = node_width * (bool(ssb_nodes) + bool(csb_nodes))
        accept_legacy_input_keys(self)

    def forward(self, x: Tensor, size: Optional[tuple[int, int]] = None) -> Tensor:
        states = {0: self.node0(x, size)}
        for node, idx in self._node_edges:
            terms = [self.edge_weights[i] * self.ops[i](states[self._sources[i]]) for i in idx]
            states[node] = sum(terms[1:], terms[0])
        parts = []
        if self.ssb_nodes:
            parts.append(sum(w * states[n] for w, n in zip(self.ssb_weights, self.ssb_nodes)))
        if self.csb_conv is not None:
            parts.append(self.csb_conv(torch.cat([g * states[n] for g, n in zip(self.csb_gates, self.csb_nodes)], 1)))
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]


@register_model("genotype")
class GenotypeNet(UNetBackbone):
    """Searched skip-cell U-Net built from a genotype (DARTS, Liu et al., ICLR 2019; thesis skip cells).

    The supernet's backbone (5-level double-conv encoder, full-scale decoder, 1×1 head) with the
    genotype's cells, every width × ``width_multiplier`` (thesis retrain: 2×). Ops are the
    registry's with affine BatchNorm. Cells that kept no output block are left out.

    Args:
        genotype: a :class:`~nas.genotype.Genotype`, its dict form, or a path to a genotype file.
        width_multiplier: scales the encoder/decoder widths and the node width (> 0).
        out_channels: logit channels (1 or 2); default: the genotype's ``head_channels``.

    Shape: ``[B, in_channels, H, W]`` → ``[B, out_channels, H, W]``, H and W divisible by 16.
    """

    def __init__(self, genotype: GenotypeLike, width_multiplier: float = 2.0,
                 out_channels: Optional[int] = None) -> None:
        genotype = _as_genotype(genotype)
        m = check_float("genotype", "width_multiplier", width_multiplier, 1e-6, float("inf"))
        bb = genotype.backbone
        out = check_int("genotype", "out_channels", bb.head_channels if out_channels is None else out_channels, 1, 2)
        c = scaled(bb.node_width, m)

        def build_cells(widths: list[int]) -> dict[str, nn.Module]:
            cells: dict[str, nn.Module] = {}
            for name, cell in genotype.cells.items():
                enc, dec = parse_cell_name(name)
                live = cell.live()
                if any(live[1:]):
                    cells[name] = GenotypeCell(cell, widths[enc - 1], c, dec - enc, bb.resample_down, live)
            return cells

        super().__init__(bb.in_channels, [scaled(w, m) for w in bb.widths], out, build_cells)
        self.genotype = genotype
        self.node_width = c

    def forward(self, x: Tensor) -> Tensor:
        check_input("genotype", x, self.in_channels, 16)
        return super().forward(x)

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameters per part: ``encoder``, ``decoder``, ``head`` and ``<cell>.{project,ops,csb}``."""
        def count(module: Optional[nn.Module]) -> int:
            return 0 if module is None else sum(p.numel() for p in module.parameters())

        parts = {"encoder": count(self.encoder), "decoder": count(self.decoder), "head": count(self.head)}
        for name, cell in self.cells.items():
            parts[f"{name}.project"] = count(cell.node0.project)
            parts[f"{name}.ops"] = count(cell.ops)
            parts[f"{name}.csb"] = count(cell.csb_conv)
        return parts


def _as_genotype(value: GenotypeLike) -> Genotype:
    if isinstance(value, Genotype):
        value.validate()  # a no-op for a genotype loaded or validated before and not changed since
        return value
    if isinstance(value, Mapping):
        return Genotype.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        return load_genotype(Path(value))
    raise TypeError(f"genotype must be a Genotype, a dict or a path, got {type(value).__name__}")


__all__ = ["GenotypeCell", "GenotypeNet", "scaled"]
