"""Search signal: did the α move, away from uniform, and away from what the initialisation chose?

A DARTS search can end with a genotype that the random initial α already decided: when α
barely move, the ranking of each node's (input, op) pairs, and so the genotype, is the ranking
of ``alpha_init · N(0, 1)``. These figures tell a real search result from that, from the α
alone (no data needed), so they are logged every epoch and checked by ``nas discretize``:

- ``alpha_move``: RMS over all node α of the change since the start, each group's mean change
  removed first (a shift of a whole group does not change its softmax).
  ``alpha_move_ratio`` = ``alpha_move`` / the RMS spread of the initial α within their groups
  (None when the search started from all-equal α).
- ``top_gain``: per node, ``n · max(weight) − 1`` (0 at uniform, 0.02 = the strongest pair has
  2 % more than an equal share); the median over nodes is reported.
- ``kl_uniform``: per node, KL(weights ‖ uniform) = ``log n − entropy`` in nats; median over nodes.
- ``init_agreement``: share of the kept (input, op) pairs that the policy would also keep from
  the *initial* α. "Kept" means the policy's choice per node before pruning (what α decide);
  ``init_chance`` is the share expected if the two choices were independent and uniformly
  random (per node ``|S|·|S0|/m`` of ``m`` non-zero pairs). Agreement near 1 means the genotype
  is the initialisation's; near chance means the search chose.

:func:`pair_agreement` compares two α states in the same way (e.g. two seeds of one search).
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from nas.discretize import (POLICIES, AlphaState, RunAlphas, alpha_policy, alpha_state_from_csv, cell_weights,
                            check_policy)
from nas.loop import SIGNAL_COLUMNS
from nas.search_space import SearchSpace

#: ``init_agreement`` at or above this share: the genotype is the initialisation's.
INIT_DECIDED = 0.5
#: Median ``top_gain`` below this: node weights are still within 2 % of uniform.
WEAK_MOVE = 0.02


def model_alpha_state(model: nn.Module) -> AlphaState:
    """The supernet's α as ``{cell: {node1.., ssb, csb}}`` (detached float64 CPU copies)."""
    return {name: {group: alpha.detach().double().cpu().clone() for group, alpha, _ in cell.alpha_groups()}
            for name, cell in model.cells.items()}


def selected_pairs(alpha_state: Mapping[str, Mapping[str, Tensor]], space: SearchSpace, policy: str = "thesis",
                   k: int = 3, threshold: float = 0.9) -> dict[tuple[str, int], set[tuple[int, int]]]:
    """Per ``(cell, node)`` the (input, op index) pairs the policy keeps, before pruning (a policy
    that needs the trained weights counts as its α stand-in, :func:`nas.discretize.alpha_policy`)."""
    check_policy(policy, k, threshold)
    select = POLICIES[alpha_policy(policy)]
    out: dict[tuple[str, int], set[tuple[int, int]]] = {}
    for cell, groups in alpha_state.items():
        weights = cell_weights(groups, space)
        for node in range(1, space.nodes + 1):
            out[(cell, node)] = set(select(weights[f"node{node}"], space.ops, k, threshold))
    return out


def _non_zero_pairs(space: SearchSpace, node: int) -> int:
    return node * sum(1 for op in space.ops if op != "zero")


def pair_agreement(a: Mapping[str, Mapping[str, Tensor]], b: Mapping[str, Mapping[str, Tensor]],
                   space: SearchSpace, policy: str = "thesis", k: int = 3,
                   threshold: float = 0.9) -> dict[str, Any]:
    """Share of ``a``'s kept pairs that ``b`` keeps too, the chance level, and per cell.

    Returns ``{"agreement", "chance", "kept", "cells": {cell: agreement}}``.
    """
    sa, sb = selected_pairs(a, space, policy, k, threshold), selected_pairs(b, space, policy, k, threshold)
    shared = kept = 0
    chance = 0.0
    per_cell: dict[str, list[int]] = {}
    for key, pairs in sa.items():
        other = sb[key]
        common = len(pairs & other)
        shared += common
        kept += len(pairs)
        chance += len(pairs) * len(other) / _non_zero_pairs(space, key[1])
        acc = per_cell.setdefault(key[0], [0, 0])
        acc[0] += common
        acc[1] += len(pairs)
    return {"agreement": shared / kept if kept else math.nan,
            "chance": chance / kept if kept else math.nan, "kept": kept,
            "cells": {c: s / n if n else math.nan for c, (s, n) in per_cell.items()}}


def node_stats(alpha: Tensor) -> tuple[float, float]:
    """(top_gain, KL to uniform) of one node group from its raw α."""
    w = torch.softmax(alpha.flatten().double(), dim=0)
    n = w.numel()
    kl = math.log(n) + float((w * torch.log(w.clamp_min(1e-300))).sum())
    return n * float(w.max()) - 1.0, max(kl, 0.0)


def search_signal(alpha_init: Mapping[str, Mapping[str, Tensor]], alpha_now: Mapping[str, Mapping[str, Tensor]],
                  space: SearchSpace, policy: str = "thesis", k: int = 3, threshold: float = 0.9) -> dict[str, Any]:
    """All figures of the module docstring, overall and per cell (JSON-ready floats)."""
    moved_sq = init_sq = 0.0
    count = 0
    gains: list[float] = []
    kls: list[float] = []
    cells: dict[str, dict[str, float]] = {}
    for cell, groups in alpha_now.items():
        c_gain, c_kl = [], []
        for node in range(1, space.nodes + 1):
            a1 = groups[f"node{node}"].double()
            a0 = alpha_init[cell][f"node{node}"].double()
            d = a1 - a0
            moved_sq += float(((d - d.mean()) ** 2).sum())
            init_sq += float(((a0 - a0.mean()) ** 2).sum())
            count += d.numel()
            gain, kl = node_stats(a1)
            c_gain.append(gain)
            c_kl.append(kl)
        gains += c_gain
        kls += c_kl
        cells[cell] = {"top_gain": max(c_gain), "kl_uniform": statistics.fmean(c_kl)}
    move = math.sqrt(moved_sq / count) if count else 0.0
    spread = math.sqrt(init_sq / count) if count else 0.0
    # equal initial α (search.alpha_init 0) choose nothing: their "choice" is the tie-break order
    agree = (pair_agreement(alpha_now, alpha_init, space, policy, k, threshold) if spread > 0 else
             {"agreement": None, "chance": None, "cells": dict.fromkeys(alpha_now)})
    for cell, value in agree["cells"].items():
        cells[cell]["init_agreement"] = value
    return {
        "alpha_move": move,
        "alpha_init_spread": spread,
        "alpha_move_ratio": move / spread if spread > 0 else None,
        "top_gain": statistics.median(gains) if gains else 0.0,
        "kl_uniform": statistics.median(kls) if kls else 0.0,
        "init_agreement": agree["agreement"],
        "init_chance": agree["chance"],
        "policy": policy, "k": k,
        "cells": cells,
    }


def initial_alpha_state(run_dir: str | os.PathLike, space: SearchSpace) -> Optional[AlphaState]:
    """α a search started from: its checkpoint's record, else ``alphas.csv`` at step 0; None if
    the run predates both (then no signal can be computed)."""
    from nas.errors import UserError
    from nas.loop import load_checkpoint

    ckpt_path = Path(run_dir) / "checkpoints" / "last.pt"
    if ckpt_path.is_file():
        state = (load_checkpoint(ckpt_path).get("task") or {}).get("alpha_init")
        if state:
            return state
    try:
        return alpha_state_from_csv(run_dir, 0.0, space).alpha_state
    except UserError:
        return None


def run_signal(found: RunAlphas, policy: str = "thesis", k: int = 3,
               threshold: float = 0.9) -> Optional[dict[str, Any]]:
    """:func:`search_signal` of a run's α (as read by :func:`nas.discretize.load_run_alphas`)
    against its initial α, with ``source`` and plain-words ``warnings``; None without α₀."""
    alpha_init = initial_alpha_state(found.run_dir, found.space)
    if alpha_init is None:
        return None
    signal = search_signal(alpha_init, found.alpha_state, found.space, policy, k, threshold)
    where = f"epoch {found.epoch:g}" if found.epoch is not None else f"step {found.step}"
    signal["source"] = f"{found.run_dir}, {where}"
    signal["warnings"] = signal_verdict(signal)
    return signal


def signal_columns(signal: Mapping[str, Any]) -> dict[str, float]:
    """The :data:`SIGNAL_COLUMNS` of a :func:`search_signal` result (for ``metrics.csv``; a
    missing ratio is NaN)."""
    return {key: math.nan if signal[key] is None else float(signal[key]) for key in SIGNAL_COLUMNS}


def signal_verdict(signal: Mapping[str, Any]) -> list[str]:
    """Plain-words warnings about a search's signal; empty when it looks like a real search."""
    notes = []
    agreement, chance = signal.get("init_agreement"), signal.get("init_chance")
    if agreement is not None and agreement >= INIT_DECIDED:
        notes.append(
            f"{agreement:.0%} of the kept (input, op) pairs are those the initial α would keep "
            f"(independent choices would share {chance:.0%}): this genotype is decided by the "
            f"initialisation (the seed), not by the search. Search longer or with a larger "
            f"search.arch_lr (see docs/troubleshooting.md)."
        )
    gain = signal.get("top_gain")
    if gain is not None and gain < WEAK_MOVE:
        notes.append(
            f"the strongest pair of a node has a median {gain:.2%} more than an equal share: node "
            f"weights are within {WEAK_MOVE:.0%} of uniform, so the ranking rests on small differences; "
            f"check that two seeds agree before trusting it."
        )
    return notes


__all__ = [
    "INIT_DECIDED",
    "initial_alpha_state",
    "run_signal",
    "SIGNAL_COLUMNS",
    "WEAK_MOVE",
    "model_alpha_state",
    "pair_agreement",
    "search_signal",
    "selected_pairs",
    "signal_columns",
    "signal_verdict",
]
