"""Bilevel step: β-decay, λ schedule, first/second-order α steps, weight step, planted search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.architect import Architect, beta_decay_loss, beta_lambda, weight_step
from nas.cell import SkipCell
from nas.ops import THESIS_OPS
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


def _tiny_cell(dtype=torch.float32) -> SkipCell:
    ops = ["zero", "identity", "avg_pool_3x3", "max_pool_3x3", "sep_conv_3x3"]
    return SkipCell(2, 2, 2, [*ops, "spatial_sep_conv_5x5"]).to(dtype)


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
    gen = torch.Generator().manual_seed(1)
    xt, yt, xv, yv = (torch.randn(3, 2, 8, 8, generator=gen, dtype=torch.float64) for _ in range(4))
    with torch.no_grad():
        for a in cell.arch_parameters():
            a.normal_(0, 0.5)
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
    h = 1e-5
    for alpha, grad in zip(cell.arch_parameters(), grads):
        flat, gflat = alpha.data.view(-1), grad.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + h
            up = unrolled_val_loss()
            flat[i] = old - h
            down = unrolled_val_loss()
            flat[i] = old
            assert gflat[i].item() == pytest.approx((up - down) / (2 * h), rel=1e-3, abs=1e-7)


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


def test_planted_max_pool_wins_a_short_bilevel_search() -> None:
    """Target = 3×3 max pool of noise: the search must give max_pool_3x3 the largest weight."""
    torch.manual_seed(0)
    cell = SkipCell(1, 1, 1, list(THESIS_OPS))  # one node, fed by the raw input
    w_opt = torch.optim.SGD(cell.weight_parameters(), lr=0.05, momentum=0.9)
    a_opt = torch.optim.Adam(cell.arch_parameters(), lr=0.05, betas=(0.5, 0.999))
    arch = Architect(cell, cell_loss, a_opt, order=1)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(8, 1, 16, 16)
        return x, F.max_pool2d(x, 3, stride=1, padding=1)

    for _ in range(150):
        arch.step(*batch())
        weight_step(cell, cell_loss, *batch(), w_opt)
    weights = cell.group_weights()["node1"][0].detach()
    assert THESIS_OPS[int(weights.argmax())] == "max_pool_3x3", weights
    assert weights.max() > 0.5
