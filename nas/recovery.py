"""Did the search find what is there? Teacher recovery and agreement between seeds, against chance.

Everything here compares *selections*: per ``(cell, node)`` the set of kept ``(input, op)``
pairs, read from a genotype (any policy, after pruning) or from α (a policy applied to the node
weights). Three figures, each beside what independent random choices would give:

- **teacher share** (:func:`teacher_recovery`): the share of the teacher's edges, in the cells
  the teacher has, that the found genotype keeps in the same cell and node. Chance for one
  teacher edge into node ``i`` is ``kept_i / (i · n_ops)``, with ``kept_i`` the pairs the found
  genotype keeps there and ``n_ops`` the non-zero ops. A search with a taste of its own (DARTS
  likes parameter-free ops and shallow cells) can beat that chance on a teacher that shares its
  taste without looking at the data, so a second baseline, the **prior**, is the rate at which
  the found genotype keeps the same (input, op) pair at the same node in the cells the teacher
  does *not* have: there nothing in the data asks for it.
- **cell presence** (:func:`cell_presence`): a search cannot drop a cell of its space, so "found
  absent" is read from how decided a cell's α are: the ``P`` cells with the largest mean KL
  divergence of their node weights from uniform are called present, ``P`` = the teacher's
  present cells; chance share of hits is ``P / n_cells``.
- **seed agreement** (:func:`pairwise_agreement`, :func:`fleiss_kappa`): the share of one seed's
  kept pairs the other keeps (chance as above), and Fleiss' κ over all seeds with the items every
  non-zero ``(cell, node, input, op)`` pair and the ratings kept / not kept. Its chance level is
  estimated by :func:`chance_kappa`, the κ of random genotypes of the same space, policy and k
  (not 0: nodes keep different shares of their pairs, and pooling them lifts κ a little).
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any, Mapping, Optional, Sequence

import torch

from nas.genotype import Genotype
from nas.search_space import SearchSpace
from nas.skip_grid import cell_name

#: Per ``(cell, node)``: the kept ``(input, op name)`` pairs.
Selection = dict[tuple[str, int], set[tuple[int, str]]]


def non_zero_ops(space: SearchSpace) -> int:
    return sum(1 for op in space.ops if op != "zero")


def genotype_selection(genotype: Genotype, space: SearchSpace) -> Selection:
    """The genotype's live edges per (cell, node); absent cells and pruned nodes keep nothing."""
    out: Selection = {}
    for cell in (cell_name(e, d) for e, d in space.skips):
        g = genotype.cells.get(cell)
        edges = g.live()[0] if g is not None and not g.is_absent else []
        for node in range(1, space.nodes + 1):
            out[(cell, node)] = {(e.from_, e.op) for e in edges if e.to == node}
    return out


def alpha_selection(alpha_state: Mapping[str, Mapping[str, torch.Tensor]], space: SearchSpace,
                    policy: str = "thesis", k: int = 3, threshold: float = 0.9) -> Selection:
    """The pairs ``policy`` keeps from α, before pruning (as :func:`nas.search_signal.selected_pairs`)."""
    from nas.search_signal import selected_pairs

    return {key: {(j, space.ops[o]) for j, o in pairs}
            for key, pairs in selected_pairs(alpha_state, space, policy, k, threshold).items()}


def present_cells(teacher: Genotype) -> list[str]:
    """Cells the teacher's network has (not absent, some live edge)."""
    return [name for name, cell in teacher.cells.items() if not cell.is_absent and cell.live()[0]]


#: How a teacher edge is counted by kind: it reads the cell input, or another node (chained).
EDGE_KINDS = ("cell input", "chained")


def edge_kind(source: int) -> str:
    """The :data:`EDGE_KINDS` entry of an edge reading node ``source`` (0 = the cell input)."""
    return EDGE_KINDS[0] if source == 0 else EDGE_KINDS[1]


def teacher_recovery(found: Selection, teacher: Genotype, space: SearchSpace) -> dict[str, Any]:
    """Share of the teacher's edges the found selection keeps, its chance level and per cell.

    Returns ``{"share", "chance", "prior", "edges", "cells": {cell: share}, "kinds": {kind:
    {"hits", "edges", "chance"}}}``; the kinds are :data:`EDGE_KINDS`: edges that read the cell
    input and edges that read another node (a chained edge can only be found once the node it
    reads is decided, so the two recover at different budgets).
    """
    teach = genotype_selection(teacher, space)
    n_ops = non_zero_ops(space)
    absent = sorted({cell for (cell, _), pairs in teach.items()} - set(present_cells(teacher)))
    hits = total = 0
    chance = prior = 0.0
    cells: dict[str, list[int]] = {}
    kinds = {kind: {"hits": 0, "edges": 0, "chance": 0.0} for kind in EDGE_KINDS}
    for (cell, node), pairs in teach.items():
        if not pairs:
            continue
        kept = found.get((cell, node), set())
        common = len(pairs & kept)
        hits += common
        total += len(pairs)
        p_keep = min(1.0, len(kept) / (node * n_ops))
        chance += len(pairs) * p_keep
        for pair in pairs:
            kind = kinds[edge_kind(pair[0])]
            kind["hits"] += pair in kept
            kind["edges"] += 1
            kind["chance"] += p_keep
        if absent:
            prior += sum(sum(p in found.get((a, node), set()) for a in absent) / len(absent) for p in pairs)
        acc = cells.setdefault(cell, [0, 0])
        acc[0] += common
        acc[1] += len(pairs)
    for kind in kinds.values():
        kind["chance"] = kind["chance"] / kind["edges"] if kind["edges"] else math.nan
    return {"share": hits / total if total else math.nan, "chance": chance / total if total else math.nan,
            "prior": prior / total if total and absent else math.nan, "edges": total,
            "cells": {c: h / n for c, (h, n) in cells.items()}, "kinds": kinds}


def cell_decidedness(alpha_state: Mapping[str, Mapping[str, torch.Tensor]], space: SearchSpace) -> dict[str, float]:
    """Per cell: mean over its nodes of KL(node weights ‖ uniform) (0 = undecided)."""
    from nas.search_signal import node_stats

    return {cell: statistics.fmean(node_stats(groups[f"node{node}"])[1] for node in range(1, space.nodes + 1))
            for cell, groups in alpha_state.items()}


def cell_presence(alpha_state: Mapping[str, Mapping[str, torch.Tensor]], teacher: Genotype,
                  space: SearchSpace) -> dict[str, Any]:
    """The teacher's ``P`` present cells vs the ``P`` most decided cells of the search.

    Returns ``{"hits", "present", "share", "chance", "found": [cells], "auc"}``; ``auc`` is the
    probability that a present cell is more decided than an absent one (0.5 = chance).
    """
    score = cell_decidedness(alpha_state, space)
    present = set(present_cells(teacher))
    ranked = sorted(score, key=lambda c: -score[c])
    found = ranked[:len(present)]
    hits = len(present & set(found))
    absent = [c for c in score if c not in present]
    pairs = [(score[p] > score[a]) + 0.5 * (score[p] == score[a]) for p in present for a in absent]
    return {"hits": hits, "present": len(present), "share": hits / len(present) if present else math.nan,
            "chance": len(present) / len(score) if score else math.nan, "found": found,
            "auc": statistics.fmean(pairs) if pairs else math.nan}


def pairwise_agreement(selections: Sequence[Selection], space: SearchSpace) -> dict[str, Any]:
    """Mean over seed pairs of the share of one's kept pairs the other keeps, with chance, min, max."""
    n_ops = non_zero_ops(space)
    values, chances = [], []
    for a, b in itertools.combinations(selections, 2):
        shared = kept = 0
        chance = 0.0
        for key, pairs in a.items():
            other = b.get(key, set())
            shared += len(pairs & other)
            kept += len(pairs)
            chance += len(pairs) * len(other) / (key[1] * n_ops)
        if kept:
            values.append(shared / kept)
            chances.append(chance / kept)
    if not values:
        return {"agreement": math.nan, "chance": math.nan, "min": math.nan, "max": math.nan, "pairs": 0}
    return {"agreement": statistics.fmean(values), "chance": statistics.fmean(chances),
            "min": min(values), "max": max(values), "pairs": len(values)}


def fleiss_kappa(selections: Sequence[Selection], space: SearchSpace) -> float:
    """Fleiss' κ of the kept / not-kept ratings of every non-zero (cell, node, input, op) pair."""
    m = len(selections)
    if m < 2:
        return math.nan
    ops = [op for op in space.ops if op != "zero"]
    agree_sum = 0.0
    kept_total = items = 0
    keys = sorted(set().union(*[s.keys() for s in selections]))
    for cell, node in keys:
        for j in range(node):
            for op in ops:
                n1 = sum((j, op) in s.get((cell, node), set()) for s in selections)
                n0 = m - n1
                agree_sum += (n1 * (n1 - 1) + n0 * (n0 - 1)) / (m * (m - 1))
                kept_total += n1
                items += 1
    if not items:
        return math.nan
    p_bar = agree_sum / items
    p = kept_total / (items * m)
    p_e = p * p + (1 - p) * (1 - p)
    return (p_bar - p_e) / (1 - p_e) if p_e < 1 else math.nan


def chance_kappa(space: SearchSpace, raters: int, policy: str = "thesis", k: int = 3, threshold: float = 0.9,
                 draws: int = 50, seed: int = 0) -> dict[str, float]:
    """Fleiss' κ of ``raters`` random genotypes (same space, policy, k), over ``draws`` draws:
    ``{"mean", "p95"}`` (the 95th percentile: a κ above it is not chance at the 5 % level)."""
    from nas.discretize import random_genotype

    values = []
    for d in range(draws):
        sels = [genotype_selection(random_genotype(space, seed + d * raters + r, policy, k, threshold), space)
                for r in range(raters)]
        values.append(fleiss_kappa(sels, space))
    values.sort()
    return {"mean": statistics.fmean(values), "p95": values[min(len(values) - 1, int(0.95 * len(values)))]}


def recovery_summary(found: Selection, teacher: Optional[Genotype], space: SearchSpace,
                     alpha_state: Optional[Mapping[str, Mapping[str, torch.Tensor]]] = None) -> dict[str, Any]:
    """Teacher share (and cell presence when α are given) in one JSON-ready record."""
    out: dict[str, Any] = {}
    if teacher is not None:
        out["teacher"] = teacher_recovery(found, teacher, space)
        if alpha_state is not None:
            out["presence"] = cell_presence(alpha_state, teacher, space)
    return out


__all__ = ["EDGE_KINDS", "Selection", "alpha_selection", "cell_decidedness", "cell_presence", "chance_kappa", "edge_kind",
           "fleiss_kappa", "genotype_selection", "non_zero_ops", "pairwise_agreement", "present_cells",
           "recovery_summary", "teacher_recovery"]
