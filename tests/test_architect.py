"""Bilevel step: β-decay, λ schedule, first/second-order α steps, weight step, planted search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.architect import Architect, beta_decay_loss, beta_lambda, weight_step
from nas.cell import SkipCell
from nas.supernet import Supernet


def cell_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of a SkipCell's first channels (SSB first, then CSB) against the target."""
    return F.mse_loss(out[:, : target.shape[1]], target)


def test_beta_decay_value_and_gradient_match_closed_form() -> None:
    groups = [torch.randn(1, 10, requires_grad=True), torch.randn(3, 10, requires_grad=True)]
    loss = beta_decay_loss(groups)
    want = (torch.logsumexp(groups[0].flatten(), 0) + torch.logsumexp(groups[1].flatten(), 0)) / 2
    assert torch.allclose(loss, want)
    assert loss.requires_grad and loss.grad_fn is not None  # stays attached
    loss.backward()
    for g in groups:
        softmax = torch.softmax(g.detach().flatten(), 0).view_as(g)
        assert torch.allclose(g.grad, softmax / len(groups))


def test_beta_decay_on_supernet_groups_reaches_alpha() -> None:
    net = Supernet("tiny")
    beta_decay_loss(net.softmax_groups(include_blocks=True)).backward()
    groups = {id(g) for g in net.softmax_groups(True)}
    for p in net.arch_parameters():
        assert (p.grad is not None) == (id(p) in groups)


def test_beta_lambda_schedule() -> None:
    assert beta_lambda(0) == 0.5
    assert beta_lambda(1) == 1.0
    assert beta_lambda(10) == 5.5
    assert beta_lambda(29) == 15.0
    assert beta_lambda(100) == 15.0
    assert beta_lambda(3, start=0.0, step=1.0, max=2.0) == 2.0


def central_differences(param: torch.Tensor, fn, h: float) -> torch.Tensor:
    """``∂fn/∂param`` by central differences, one element at a time (``fn()`` reads ``param``)."""
    flat = param.data.view(-1)
    out = torch.empty_like(flat)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + h
        up = fn()
        flat[i] = old - h
        down = fn()
        flat[i] = old
        out[i] = (up - down) / (2 * h)
    return out.view_as(param)


def _tiny_cell(dtype=torch.float32) -> SkipCell:
    ops = ["zero", "identity", "avg_pool_3x3", "max_pool_3x3", "sep_conv_3x3"]
    return SkipCell(2, 2, 2, [*ops, "spatial_sep_conv_5x5"]).to(dtype)


def _batches_and_spread_alphas(cell: SkipCell, seed: int) -> tuple[torch.Tensor, ...]:
    """Train/val batches in float64, and α spread enough (N(0, 0.5)) that the softmax is not flat."""
    gen = torch.Generator().manual_seed(seed)
    batches = tuple(torch.randn(3, 2, 8, 8, generator=gen, dtype=torch.float64) for _ in range(4))
    with torch.no_grad():
        for a in cell.arch_parameters():
            a.normal_(0, 0.5)
    return batches


def test_first_order_step_updates_only_alpha_without_weight_grads() -> None:
    torch.manual_seed(0)
    cell = _tiny_cell()
    opt = torch.optim.Adam(cell.arch_parameters(), lr=0.1)
    arch = Architect(cell, cell_loss, opt, order=1)
    x, y = torch.randn(4, 2, 8, 8), torch.randn(4, 4, 8, 8)  # target covers SSB and CSB
    alpha0 = [a.detach().clone() for a in cell.arch_parameters()]
    w0 = [w.detach().clone() for w in cell.weight_parameters()]

    # gradient = autograd of L_val + λ·L_β w.r.t. α
    lam = 2.0
    grads, _, _ = arch.arch_gradients(x, y, lam=lam)
    total = cell_loss(cell(x), y) + lam * beta_decay_loss(cell.softmax_groups())
    want = torch.autograd.grad(total, cell.arch_parameters())
    for g, w in zip(grads, want):
        assert torch.allclose(g, w, atol=1e-6)

    out = arch.step(x, y, lam=lam)
    assert set(out) == {"arch_loss", "beta_loss"}
    assert all(isinstance(v, float) for v in out.values())
    assert all(not torch.equal(a, b) for a, b in zip(alpha0, cell.arch_parameters()))
    assert all(torch.equal(a, b) for a, b in zip(w0, cell.weight_parameters()))
    assert all(w.grad is None for w in cell.weight_parameters())


def test_weight_step_updates_only_weights() -> None:
    torch.manual_seed(0)
    cell = _tiny_cell()
    w_opt = torch.optim.SGD(cell.weight_parameters(), lr=0.1, momentum=0.9)
    alpha0 = [a.detach().clone() for a in cell.arch_parameters()]
    w0 = [w.detach().clone() for w in cell.weight_parameters()]
    loss, _ = weight_step(cell, cell_loss, torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8), w_opt)
    assert isinstance(loss, float)
    assert all(torch.equal(a, b) for a, b in zip(alpha0, cell.arch_parameters()))
    assert all(a.grad is None for a in cell.arch_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(w0, cell.weight_parameters()))
    grad_norm = torch.sqrt(sum(w.grad.square().sum() for w in cell.weight_parameters()))
    assert grad_norm <= 5.0 + 1e-4  # clipped


def test_second_order_gradient_matches_finite_differences() -> None:
    """DARTS' unrolled α gradient vs. central differences of L_val(w − ξ(∇L_train + wd·w), α)."""
    torch.manual_seed(0)
    cell = _tiny_cell(torch.float64)
    xi, wd = 0.5, 1e-2
    arch = Architect(
        cell, cell_loss, torch.optim.SGD(cell.arch_parameters(), lr=0.1), order=2,
        w_lr=xi, w_weight_decay=wd, hvp_r=1e-4,
    )
    xt, yt, xv, yv = _batches_and_spread_alphas(cell, seed=1)
    weights = cell.weight_parameters()

    def unrolled_val_loss() -> float:
        g = torch.autograd.grad(cell_loss(cell(xt), yt), weights)
        backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w, gw in zip(weights, g):
                w.sub_(xi * (gw + wd * w))
            value = float(cell_loss(cell(xv), yv))
            for w, b in zip(weights, backup):
                w.copy_(b)
        return value

    grads, _, _ = arch.arch_gradients(xv, yv, xt, yt)
    for alpha, grad in zip(cell.arch_parameters(), grads):
        want = central_differences(alpha, unrolled_val_loss, 1e-5)
        for g, w in zip(grad.view(-1).tolist(), want.view(-1).tolist()):
            assert g == pytest.approx(w, rel=1e-3, abs=1e-7)


def test_second_order_step_restores_weights_and_uses_momentum() -> None:
    torch.manual_seed(0)
    cell = _tiny_cell()
    w_opt = torch.optim.SGD(cell.weight_parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8)
    weight_step(cell, cell_loss, x, y, w_opt)  # creates momentum buffers
    w0 = [w.detach().clone() for w in cell.weight_parameters()]
    arch = Architect(cell, cell_loss, torch.optim.Adam(cell.arch_parameters()), order=2)
    out = arch.step(x, y, x, y, lam=1.0, w_optimizer=w_opt)
    assert out["arch_loss"] > 0
    assert all(torch.equal(a, b) for a, b in zip(w0, cell.weight_parameters()))
    with pytest.raises(ValueError, match="training batch"):
        arch.step(x, y)
    with pytest.raises(ValueError):
        Architect(cell, cell_loss, w_opt, order=3)


PLANTED_STEPS = 150         # α steps (each followed by a weight step) the planted search gets
PLANTED_STEPS_PER_EPOCH = 10  # λ of β-decay rises once per "epoch", as in `nas search`


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_max_pool_wins_a_search_with_the_shipped_settings(seed: int) -> None:
    """Target = 3×3 max pool of noise, one node fed by the raw input (nas.planted): with the
    shipped α optimiser, lr, initialisation, β-decay mode and λ schedule, and the shipped weight
    optimiser, max_pool_3x3 must get the largest weight within ``PLANTED_STEPS`` steps, clearly."""
    from nas.config import Config
    from nas.planted import planted_search

    result = planted_search(Config(), PLANTED_STEPS, PLANTED_STEPS_PER_EPOCH, seed=seed)
    assert result.solved, result.weights
    assert result.lead > 1.02, result.weights  # a clear, not a rounding, win over the second op


def test_centred_and_decoupled_beta_decay_follow_their_formulas() -> None:
    """centred: λ·(softmax − 1/n)/G is added to ∇L_val; decoupled: the optimiser steps on ∇L_val
    alone, then every group moves by −lr·λ·(n·softmax − 1)."""
    torch.manual_seed(0)
    x, y = torch.randn(4, 2, 8, 8), torch.randn(4, 4, 8, 8)
    lam = 3.0
    cells = [_tiny_cell() for _ in range(3)]
    for c in cells[1:]:
        c.load_state_dict(cells[0].state_dict())
    with torch.no_grad():
        for c in cells:
            for a in c.arch_parameters():
                a.copy_(torch.linspace(-1, 1, a.numel()).view_as(a))
    groups = cells[0].softmax_groups(False)
    g_val = torch.autograd.grad(cell_loss(cells[0](x), y), cells[0].arch_parameters())

    centred = Architect(cells[0], cell_loss, torch.optim.SGD(cells[0].arch_parameters(), lr=0.1),
                        include_blocks=False, beta_mode="centred")
    grads, _, _ = centred.arch_gradients(x, y, lam=lam)
    for p, g, gv in zip(cells[0].arch_parameters(), grads, g_val):
        if any(p is q for q in groups):
            w = torch.softmax(p.detach().flatten(), 0).view_as(p)
            torch.testing.assert_close(g, gv + lam * (w - 1 / w.numel()) / len(groups))
        else:
            torch.testing.assert_close(g, gv)

    lr = 0.05
    before = [a.detach().clone() for a in cells[1].arch_parameters()]
    decoupled = Architect(cells[1], cell_loss, torch.optim.SGD(cells[1].arch_parameters(), lr=lr),
                          include_blocks=False, beta_mode="decoupled")
    plain = Architect(cells[2], cell_loss, torch.optim.SGD(cells[2].arch_parameters(), lr=lr),
                      include_blocks=False, beta_mode="decoupled")
    decoupled.step(x, y, lam=lam)
    plain.step(x, y, lam=0.0)  # the optimiser's step alone
    for a, b, a0 in zip(cells[1].arch_parameters(), cells[2].arch_parameters(), before):
        if any(a is q for q in cells[1].softmax_groups(False)):
            w = torch.softmax(b.detach().flatten(), 0).view_as(b)
            torch.testing.assert_close(a.detach(), b.detach() - lr * lam * (w * w.numel() - 1))
        else:
            torch.testing.assert_close(a.detach(), b.detach())
        assert not torch.equal(a.detach(), a0)


def test_second_order_uses_momentum_the_scheduled_lr_and_a_relative_hvp_step() -> None:
    """The unrolled α gradient vs central differences over α of
    ``L_val(w − ξ(μ·buf + ∇_w L_train(w, α) + wd·w), α)``: the virtual step must include the
    momentum buffer, ξ must be the weight optimiser's *current* lr (not the initial ``w_lr``),
    and the Hessian-vector step must be ``hvp_r / ‖v‖`` (the loss is scaled so that ‖v‖ ≫ 1:
    a step of ``hvp_r`` or ``hvp_r·‖v‖`` along v is too coarse for the differences to hold).
    Compared on what the unrolling adds to the first-order gradient, which is made large."""
    torch.manual_seed(0)
    cell = _tiny_cell(torch.float64)
    scale, wd, mom, xi = 300.0, 1e-2, 0.9, 1e-3

    def loss(out, target):
        return scale * cell_loss(out, target)

    xt, yt, xv, yv = _batches_and_spread_alphas(cell, seed=3)
    weights = cell.weight_parameters()
    w_opt = torch.optim.SGD(weights, lr=1e-4, momentum=mom, weight_decay=wd)
    gen = torch.Generator().manual_seed(4)
    for _ in range(2):  # momentum buffers that differ from the next gradient
        weight_step(cell, loss, torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=gen),
                    torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=gen), w_opt, grad_clip=None)
    for group in w_opt.param_groups:  # what the cosine schedule does between epochs
        group["lr"] = xi
    arch = Architect(cell, loss, torch.optim.SGD(cell.arch_parameters(), lr=0.1), order=2,
                     w_lr=0.5, w_momentum=mom, w_weight_decay=wd, hvp_r=1e-4)
    got, _, _ = arch.arch_gradients(xv, yv, xt, yt, w_optimizer=w_opt)
    bufs = [w_opt.state[w]["momentum_buffer"].clone() for w in weights]

    def unrolled_val_loss() -> float:
        g = torch.autograd.grad(loss(cell(xt), yt), weights)
        backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w, gw, b in zip(weights, g, bufs):
                w.sub_(xi * (gw + wd * w + mom * b))
            value = float(loss(cell(xv), yv))
            for w, b in zip(weights, backup):
                w.copy_(b)
        return value

    alphas = cell.arch_parameters()
    first = torch.autograd.grad(loss(cell(xv), yv), alphas)  # the first-order gradient
    v = torch.autograd.grad(loss(cell(xv), yv), weights)
    assert float(torch.sqrt(sum((t ** 2).sum() for t in v))) > 30  # a wrong ε scaling shows
    wants = [central_differences(alpha, unrolled_val_loss, 1e-6) for alpha in alphas]
    top = max(float(f.abs().max()) for f in first)
    assert max(float((w - f).abs().max()) for w, f in zip(wants, first)) > 0.05 * top  # unrolling matters
    for grad, want, f in zip(got, wants, first):
        torch.testing.assert_close(grad - f, want - f, rtol=2e-2, atol=1e-3 * top)


def test_bf16_search_step_on_cpu_is_finite_and_close_to_float32() -> None:
    """run.bf16 on CPU: a first-order α step and a weight step under bfloat16 autocast give
    finite losses close to float32's, and the conv ops' stored BatchNorm input is bfloat16."""
    from nas.ops import ReLUConvBN
    from nas.runtime import Runtime

    rt = Runtime(torch.device("cpu"), bf16=True)
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(1)
        net = Supernet("tiny")
        autocast = rt.autocast if bf16 else None
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.01)
        arch = Architect(net, F.binary_cross_entropy_with_logits,
                         torch.optim.Adam(net.arch_parameters(), lr=3e-4), autocast=autocast)
        a_loss = arch.step(x, y)["arch_loss"]
        w_loss, logits = weight_step(net, F.binary_cross_entropy_with_logits, x, y, w_opt, autocast=autocast)
        losses[bf16] = (a_loss, w_loss)
        assert all(torch.isfinite(torch.tensor(v)) for v in losses[bf16])
        assert all(torch.isfinite(p).all() for p in net.parameters())
    assert losses[True] == pytest.approx(losses[False], rel=2e-2)

    op = next(m for m in Supernet("tiny").modules() if isinstance(m, ReLUConvBN))
    x_op = torch.rand(2, op.bn.num_features, 8, 8)
    body_dtypes = []  # oneDNN's bf16 depthwise kernels are slow (and hit NaN in a retrain)
    op.body[0].register_forward_hook(lambda _m, _args, y: body_dtypes.append(y.dtype))
    with rt.autocast():
        outs = [op.forward_weighted(x_op, torch.tensor(0.5)), op(x_op)]  # supernet, discrete net
    for out in outs:
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(outs[0].float(), 0.5 * outs[1].float(), atol=2e-2, rtol=2e-2)
    assert body_dtypes == [torch.float32, torch.float32]
