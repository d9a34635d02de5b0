"""A planted problem: a search whose right answer is known, to check that search settings find it.

One skip cell with one node fed by single-channel noise ``x``; the target is ``max_pool_3x3(x)``,
which exactly one candidate op computes. A bilevel search with given settings (α optimiser, lr,
initialisation, β-decay mode and λ schedule, weight optimiser) must give ``max_pool_3x3`` the
largest node weight. Fast (16×16 inputs, a few seconds for hundreds of steps), so it serves the
test suite (the shipped defaults must solve it) and ``tools/measure_search.py --planted``
(which settings solve it, and how clearly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from nas.architect import Architect, beta_lambda, weight_step
from nas.cell import SkipCell
from nas.config import Config
from nas.ops import THESIS_OPS
from nas.runtime import Runtime

PLANTED_OP = "max_pool_3x3"


@dataclass
class PlantedResult:
    """Node weights at the end, the winning op, its lead over the second, and the step from which
    the planted op stayed in front (None if it is not in front at the end)."""

    weights: Tensor
    winner: str
    lead: float
    found_at: Optional[int]

    @property
    def solved(self) -> bool:
        return self.winner == PLANTED_OP


def _ssb_loss(out: Tensor, target: Tensor) -> Tensor:
    """MSE of the cell's SSB channel (its first output channel) against the target."""
    return F.mse_loss(out[:, : target.shape[1]], target)


def planted_search(cfg: Config, steps: int = 150, steps_per_epoch: int = 10, seed: int = 0,
                   batch_size: int = 8) -> PlantedResult:
    """Search the planted cell with ``cfg``'s search and weight-optimiser settings.

    ``steps`` α steps, each followed by a weight step; λ of β-decay follows ``cfg``'s schedule
    with one "epoch" per ``steps_per_epoch`` steps, as in ``nas search``.
    """
    from nas.search import build_arch_optimizer
    from nas.session import build_optimizer

    sc, bd = cfg.search, cfg.search.beta_decay
    torch.manual_seed(seed)
    cell = SkipCell(1, 1, 1, list(THESIS_OPS), alpha_init=sc.alpha_init)
    w_opt = build_optimizer(cfg.train, cell.weight_parameters(), Runtime(torch.device("cpu")))
    arch = Architect(cell, _ssb_loss, build_arch_optimizer(cfg, cell.arch_parameters()), order=sc.order,
                     w_lr=cfg.train.lr, w_momentum=cfg.train.momentum, w_weight_decay=cfg.train.weight_decay,
                     include_blocks=bd.include_blocks, beta_mode=bd.mode)

    def batch() -> tuple[Tensor, Tensor]:
        x = torch.rand(batch_size, 1, 16, 16)
        return x, F.max_pool2d(x, 3, stride=1, padding=1)

    found_at: Optional[int] = None
    for step in range(steps):
        if step >= sc.warmup_epochs * steps_per_epoch:
            lam = beta_lambda(step // steps_per_epoch, bd.lambda_start, bd.lambda_step, bd.lambda_max) if bd.enabled else 0.0
            xt, yt = batch()
            arch.step(*batch(), xt, yt, lam=lam, w_optimizer=w_opt)
        else:
            xt, yt = batch()
        weight_step(cell, _ssb_loss, xt, yt, w_opt, cfg.train.grad_clip)
        front = THESIS_OPS[int(cell.group_weights()["node1"][0].argmax())] == PLANTED_OP
        found_at = (step if found_at is None else found_at) if front else None
    weights = cell.group_weights()["node1"][0].detach()
    ranked = weights.argsort(descending=True).tolist()
    return PlantedResult(weights=weights, winner=THESIS_OPS[ranked[0]],
                         lead=float(weights[ranked[0]] / weights[ranked[1]]), found_at=found_at)


__all__ = ["PLANTED_OP", "PlantedResult", "planted_search"]
