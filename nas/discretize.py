"""Discretization: turn a search's continuous α into a :class:`~nas.genotype.Genotype`.

Weights are computed from raw α with the supernet's own functions (:func:`nas.cell.node_softmax`
for nodes, :func:`nas.cell.gate` for SSB/CSB), so what is ranked here is exactly what weighted
the supernet's forward pass. Policies choose the (input, op) pairs of each node:

- ``thesis`` (default; Zhang & Ding, ICML 2023, as used by the thesis): the top-``k``
  (input, op) pairs of the node-level softmax.
- ``darts`` (Liu et al., ICLR 2019): the 2 incoming edges with the strongest non-zero op, and
  that op on each (fewer when the node has fewer inputs).
- ``threshold``: the fewest strongest pairs whose cumulative weight exceeds ``threshold`` × the
  node's non-zero mass (adapts the number of edges to how decided the node is).

- ``perturbation`` (Wang et al., ICLR 2021, DARTS-PT): the ``k`` pairs per node whose removal from
  the trained supernet lowers validation Dice the most. It needs the run's weights, not only α,
  so it lives in :mod:`nas.oneshot` (:func:`discretize_run` dispatches to it); where only α are
  at hand (random controls, the search signal) it stands for the α policy with the same number
  of pairs per node, ``thesis`` (see :data:`MODEL_POLICIES`).

Every policy keeps, per block, the nodes whose weight is ≥ the block mean; ``zero`` is never
kept. Nodes that no longer feed an output block (or get no input) are pruned with their edges.
The SSB keeps its weights renormalised to sum 1 over the kept nodes, the CSB its gate values.

Fallback: a cell left with nothing keeps one ``identity`` edge 0→1 with node 1 in both blocks
(weights 1), so the retrained network still has that skip as a plain projection; the cell gets
a ``note:`` and a :class:`DiscretizeWarning`. The built-in policies on a validated search space
cannot get there (every node keeps a non-zero pair, every block its strongest node); it guards
policies added to :data:`POLICIES` that may keep nothing for a node.

α sources: :func:`alpha_state_from_checkpoint` (``checkpoints/last.pt``) and
:func:`alpha_state_from_csv` (the ``alphas.csv`` rows logged at the end of an epoch, in full
precision); :func:`load_run_alphas` picks between them for ``--from-epoch``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor

from nas.cell import gate, node_softmax
from nas.errors import UserError
from nas.genotype import Backbone, Block, CellGenotype, Edge, Genotype, prune_cell, round_weight
from nas.search_space import SearchSpace, load_search_space
from nas.supernet import cell_name
from nas.textfiles import read_csv

AlphaState = dict[str, dict[str, Tensor]]
#: A policy maps a node's weights ``(inputs, n_ops)`` to the kept ``(input, op_index)`` pairs.
Policy = Callable[[Tensor, list[str], int, float], list[tuple[int, int]]]

FALLBACK_NOTE = ("no edge survived discretization; fallback: identity edge 0->1 with node 1 "
                 "in SSB and CSB (weight 1)")
_REL_TOL = 1e-9  # block ties: equal α must give equal weights, whatever the float rounding


class DiscretizeWarning(UserWarning):
    """A cell needed the fallback (see the module docstring)."""


# ----------------------------------------------------------------------------- policies
def _ranked_pairs(w: Tensor, ops: list[str]) -> list[tuple[int, int]]:
    """All non-zero (input, op) pairs, strongest first; ties broken by input, then op order."""
    pairs = [(j, o) for j in range(w.shape[0]) for o, name in enumerate(ops) if name != "zero"]
    return sorted(pairs, key=lambda p: (-float(w[p]), p[0], p[1]))


def _thesis(w: Tensor, ops: list[str], k: int, threshold: float) -> list[tuple[int, int]]:
    return _ranked_pairs(w, ops)[:k]


def _darts(w: Tensor, ops: list[str], k: int, threshold: float) -> list[tuple[int, int]]:
    best: dict[int, tuple[int, int]] = {}
    for j, o in _ranked_pairs(w, ops):  # first seen per input = its strongest non-zero op
        best.setdefault(j, (j, o))
    return list(best.values())[:2]


def _threshold(w: Tensor, ops: list[str], k: int, threshold: float) -> list[tuple[int, int]]:
    ranked = _ranked_pairs(w, ops)
    mass = sum(float(w[p]) for p in ranked)
    kept: list[tuple[int, int]] = []
    total = 0.0
    for pair in ranked:
        kept.append(pair)
        total += float(w[pair])
        if total > threshold * mass:
            break
    return kept


POLICIES: dict[str, Policy] = {"thesis": _thesis, "darts": _darts, "threshold": _threshold}
#: Policies that score pairs with the trained supernet (:mod:`nas.oneshot`) → the α policy that
#: keeps the same structure (pairs per node), used where only α are at hand.
MODEL_POLICIES: dict[str, str] = {"perturbation": "thesis"}


def alpha_policy(policy: str) -> str:
    """The α-only policy that stands for ``policy`` (itself unless it needs the trained weights)."""
    return MODEL_POLICIES.get(policy, policy)


def policy_settings(policy: str, k: int, threshold: float) -> dict[str, Any]:
    """What a genotype's ``source`` records about its policy: the name and the knob it uses."""
    settings: dict[str, Any] = {"policy": policy}
    if alpha_policy(policy) == "thesis":
        settings["k"] = k
    elif policy == "threshold":
        settings["threshold"] = float(threshold)
    return settings


# ----------------------------------------------------------------------------- one cell
def _keep_block(g: Tensor) -> list[int]:
    """Nodes (1-based) whose block weight is ≥ the block mean."""
    mean = float(g.mean())
    return [i + 1 for i, v in enumerate(g.tolist()) if v >= mean - _REL_TOL * abs(mean)]


def discretize_cell(weights: Mapping[str, Tensor], space: SearchSpace, policy: str = "thesis",
                    k: int = 3, threshold: float = 0.9, name: str = "cell") -> CellGenotype:
    """Discretize one cell given its *normalised* weights (``node1``.., ``ssb``, ``csb``)."""
    check_policy(policy, k, threshold)
    if policy in MODEL_POLICIES:
        raise UserError(f"discretize policy '{policy}' needs the run's trained weights; use discretize_run")
    select = POLICIES[policy]
    pairs = {node: select(weights[f"node{node}"], space.ops, k, threshold) for node in range(1, space.nodes + 1)}
    return cell_from_pairs(weights, space, pairs, name)


def cell_from_pairs(weights: Mapping[str, Tensor], space: SearchSpace,
                    pairs: Mapping[int, list[tuple[int, int]]], name: str = "cell") -> CellGenotype:
    """The cell that keeps ``pairs[node]`` (``(input, op index)``; ``zero`` never kept), edge
    weights from ``weights``, the block rule, pruning and the fallback of the module docstring.
    Shared by the α policies and the perturbation policy, so only the pair choice differs."""
    edges: list[Edge] = []
    for node in range(1, space.nodes + 1):
        w = weights[f"node{node}"]
        edges += [Edge(node, j, space.ops[o], float(w[j, o])) for j, o in pairs.get(node, []) if space.ops[o] != "zero"]
    ssb_nodes, csb_nodes = _keep_block(weights["ssb"]), _keep_block(weights["csb"])
    edges, ssb_nodes, csb_nodes = prune_cell(edges, ssb_nodes, csb_nodes)
    if not ssb_nodes and not csb_nodes:
        warnings.warn(f"{name}: {FALLBACK_NOTE}", DiscretizeWarning, stacklevel=3)
        return CellGenotype(edges=[Edge(1, 0, "identity", 1.0)],
                            ssb=Block(space.ssb_gating, [1], [1.0]),
                            csb=Block(space.csb_gating, [1], [1.0]), notes=[FALLBACK_NOTE])
    ssb_w = [float(weights["ssb"][n - 1]) for n in ssb_nodes]
    ssb_sum = sum(ssb_w)
    ssb_w = [v / ssb_sum for v in ssb_w] if ssb_sum > 0 else [1.0 / len(ssb_w)] * len(ssb_w)
    edges.sort(key=lambda e: (e.to, e.from_, space.ops.index(e.op)))
    return CellGenotype(edges=edges,
                        ssb=Block(space.ssb_gating, ssb_nodes, ssb_w),
                        csb=Block(space.csb_gating, csb_nodes, [float(weights["csb"][n - 1]) for n in csb_nodes]))


# ----------------------------------------------------------------------------- whole network
def cell_weights(alphas: Mapping[str, Tensor], space: SearchSpace) -> dict[str, Tensor]:
    """Normalised weights of one cell from its raw α, with the supernet's own functions.

    Computed in float64 so that ranking and ties do not depend on float32 rounding.
    """
    out = {f"node{i}": node_softmax(alphas[f"node{i}"].detach().double().cpu()) for i in range(1, space.nodes + 1)}
    out["ssb"] = gate(alphas["ssb"].detach().double().cpu(), space.ssb_gating)
    out["csb"] = gate(alphas["csb"].detach().double().cpu(), space.csb_gating)
    return out


def check_alpha_state(alpha_state: Mapping[str, Mapping[str, Tensor]], space: SearchSpace,
                      where: str = "alphas") -> None:
    """Every cell of ``space`` with every group at the shape the supernet uses, and nothing else."""
    expected = {cell_name(e, d) for e, d in space.skips}
    extra = sorted(set(alpha_state) - expected)
    if extra:
        raise UserError(f"{where}: cell {extra[0]} is not a skip of search space '{space.name}'")
    n, n_ops = space.nodes, len(space.ops)
    shapes = {f"node{i}": (i, n_ops) for i in range(1, n + 1)} | {"ssb": (n,), "csb": (n,)}
    for cell in sorted(expected):
        if cell not in alpha_state:
            raise UserError(f"{where}: no α for cell {cell} of search space '{space.name}'")
        for group, shape in shapes.items():
            value = alpha_state[cell].get(group)
            if value is None:
                raise UserError(f"{where}: {cell}: group {group} missing")
            if tuple(value.shape) != shape:
                raise UserError(f"{where}: {cell}.{group}: shape {tuple(value.shape)} does not match "
                                f"search space '{space.name}' (expected {shape})")


def check_policy(policy: str, k: int, threshold: float) -> None:
    """Raise :class:`UserError` for an unknown policy or an out-of-range k / threshold."""
    if policy not in POLICIES and policy not in MODEL_POLICIES:
        raise UserError(f"discretize policy '{policy}' unknown; choose one of {', '.join([*POLICIES, *MODEL_POLICIES])}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"discretize k must be an integer >= 1, got {k!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise UserError(f"discretize threshold must be a number in (0, 1], got {threshold!r}")


def discretize(alpha_state: Mapping[str, Mapping[str, Tensor]], space: SearchSpace, policy: str = "thesis",
               k: int = 3, threshold: float = 0.9, source: Optional[Mapping[str, Any]] = None) -> Genotype:
    """The genotype that ``policy`` keeps from raw α (``cell → {node1.., ssb, csb}``).

    ``source`` (e.g. ``{"run": ..., "epoch": ...}``) is recorded in the genotype before the
    policy settings.
    """
    check_policy(policy, k, threshold)
    check_alpha_state(alpha_state, space)
    settings = policy_settings(policy, k, threshold)
    cells = {}
    for enc, dec in space.skips:
        name = cell_name(enc, dec)
        weights = cell_weights(alpha_state[name], space)
        cells[name] = discretize_cell(weights, space, policy, k, threshold, name)
    return Genotype(search_space=space.name, backbone=Backbone.from_space(space),
                    source={**dict(source or {}), **settings}, cells=cells)


def random_alpha_state(space: SearchSpace, seed: int) -> AlphaState:
    """α drawn i.i.d. from N(0, 1) for every group of every cell, reproducibly from ``seed``.

    Ranking random α picks, per node, a uniformly random set of (input, op) pairs and, per
    block, a random subset of nodes: the null model a search must beat.
    """
    gen = torch.Generator().manual_seed(int(seed))
    n, n_ops = space.nodes, len(space.ops)
    state: AlphaState = {}
    for enc, dec in space.skips:
        groups = {f"node{i}": torch.randn(i, n_ops, generator=gen, dtype=torch.float64) for i in range(1, n + 1)}
        groups["ssb"] = torch.randn(n, generator=gen, dtype=torch.float64)
        groups["csb"] = torch.randn(n, generator=gen, dtype=torch.float64)
        state[cell_name(enc, dec)] = groups
    return state


def random_genotype(space: SearchSpace, seed: int, policy: str = "thesis", k: int = 3,
                    threshold: float = 0.9, source: Optional[Mapping[str, Any]] = None) -> Genotype:
    """A random genotype of ``space`` under the same policy, k and threshold as a search's.

    The control a searched genotype is compared with: α of every group are drawn from
    :func:`random_alpha_state` and discretized by the very same :func:`discretize`, so the
    sample has the structure (pairs per node, block rules, pruning) a search result would have.
    Only the structure is random: the kept weights are those of all-equal α (uniform node and
    SSB weights, CSB gates at their neutral value), so a random control never gets arbitrary
    fixed edge or gate scales that a searched genotype would not have. ``source`` (e.g. the
    run whose space was used) is recorded before ``random: true`` and the seed.
    """
    check_policy(policy, k, threshold)
    genotype = discretize(random_alpha_state(space, seed), space, alpha_policy(policy), k, threshold,
                          source={**dict(source or {}), "random": True, "seed": int(seed)})
    genotype.source.update(policy_settings(policy, k, threshold))  # the structure is alpha_policy's
    n_ops = len(space.ops)
    neutral_csb = float(gate(torch.zeros(space.nodes, dtype=torch.float64), space.csb_gating)[0])
    for cell in genotype.cells.values():
        for edge in cell.edges:
            edge.weight = round_weight(1.0 / (edge.to * n_ops))
        cell.ssb.weights = [round_weight(1.0 / len(cell.ssb.nodes))] * len(cell.ssb.nodes)
        cell.csb.weights = [round_weight(neutral_csb)] * len(cell.csb.nodes)
    return genotype


# ----------------------------------------------------------------------------- reading runs
_ALPHA_KEY = re.compile(r"(?:^|\.)cells\.(skip_\d_\d)\.(?:node_alphas\.(\d+)|(ssb)_alpha|(csb)_alpha)$")


@dataclass
class RunAlphas:
    """α of a run at one point of the search, with the run's search space and provenance."""

    alpha_state: AlphaState
    space: SearchSpace
    run_dir: Path
    epoch: Optional[float]
    step: Optional[int]

    def source(self) -> dict[str, Any]:
        """Provenance for :func:`discretize`'s ``source``."""
        out: dict[str, Any] = {"run": str(self.run_dir)}
        if self.epoch is not None:
            out["epoch"] = int(self.epoch) if float(self.epoch).is_integer() else self.epoch
        if self.step is not None:
            out["step"] = self.step
        return out


def run_search_space(run_dir: str | os.PathLike, checkpoint: Optional[Mapping[str, Any]] = None) -> SearchSpace:
    """The search space a run used: its ``search_space.yaml`` (else the checkpoint's copy)."""
    path = Path(run_dir) / "search_space.yaml"
    if path.is_file():
        return load_search_space(path)
    if checkpoint is not None and isinstance(checkpoint.get("search_space"), Mapping):
        return SearchSpace.from_dict(checkpoint["search_space"], f"{run_dir}/checkpoints/last.pt:search_space")
    raise UserError(f"{path}: not found; is {run_dir} a search run folder?")


def _checkpoint_file(path: Path) -> tuple[Path, Path]:
    """``(run_dir, checkpoint)`` for a run folder or a checkpoint file inside ``checkpoints/``."""
    if path.is_dir():
        return path, path / "checkpoints" / "last.pt"
    if path.suffix == ".pt":
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir, path
    raise UserError(f"{path}: run folder not found")


def alpha_state_from_state_dict(state: Mapping[str, Any], where: str) -> AlphaState:
    """Pick the α entries (``cells.<name>.node_alphas.<i>``, ``.ssb_alpha``, ``.csb_alpha``)."""
    out: AlphaState = {}
    for key, value in state.items():
        m = _ALPHA_KEY.search(key)
        if m is None:
            continue
        cell, node, ssb, csb = m.groups()
        group = f"node{int(node) + 1}" if node is not None else (ssb or csb)
        out.setdefault(cell, {})[group] = value.detach().cpu().clone()  # never alias live α
    if not out:
        raise UserError(f"{where}: no α found in the model state (is this a search checkpoint?)")
    return out


def alpha_state_from_checkpoint(path: str | os.PathLike) -> RunAlphas:
    """α from a run's ``checkpoints/last.pt`` (or a given ``.pt``) and the run's search space."""
    from nas.loop import load_checkpoint

    run_dir, ckpt_path = _checkpoint_file(Path(path))
    ckpt = load_checkpoint(ckpt_path)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise UserError(f"{ckpt_path}: no 'model' state in the checkpoint")
    space = run_search_space(run_dir, ckpt)
    state = alpha_state_from_state_dict(ckpt["model"], str(ckpt_path))
    check_alpha_state(state, space, str(ckpt_path))
    loop = ckpt.get("loop") or {}
    epoch = loop.get("epoch")
    if epoch is not None and loop.get("step_in_epoch"):
        epoch = None  # taken mid-epoch (Ctrl-C): not the end of any epoch
    return RunAlphas(state, space, run_dir, epoch, loop.get("step"))


def alpha_state_from_csv(run_dir: str | os.PathLike, epoch: float, space: Optional[SearchSpace] = None) -> RunAlphas:
    """α logged in ``alphas.csv`` at the end of ``epoch`` (rows whose fractional epoch is ``epoch``)."""
    run_dir = Path(run_dir)
    path = run_dir / "alphas.csv"
    if not path.exists():
        raise UserError(f"{path}: not found; --from-epoch needs the run's α log")
    space = space or run_search_space(run_dir)
    rows_by_step: dict[int, list[dict[str, str]]] = {}
    epochs: set[float] = set()
    for row in read_csv(path, "CSV log of α")[1]:
        try:
            e, step = float(row["epoch"]), int(float(row["step"]))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: bad row {row!r} (expected columns epoch,step,cell,group,input,op,alpha,weight)") from None
        if e.is_integer():
            epochs.add(e)
        if math.isclose(e, epoch, abs_tol=1e-6):
            rows_by_step.setdefault(step, []).append(row)
    if not rows_by_step:
        logged = ", ".join(str(int(e)) for e in sorted(epochs)) or "none"
        raise UserError(f"{path}: no α logged at the end of epoch {epoch:g} (epochs logged: {logged})")
    step = max(rows_by_step)
    state = _alpha_state_from_rows(rows_by_step[step], space, path)
    check_alpha_state(state, space, f"{path} (epoch {epoch:g})")
    return RunAlphas(state, space, run_dir, epoch, step)


def _alpha_state_from_rows(rows: list[dict[str, str]], space: SearchSpace, path: Path) -> AlphaState:
    n, ops = space.nodes, space.ops
    state: AlphaState = {}
    for row in rows:
        cell, group = row["cell"], row["group"]
        groups = state.setdefault(cell, {})
        try:
            inp = int(row["input"].lstrip("n"))
            value = float(row["alpha"])
            if group.startswith("node"):
                node = int(group[4:])
                t = groups.setdefault(group, torch.full((node, len(ops)), math.nan, dtype=torch.float64))
                t[inp, ops.index(row["op"])] = value
            elif group in ("ssb", "csb"):
                groups.setdefault(group, torch.full((n,), math.nan, dtype=torch.float64))[inp - 1] = value
            else:
                raise ValueError(group)
        except (ValueError, IndexError, KeyError):
            raise UserError(f"{path}: row {row!r} does not fit search space '{space.name}'") from None
    for cell, groups in state.items():
        for group, t in groups.items():
            if torch.isnan(t).any():
                raise UserError(f"{path}: {cell}.{group}: some α missing in the rows of that epoch")
    return state


def load_run_alphas(run_dir: str | os.PathLike, epoch: Optional[float] = None) -> RunAlphas:
    """α of a run folder: the last checkpoint, or the end of ``epoch`` (checkpoint if it is that
    epoch, else ``alphas.csv``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run folder not found")
    ckpt = run_dir / "checkpoints" / "last.pt"
    if epoch is None:
        return alpha_state_from_checkpoint(run_dir)
    if ckpt.is_file():
        found = alpha_state_from_checkpoint(run_dir)
        if found.epoch is not None and math.isclose(float(found.epoch), float(epoch)):
            return found
        return alpha_state_from_csv(run_dir, epoch, found.space)
    return alpha_state_from_csv(run_dir, epoch)


def discretize_run(run_dir: str | os.PathLike, policy: str = "thesis", k: int = 3, threshold: float = 0.9,
                   epoch: Optional[float] = None) -> Genotype:
    """Read a search run folder's α (see :func:`load_run_alphas`) and discretize them; the
    ``perturbation`` policy scores pairs with the run's last checkpoint (:mod:`nas.oneshot`)."""
    check_policy(policy, k, threshold)
    if policy in MODEL_POLICIES:
        from nas.oneshot import perturbation_discretize

        if epoch is not None:
            raise UserError(f"discretize policy '{policy}' uses the last checkpoint's weights; drop the epoch")
        return perturbation_discretize(run_dir, k)
    found = load_run_alphas(run_dir, epoch)
    return discretize(found.alpha_state, found.space, policy, k, threshold, source=found.source())


__all__ = [
    "FALLBACK_NOTE",
    "MODEL_POLICIES",
    "POLICIES",
    "DiscretizeWarning",
    "RunAlphas",
    "alpha_state_from_checkpoint",
    "alpha_state_from_csv",
    "alpha_state_from_state_dict",
    "alpha_policy",
    "cell_from_pairs",
    "cell_weights",
    "check_alpha_state",
    "check_policy",
    "discretize",
    "discretize_cell",
    "discretize_run",
    "load_run_alphas",
    "policy_settings",
    "random_alpha_state",
    "random_genotype",
    "run_search_space",
]
