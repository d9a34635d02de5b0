"""Pieces of the bilevel step: the α step (first or second order), β-decay, the weight step.

The epoch loop lives in :mod:`nas.search`; this module only knows how to take one step given
batches and optimizers, so it can be tested and benchmarked on its own.

- α step, first order: ``L_α = L_val(w, α) + λ · L_β(α)``, gradients w.r.t. α only
  (``torch.autograd.grad``), which skips every weight gradient of the backward pass.
- α step, second order (DARTS, Liu et al. 2019, eq. 7-8): gradient at the unrolled weights
  ``w' = w − ξ(m + ∇_w L_train + wd·w)`` minus ``ξ`` times a central finite-difference
  Hessian-vector product, as in ``quark0/darts`` ``architect.py`` but in place (no model copy)
  and without globals.
- β-decay (Ye et al., CVPR 2022): ``L_β = mean_g logsumexp(α_g)`` over the softmax groups,
  applied in one of :data:`BETA_MODES`:

  * ``gradient`` (the thesis): ``λ·∇L_β`` is added to the α gradient and goes through the α
    optimiser. ``∇L_β = softmax(α_g)/G`` is mostly the same for every α of a group, a shift the
    softmax ignores, and an Adam-type optimiser normalises each coordinate, so that shift turns
    into equal steps that can drown the validation signal.
  * ``centred``: only the part of ``λ·∇L_β`` that changes the softmax, ``λ·(softmax − 1/n)/G``,
    is added (shift-invariant); it still goes through the optimiser's normalisation.
  * ``decoupled``: after the optimiser's step on ``∇L_val``, every group moves by
    ``−lr·λ·(n·softmax(α_g) − 1)`` (as AdamW decouples weight decay): near uniform this is
    ``−lr·λ·(α − mean α)``, a pull towards the group mean of a size that does not depend on the
    scale of the validation gradient, so an α whose gradient keeps its sign settles about
    ``1/λ`` from its group's mean and one whose gradient is noise stays near it.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Sequence

import torch
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]
#: A zero-argument factory of a fresh context: :meth:`nas.runtime.Runtime.autocast`, or
#: ``lambda: torch.autocast("cuda", torch.bfloat16)``.
AutocastFactory = Callable[[], ContextManager]
#: How β-decay enters the α update (see the module docstring).
BETA_MODES = ("gradient", "centred", "decoupled")


def _enter(autocast: AutocastFactory | None) -> ContextManager:
    return contextlib.nullcontext() if autocast is None else autocast()


def beta_decay_loss(groups: Sequence[Tensor]) -> Tensor:
    """Mean over groups of ``logsumexp`` of the flattened group; stays differentiable.

    Its gradient w.r.t. a group is ``softmax(group) / len(groups)``: it pulls every α of a
    softmax towards the group's mean, which keeps the softmax from saturating early.
    """
    if not groups:
        raise ValueError("beta_decay_loss needs at least one α group")
    return torch.stack([torch.logsumexp(g.flatten(), dim=0) for g in groups]).mean()


def beta_lambda(epoch0: int, start: float = 0.5, step: float = 0.5, max: float = 15.0) -> float:
    """λ of the β-decay term at epoch ``epoch0`` (counting from 0): linear, capped at ``max``."""
    return min(start + step * epoch0, max)


def weight_step(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    w_optimizer: torch.optim.Optimizer,
    grad_clip: float | None = 5.0,
    autocast: AutocastFactory | None = None,
    grad_hook: Callable[[list[nn.Parameter]], None] | None = None,
) -> tuple[float, Tensor]:
    """One weight step on a training batch; returns (loss, detached logits).

    The weights are the parameters of ``w_optimizer`` (built over ``model.weight_parameters()``):
    only their gradients are computed (``backward(inputs=weights)``), never α's.
    ``grad_hook(weights)`` runs before clipping (the search uses it to average gradients across
    ranks).
    """
    weights = [p for group in w_optimizer.param_groups for p in group["params"]]
    w_optimizer.zero_grad(set_to_none=True)
    with _enter(autocast):
        logits = model(x)
        loss = loss_fn(logits.float(), y)
    loss.backward(inputs=weights)
    if grad_hook is not None:
        grad_hook(weights)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(weights, grad_clip)
    w_optimizer.step()
    return float(loss.detach()), logits.detach()


class Architect:
    """The α step of bilevel search.

    Args:
        model: a :class:`nas.supernet.Supernet` (or anything with ``arch_parameters()``,
            ``weight_parameters()`` and ``softmax_groups(include_blocks)``). The three lists are
            taken once here, so the model's parameters must not be replaced afterwards.
        loss_fn: ``loss_fn(logits, target) -> scalar``.
        arch_optimizer: optimizer over ``model.arch_parameters()`` (thesis: RAdam 3e-4).
        order: 1 (first order) or 2 (DARTS unrolled).
        w_lr, w_momentum, w_weight_decay: the weight SGD's settings, used for the virtual step
            of second order. ``ξ`` is the weight optimizer's current lr when one is passed to
            :meth:`step` (so it follows the schedule), else ``w_lr``.
        include_blocks: whether SSB/CSB softmax groups enter β-decay.
        autocast: optional autocast for the forwards: a zero-argument context factory.
        hvp_r: finite-difference step of the Hessian-vector product, ``ε = hvp_r / ‖v‖``.
        beta_mode: how β-decay enters the α update, one of :data:`BETA_MODES`.
        grad_hook: called with the α parameters once their ``.grad`` is written and before
            the optimizer steps. Nothing here averages α gradients across ranks: a distributed
            run passes a hook that does (:mod:`nas.search` passes
            :func:`nas.runtime.average_gradients`, a mean all-reduce); without one, each rank
            steps with its own gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        arch_optimizer: torch.optim.Optimizer,
        order: int = 1,
        w_lr: float = 0.025,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        include_blocks: bool = True,
        autocast: AutocastFactory | None = None,
        hvp_r: float = 1e-2,
        grad_hook: Callable[[list[nn.Parameter]], None] | None = None,
        beta_mode: str = "gradient",
    ) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        if beta_mode not in BETA_MODES:
            raise ValueError(f"beta_mode must be one of {', '.join(BETA_MODES)}, got {beta_mode!r}")
        self.model = model
        self.arch_params: list[nn.Parameter] = list(model.arch_parameters())
        self.weight_params: list[nn.Parameter] = list(model.weight_parameters())
        self.beta_groups: list[Tensor] = list(model.softmax_groups(include_blocks))
        self.loss_fn = loss_fn
        self.arch_optimizer = arch_optimizer
        self.order = order
        self.w_lr = w_lr
        self.w_momentum = w_momentum
        self.w_weight_decay = w_weight_decay
        self.include_blocks = include_blocks
        self.autocast = autocast
        self.hvp_r = hvp_r
        self.grad_hook = grad_hook
        self.beta_mode = beta_mode

    # ------------------------------------------------------------------ public

    def step(
        self,
        x_val: Tensor,
        y_val: Tensor,
        x_train: Tensor | None = None,
        y_train: Tensor | None = None,
        lam: float = 0.0,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> dict[str, float]:
        """One α update; returns ``{"arch_loss": L_val, "beta_loss": L_β}`` as floats."""
        grads, arch_loss, beta = self.arch_gradients(
            x_val, y_val, x_train, y_train, lam, w_optimizer
        )
        params = self.arch_params
        for p, g in zip(params, grads):
            p.grad = g
        if self.grad_hook is not None:
            self.grad_hook(params)
        self.arch_optimizer.step()
        if lam and self.beta_mode == "decoupled":
            self._decoupled_beta_step(lam)
        return {"arch_loss": arch_loss, "beta_loss": beta}

    def arch_gradients(
        self,
        x_val: Tensor,
        y_val: Tensor,
        x_train: Tensor | None = None,
        y_train: Tensor | None = None,
        lam: float = 0.0,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> tuple[list[Tensor], float, float]:
        """∇_α L_α (without touching ``.grad``), the validation loss, and L_β."""
        arch = self.arch_params
        if self.order == 1:
            loss = self._loss(x_val, y_val)
            grads = _grads(loss, arch)  # α only: no weight gradient is ever computed
        else:
            if x_train is None or y_train is None:
                raise ValueError("second-order α step needs a training batch")
            grads, loss = self._unrolled_gradients(x_val, y_val, x_train, y_train, w_optimizer)
        beta = beta_decay_loss(self.beta_groups)
        if lam and self.beta_mode != "decoupled":
            for g, gb in zip(grads, torch.autograd.grad(lam * beta, arch, allow_unused=True)):
                if gb is None:  # not in a β-decay group (e.g. SSB/CSB α without include_blocks)
                    continue
                if self.beta_mode == "centred":
                    gb = gb - gb.mean()  # (softmax − 1/n)/G: the shift the softmax ignores is removed
                g.add_(gb)
        loss_value, beta_value = torch.stack([loss.detach(), beta.detach()]).tolist()  # one sync
        return grads, loss_value, beta_value

    # ------------------------------------------------------------------ internals

    @torch.no_grad()
    def _decoupled_beta_step(self, lam: float) -> None:
        """``α_g ← α_g − lr·λ·(n·softmax(α_g) − 1)`` for every β-decay group (after the step)."""
        lr = self.arch_optimizer.param_groups[0]["lr"]
        for g in self.beta_groups:
            w = torch.softmax(g.detach().flatten().float(), dim=0)
            g.sub_((lr * lam * (w * w.numel() - 1.0)).view_as(g).to(g.dtype))

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        with _enter(self.autocast):  # the loss in float32, as in weight_step, under bf16 too
            return self.loss_fn(self.model(x).float(), y)

    def _unrolled_gradients(
        self,
        x_val: Tensor,
        y_val: Tensor,
        x_train: Tensor,
        y_train: Tensor,
        w_optimizer: torch.optim.Optimizer | None,
    ) -> tuple[list[Tensor], Tensor]:
        arch = self.arch_params
        weights = self.weight_params
        xi = w_optimizer.param_groups[0]["lr"] if w_optimizer is not None else self.w_lr

        g_train = _grads(self._loss(x_train, y_train), weights)
        backup = [w.detach().clone() for w in weights]  # w, put back whatever happens below
        try:
            # virtual step w' = w − ξ(momentum·buf + ∇_w L_train + wd·w), done in place
            with torch.no_grad():
                for w, g in zip(weights, g_train):
                    d = g + self.w_weight_decay * w
                    buf = _momentum_buffer(w_optimizer, w)
                    if buf is not None:
                        d = d + self.w_momentum * buf
                    w.sub_(xi * d)
            val_loss = self._loss(x_val, y_val)
            g_all = _grads(val_loss, [*arch, *weights])
            d_alpha, v = g_all[: len(arch)], g_all[len(arch) :]
            _restore(weights, backup)

            # ∇²_{α,w} L_train · v by central differences at w ± ε v, ε = r / ‖v‖
            norm = torch.sqrt(sum((t.double() ** 2).sum() for t in v))
            eps = self.hvp_r / max(float(norm), 1e-12)
            grads_pm = []
            for sign in (1.0, -2.0):
                with torch.no_grad():
                    for w, t in zip(weights, v):
                        w.add_(t, alpha=sign * eps)
                grads_pm.append(_grads(self._loss(x_train, y_train), arch))
        finally:
            _restore(weights, backup)
        hvp = [(gp - gn) / (2 * eps) for gp, gn in zip(*grads_pm)]
        return [da - xi * h for da, h in zip(d_alpha, hvp)], val_loss


def _restore(params: Sequence[Tensor], backup: Sequence[Tensor]) -> None:
    """Copy ``backup`` back into ``params`` in place."""
    with torch.no_grad():
        for p, b in zip(params, backup):
            p.copy_(b)


def _grads(loss: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """Gradients of ``loss`` w.r.t. ``params``, zeros for parameters it does not use."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _momentum_buffer(optimizer: torch.optim.Optimizer | None, p: Tensor) -> Tensor | None:
    if optimizer is None:
        return None
    return optimizer.state.get(p, {}).get("momentum_buffer")
