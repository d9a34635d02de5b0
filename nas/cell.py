"""The searched skip cell: one per encoder→decoder connection (thesis Fig. 7).

Node 0 is the cell input resampled to the decoder's resolution and projected to the node width
(:class:`CellInput`, shared with the discrete cells of :mod:`nas.models.genotype_net`).
Node ``i`` (1..N) mixes every (input ``j < i``, op) pair with a **node-level softmax** (Zhang &
Ding, ICML 2023): one softmax over all ``i × n_ops`` α of the node, so its weights sum to 1
across inputs and ops. The cell output is ``concat(SSB, CSB)`` over nodes 1..N:

- SSB: ``Σ_k g_ssb[k] · n_k`` (sum block),
- CSB: ``conv1x1(concat_k(g_csb[k] · n_k))`` → node width (concat block),

with ``g = softmax`` or ``sigmoid`` of the block's α, per the search space.

Cost matters (the supernet runs 16 cells at up to full resolution), so: node 0 is projected once
per cell, not per op; ``zero`` is never computed (its α only enters the softmax); ReLU and every
parameter-free op are computed once per node state and reused by all edges leaving it; conv ops
fold their mixing weight into their BatchNorm and recompute their inner convolution in backward
instead of storing it (one stored tensor per op); both blocks run as one 1×1 convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.ops import PARAMETER_FREE, ReLUConvBN, build_op, check_op_name, contiguous_grad
from nas.search_space import RESAMPLE_DOWN


def gate(alpha: Tensor, kind: str) -> Tensor:
    """Weights of an α group, same shape back: ``softmax`` (one softmax over all its entries:
    a node's (input, op) pairs, or the nodes of a block) or ``sigmoid`` (independent gates)."""
    if kind == "softmax":
        return torch.softmax(alpha.flatten(), dim=0).view_as(alpha)
    if kind == "sigmoid":
        return torch.sigmoid(alpha)
    raise ValueError(f"unknown gating {kind!r}; expected softmax or sigmoid")


def weight_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``module`` that is not one of its ``arch_parameters()`` (α)."""
    arch = {id(p) for p in module.arch_parameters()}
    return [p for p in module.parameters() if id(p) not in arch]


class CellInput(nn.Module):
    """Node 0 of a skip cell: the encoder map resampled once to the decoder's resolution, then
    projected to the node width.

    Args:
        c_in: channels of the encoder feature map.
        node_width: channels of node 0; a 1×1 projection (conv without bias → BatchNorm) is
            built only when it differs from ``c_in`` (``project`` is None otherwise).
        down: halvings from the input to the cell's resolution, ``dec - enc`` levels; negative
            means bilinear upsampling by ``2**-down``.
        resample_down: ``maxpool`` or ``bilinear`` (antialiased) for downsampling.
        affine: BatchNorm affine flag of the projection.

    Shapes: ``[B, c_in, H, W]`` → ``[B, node_width, H', W']`` with ``H' = H / 2**down`` unless
    ``size`` is passed to ``forward``.
    """

    def __init__(
        self,
        c_in: int,
        node_width: int,
        down: int = 0,
        resample_down: str = "maxpool",
        affine: bool = False,
    ) -> None:
        super().__init__()
        if resample_down not in RESAMPLE_DOWN:
            raise ValueError(f"resample_down must be maxpool or bilinear, got {resample_down!r}")
        self.down = down
        self.resample_down = resample_down
        self.project: nn.Module | None = None
        if c_in != node_width:
            self.project = nn.Sequential(
                nn.Conv2d(c_in, node_width, 1, bias=False),
                nn.BatchNorm2d(node_width, affine=affine),
            )

    def output_size(self, x: Tensor) -> tuple[int, int]:
        """Default output size for input ``x``: its size scaled by ``2**-down``."""
        h, w = x.shape[-2:]
        if self.down >= 0:
            return h >> self.down, w >> self.down
        return h << -self.down, w << -self.down

    def resample(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """``x`` resized to ``size`` (max-pool or antialiased bilinear down, bilinear up)."""
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        if self.down > 0 and self.resample_down == "maxpool":
            factor = 1 << self.down
            if x.shape[-2] // factor == size[0] and x.shape[-1] // factor == size[1]:
                return F.max_pool2d(x, factor)
            return F.adaptive_max_pool2d(x, size)
        # Antialias only when shrinking: plain bilinear would skip most input pixels.
        return F.interpolate(
            x, size=size, mode="bilinear", align_corners=False, antialias=self.down > 0
        )

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Input resampled once to ``size`` and projected to the node width.

        The 1×1 projection runs at the lower of the two resolutions (after downsampling,
        before upsampling): cheaper, and a 1×1 conv commutes with bilinear interpolation.
        """
        size = tuple(size) if size is not None else self.output_size(x)
        if self.project is None:
            return self.resample(x, size)
        if self.down < 0:
            return self.resample(self.project(x), size)
        return self.project(self.resample(x, size))


def accept_legacy_input_keys(cell: nn.Module) -> None:
    """Let ``cell.load_state_dict`` read checkpoints written before :class:`CellInput`
    existed, which stored node 0's projection as ``<cell>.project.*`` instead of
    ``<cell>.node0.project.*``. For cells that hold their :class:`CellInput` as ``node0``."""
    cell.register_load_state_dict_pre_hook(_rename_legacy_input_keys)


def _rename_legacy_input_keys(module: nn.Module, state_dict: dict, prefix: str, *_: Any) -> None:
    old, new = prefix + "project.", prefix + "node0.project."
    for key in [k for k in state_dict if k.startswith(old)]:
        value = state_dict.pop(key)
        state_dict.setdefault(new + key[len(old):], value)


def masked_gate(alpha: Tensor, kind: str, keep: Tensor) -> Tensor:
    """:func:`gate` restricted to the entries where ``keep`` (bool, ``alpha``'s shape) is True.

    ``softmax``: the same softmax renormalised over the kept entries (the others get exactly 0);
    ``sigmoid``: the gates of kept entries, 0 elsewhere. A group with nothing kept gets all-zero
    weights (its node or block then contributes nothing), never the NaN of an empty softmax.
    """
    if not bool(keep.any()):
        return torch.zeros_like(alpha)
    if kind == "softmax":
        return gate(alpha.masked_fill(~keep, float("-inf")), kind)
    return gate(alpha, kind) * keep


@dataclass
class CellMask:
    """Which α entries a :class:`SkipCell` may use: ``nodes[i-1]`` (bool ``(i, n_ops)``) for node
    ``i``, ``ssb`` and ``csb`` (bool ``(nodes,)``). A cell with a mask weights each group by
    :func:`masked_gate`, so the supernet computes a sub-architecture with its trained weights
    and α (one-shot scoring and perturbation-based selection, :mod:`nas.oneshot`). The tensors
    may be changed in place between forward passes."""

    nodes: list[Tensor]
    ssb: Tensor
    csb: Tensor

    @classmethod
    def full(cls, nodes: int, n_ops: int, device: torch.device | str = "cpu") -> CellMask:
        """Everything kept: the cell computes exactly what it computes without a mask."""
        return cls(nodes=[torch.ones(i, n_ops, dtype=torch.bool, device=device) for i in range(1, nodes + 1)],
                   ssb=torch.ones(nodes, dtype=torch.bool, device=device),
                   csb=torch.ones(nodes, dtype=torch.bool, device=device))


def node_softmax(alpha: Tensor) -> Tensor:
    """Node-level softmax: one softmax over all (input, op) α of a node, same shape back
    (``gate(alpha, "softmax")``)."""
    return gate(alpha, "softmax")


class _NodeState:
    """A node's tensor with lazily computed results shared by every edge leaving the node."""

    def __init__(self, x: Tensor, shared_ops: nn.ModuleDict) -> None:
        self.x = x
        self._shared_ops = shared_ops
        self._cache: dict[str, Tensor] = {}

    def relu(self) -> Tensor:
        """ReLU(x), the common first step of all conv ops."""
        if "relu" not in self._cache:
            self._cache["relu"] = F.relu(self.x)
        return self._cache["relu"]

    def shared(self, name: str) -> Tensor:
        """Output of parameter-free op ``name`` on this node, computed once."""
        key = f"op:{name}"
        if key not in self._cache:
            self._cache[key] = self._shared_ops[name](self.x)
        return self._cache[key]


class MixedNode(nn.Module):
    """Intermediate node ``index``: ``Σ_{j<index, o} w[j, o] · op_{j,o}(n_j)``.

    Holds the parametric ops of its ``index`` incoming edges (``edges[j][op]``); parameter-free
    ops are owned by the cell and shared. ``zero`` is skipped entirely.
    """

    def __init__(self, index: int, ops: Sequence[str], width: int, affine: bool) -> None:
        super().__init__()
        self.index = index
        self.op_names = list(ops)
        self.edges = nn.ModuleList(
            nn.ModuleDict(
                {
                    name: build_op(name, width, width, affine)
                    for name in ops
                    if name not in PARAMETER_FREE
                }
            )
            for _ in range(index)
        )

    def forward(self, states: Sequence[_NodeState], weights: Tensor) -> Tensor:
        """Mix node states ``n_0..n_{index-1}`` with ``weights`` of shape ``(index, n_ops)``."""
        flat = weights.flatten().unbind(0)
        n_ops = len(self.op_names)
        total: Tensor | None = None
        for j, own_ops in enumerate(self.edges):
            state = states[j]
            for k, name in enumerate(self.op_names):
                if name == "zero":
                    continue
                w = flat[j * n_ops + k]
                if name in own_ops:
                    op = own_ops[name]
                    if isinstance(op, ReLUConvBN):
                        term = op.forward_weighted(state.relu(), w, recompute=True)
                    else:
                        term = w * op(state.x)
                else:
                    term = w * state.shared(name)
                # Every term is a fresh tensor that autograd does not save, so accumulating in
                # place is safe and avoids one full-size allocation per term.
                total = term if total is None else total.add_(term)
        assert total is not None  # SkipCell rejects op lists made only of `zero`
        return contiguous_grad(total)


class SkipCell(nn.Module):
    """Searched skip connection from an encoder level to a decoder level.

    Args:
        c_in: channels of the encoder feature map.
        node_width: channels of every node; the cell outputs ``2 * node_width`` (SSB + CSB).
        nodes: number of intermediate nodes N (>= 1).
        ops: candidate op names (registered in :mod:`nas.ops`).
        down: halvings from the input to the cell's resolution, ``dec - enc`` levels; negative
            means bilinear upsampling by ``2**-down``.
        resample_down: ``maxpool`` or ``bilinear`` (antialiased) for downsampling.
        ssb_gating / csb_gating: ``softmax`` or ``sigmoid`` for the two output blocks.
        affine: BatchNorm affine flag of ops and projection (False during search, as DARTS).
        alpha_init: α start as ``alpha_init · N(0, 1)`` (DARTS: 1e-3); 0 gives all-equal α. The
            random draw happens either way, so the weights' initialisation does not depend on it.

    Submodules: ``node0`` (:class:`CellInput`: resampling and projection), ``shared_ops``
    (parameter-free ops), ``mixed`` (one :class:`MixedNode` per intermediate node) and
    ``csb_conv``; ``out_channels`` is ``2 * node_width``.

    ``mask`` (a :class:`CellMask`, default None) restricts every α group to its kept entries;
    None (the search) costs one attribute test per group and nothing else.

    Shapes: ``[B, c_in, H, W]`` → ``[B, 2 * node_width, H', W']`` with ``H' = H / 2**down``
    unless ``size`` is passed to ``forward``.

    α (initialised ``alpha_init · randn``): ``node_alphas[i-1]`` of shape ``(i, n_ops)`` for
    node ``i``; ``ssb_alpha`` and ``csb_alpha`` of shape ``(N,)`` over nodes 1..N.
    """

    def __init__(
        self,
        c_in: int,
        node_width: int,
        nodes: int,
        ops: Sequence[str],
        down: int = 0,
        resample_down: str = "maxpool",
        ssb_gating: str = "softmax",
        csb_gating: str = "sigmoid",
        affine: bool = False,
        alpha_init: float = 1e-3,
    ) -> None:
        super().__init__()
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        for name in ops:
            check_op_name(name)
        if all(name == "zero" for name in ops):
            raise ValueError("ops needs at least one op other than 'zero'")
        for kind in (ssb_gating, csb_gating):
            gate(torch.zeros(1), kind)  # validates the name
        self.op_names = list(ops)
        self.n_nodes = nodes
        self.node_width = node_width
        self.out_channels = 2 * node_width
        self.ssb_gating = ssb_gating
        self.csb_gating = csb_gating

        self.node0 = CellInput(c_in, node_width, down, resample_down, affine)
        self.shared_ops = nn.ModuleDict(
            {
                name: build_op(name, node_width, node_width, affine)
                for name in ops
                if name in PARAMETER_FREE and name != "zero"
            }
        )
        self.mixed = nn.ModuleList(
            MixedNode(i, ops, node_width, affine) for i in range(1, nodes + 1)
        )
        self.csb_conv = nn.Conv2d(nodes * node_width, node_width, 1, bias=False)
        self.register_buffer("_eye", torch.eye(node_width), persistent=False)

        n_ops = len(self.op_names)
        self.node_alphas = nn.ParameterList(
            nn.Parameter(alpha_init * torch.randn(i, n_ops)) for i in range(1, nodes + 1)
        )
        self.ssb_alpha = nn.Parameter(alpha_init * torch.randn(nodes))
        self.csb_alpha = nn.Parameter(alpha_init * torch.randn(nodes))
        self.mask: Optional[CellMask] = None
        accept_legacy_input_keys(self)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Cell output ``[B, 2·node_width, *size]``; ``size`` defaults to ``H / 2**down``."""
        mask = self.mask
        states = [_NodeState(self.node0(x, size), self.shared_ops)]
        for i, (node, alpha) in enumerate(zip(self.mixed, self.node_alphas)):
            w = node_softmax(alpha) if mask is None else masked_gate(alpha, "softmax", mask.nodes[i])
            states.append(_NodeState(node(states, w), self.shared_ops))
        return self._blocks(torch.cat([s.x for s in states[1:]], dim=1))

    def _blocks(self, inner: Tensor) -> Tensor:
        """SSB and CSB as one 1×1 conv over ``concat(n_1..n_N)``.

        SSB is the block-diagonal weight ``[g_ssb[0]·I, …, g_ssb[N-1]·I]``; CSB is the trainable
        conv with its input-channel blocks scaled by ``g_csb``. Exactly the two blocks'
        definitions, without materialising ``g·n_k`` for every node.
        """
        c, mask = self.node_width, self.mask
        if mask is None:
            g_ssb = gate(self.ssb_alpha, self.ssb_gating)
            g_csb = gate(self.csb_alpha, self.csb_gating)
        else:
            g_ssb = masked_gate(self.ssb_alpha, self.ssb_gating, mask.ssb)
            g_csb = masked_gate(self.csb_alpha, self.csb_gating, mask.csb)
        ssb_weight = torch.kron(g_ssb.view(1, -1), self._eye)
        csb_weight = self.csb_conv.weight.flatten(1) * g_csb.repeat_interleave(c).view(1, -1)
        weight = torch.cat([ssb_weight, csb_weight], dim=0)
        return F.conv2d(inner, weight.to(inner.dtype)[:, :, None, None])

    # ------------------------------------------------------------------ α bookkeeping

    def alpha_groups(self) -> list[tuple[str, nn.Parameter, str]]:
        """``(group, α, gating)`` for ``node1..nodeN`` (node softmax), ``ssb`` and ``csb``."""
        groups = [(f"node{i}", a, "softmax") for i, a in enumerate(self.node_alphas, 1)]
        groups.append(("ssb", self.ssb_alpha, self.ssb_gating))
        groups.append(("csb", self.csb_alpha, self.csb_gating))
        return groups

    def group_weights(self) -> dict[str, Tensor]:
        """Group name → normalised weights (node groups keep their ``(i, n_ops)`` shape)."""
        return {name: gate(alpha, kind) for name, alpha, kind in self.alpha_groups()}

    def arch_parameters(self) -> list[nn.Parameter]:
        """All α of the cell (node groups, then SSB, then CSB)."""
        return [alpha for _, alpha, _ in self.alpha_groups()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an α."""
        return weight_parameters(self)

    def softmax_groups(self, include_blocks: bool = True) -> list[Tensor]:
        """The α tensors each softmax normalises (node groups; blocks if softmax-gated)."""
        return [
            alpha
            for name, alpha, kind in self.alpha_groups()
            if kind == "softmax" and (include_blocks or name.startswith("node"))
        ]

    @torch.no_grad()
    def alpha_rows(self, cell: str) -> list[dict[str, Any]]:
        """One row per α: ``cell, group, input, op, alpha, weight`` (see docs/internals.md)."""
        rows: list[dict[str, Any]] = []
        weights = self.group_weights()
        for name, alpha, _ in self.alpha_groups():
            # One host transfer per group (not one per element); same values as float(t[i]).
            a, w = alpha.tolist(), weights[name].tolist()
            if name.startswith("node"):
                for j, (a_j, w_j) in enumerate(zip(a, w)):
                    for op, a_jk, w_jk in zip(self.op_names, a_j, w_j):
                        rows.append(_row(cell, name, f"n{j}", op, a_jk, w_jk))
            else:
                for k, (a_k, w_k) in enumerate(zip(a, w)):
                    rows.append(_row(cell, name, f"n{k + 1}", "-", a_k, w_k))
        return rows


def _row(cell: str, group: str, inp: str, op: str, alpha: float, weight: float) -> dict:
    return {
        "cell": cell,
        "group": group,
        "input": inp,
        "op": op,
        "alpha": alpha,
        "weight": weight,
    }
