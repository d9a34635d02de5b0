"""Op registry: shapes, gradients, channel adaption, errors, user-registered ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import UserError
from nas.ops import (
    OPS,
    PARAMETER_FREE,
    THESIS_OPS,
    ReLUConvBN,
    adapt_channels,
    build_op,
    register_op,
)
from nas.search_space import load_search_space
from nas.supernet import Supernet

CHANNEL_CASES = [(4, 8), (4, 6), (6, 6), (8, 4), (6, 4)]  # grow, grow non-multiple, =, shrink ×2


@pytest.mark.parametrize("name", THESIS_OPS)
@pytest.mark.parametrize("c_in,c_out", CHANNEL_CASES)
def test_op_shape_and_gradient(name: str, c_in: int, c_out: int) -> None:
    torch.manual_seed(0)
    op = build_op(name, c_in, c_out)
    x = torch.randn(2, c_in, 9, 11, requires_grad=True)
    y = op(x)
    assert y.shape == (2, c_out, 9, 11)
    if name == "zero":
        assert not y.any()
        return
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for p in op.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_thesis_ops_registered_and_parameter_free_set() -> None:
    assert set(THESIS_OPS) <= set(OPS)
    assert {"zero", "identity", "max_pool_3x3", "avg_pool_3x3"} <= PARAMETER_FREE
    for name in THESIS_OPS:
        has_params = any(True for _ in build_op(name, 4, 4).parameters())
        assert has_params == (name not in PARAMETER_FREE), name


def test_conv_ops_are_relu_conv_bn_with_affine_flag() -> None:
    for name in ("dil_conv_3x3", "sep_conv_5x5", "spatial_sep_conv_7x7"):
        assert build_op(name, 4, 4).bn.weight is None
        assert build_op(name, 4, 4, affine=True).bn.weight is not None
    dil = build_op("dil_conv_5x5", 4, 4).body[0]
    assert dil.dilation == (2, 2) and dil.groups == 4 and dil.kernel_size == (5, 5)
    spatial = build_op("spatial_sep_conv_5x5", 4, 4).body
    assert spatial[0].kernel_size == (1, 5) and spatial[1].kernel_size == (5, 1)


def test_adapt_channels_tile_and_group_reduce() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert adapt_channels(x, 6) is x
    assert adapt_channels(x, 12).flatten().tolist() == list(range(6)) * 2
    assert adapt_channels(x, 8).flatten().tolist() == [0, 1, 2, 3, 4, 5, 0, 1]
    assert adapt_channels(x, 3).flatten().tolist() == [0.5, 2.5, 4.5]
    assert adapt_channels(x, 2, "max").flatten().tolist() == [2, 5]
    odd = adapt_channels(x, 4)  # 6 → 4: adaptive pooling over the channel axis
    assert odd.shape == (1, 4, 1, 1)
    assert torch.allclose(odd, F.adaptive_avg_pool1d(x.view(1, 1, 6), 4).view(1, 4, 1, 1))


def test_pools_reduce_channel_groups_like_a_3d_kernel() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 7, 7)
    want_max = F.max_pool3d(x.unsqueeze(1), (2, 3, 3), stride=(2, 1, 1), padding=(0, 1, 1))
    assert torch.allclose(build_op("max_pool_3x3", 8, 4)(x), want_max.squeeze(1))
    want_avg = F.avg_pool2d(x.view(2, 4, 2, 7, 7).mean(2), 3, 1, 1, count_include_pad=False)
    assert torch.allclose(build_op("avg_pool_3x3", 8, 4)(x), want_avg, atol=1e-6)


def test_forward_weighted_matches_weight_times_forward() -> None:
    torch.manual_seed(0)
    op = build_op("sep_conv_3x3", 4, 4).double()
    twin = build_op("sep_conv_3x3", 4, 4).double()
    twin.load_state_dict(op.state_dict())
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    w1 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    a = w1 * op(x)
    b = twin.forward_weighted(F.relu(x), w2, recompute=True)
    assert torch.allclose(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    assert torch.allclose(w1.grad, w2.grad)
    for p, q in zip(op.parameters(), twin.parameters()):
        assert torch.allclose(p.grad, q.grad)
    assert torch.allclose(op.bn.running_mean, twin.bn.running_mean)
    assert int(op.bn.num_batches_tracked) == int(twin.bn.num_batches_tracked) == 1


def test_forward_weighted_keeps_a_replaced_norm_layer() -> None:
    class CountingBN(nn.BatchNorm2d):
        calls = 0

        def forward(self, x):
            CountingBN.calls += 1
            return super().forward(x)

    op = build_op("sep_conv_3x3", 4, 4)
    op.bn = CountingBN(4, affine=False)
    x, w = torch.randn(2, 4, 8, 8), torch.tensor(0.5)
    assert torch.allclose(op.forward_weighted(F.relu(x), w), w * op(x), atol=1e-6)
    assert CountingBN.calls == 2


def test_unknown_op_is_a_user_error_listing_known_ops() -> None:
    with pytest.raises(UserError) as err:
        build_op("sep_conv_9x9", 4, 4)
    message = str(err.value)
    assert "sep_conv_9x9" in message and "sep_conv_3x3" in message and "\n" not in message


def test_register_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_op("identity")(lambda c_in, c_out, affine: nn.Identity())


@pytest.fixture
def custom_op():
    """Registers `test_conv_1x1` for one test and removes it afterwards."""

    @register_op("test_conv_1x1")
    def _factory(c_in: int, c_out: int, affine: bool) -> nn.Module:
        return ReLUConvBN(nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False)), c_out, affine)

    yield "test_conv_1x1"
    OPS.pop("test_conv_1x1")
    PARAMETER_FREE.discard("test_conv_1x1")


def test_custom_op_usable_from_search_space_file(custom_op: str, tmp_path) -> None:
    path = tmp_path / "custom.yaml"
    path.write_text(
        "in_channels: 3\nwidths: [4, 4, 8, 8, 8]\nnodes: 2\nnode_width: 4\n"
        f"ops: [zero, identity, {custom_op}]\nskips: [[1, 1], [2, 1]]\nhead_channels: 1\n"
    )
    space = load_search_space(path)
    assert space.name == "custom" and custom_op in space.ops
    net = Supernet(space)
    out = net(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)
    out.mean().backward()
    assert all(p.grad is not None for p in net.arch_parameters())
    assert {r["op"] for r in net.alpha_rows()} >= {custom_op}


@pytest.mark.parametrize("channels_last", [True, False])
def test_pointwise_matches_a_plain_1x1_conv(channels_last: bool) -> None:
    """The matrix-product 1×1 conv gives a plain conv's output and gradients (float32)."""
    torch.manual_seed(0)
    plain = nn.Conv2d(6, 5, 1, bias=False)
    from nas.ops import Pointwise

    fast = Pointwise(6, 5)
    fast.load_state_dict(plain.state_dict())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 6, 7, 9).contiguous(memory_format=fmt)
    g = torch.randn(2, 5, 7, 9)
    outs = []
    for conv in (fast, plain):
        xi = x.clone().requires_grad_()
        y = conv(xi)
        y.backward(g)
        outs.append((y.detach(), xi.grad, conv.weight.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert outs[0][0].is_contiguous(memory_format=fmt)
    assert list(fast.state_dict()) == ["weight"]


def test_contiguous_grad_gives_a_dense_channels_last_gradient() -> None:
    """A tensor entering a channel cat gets a dense NHWC gradient, not a strided slice."""
    from nas.ops import contiguous_grad

    x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    seen = {}

    def hook(grad: torch.Tensor) -> None:
        seen["grad"] = grad

    y = x * 2
    y.register_hook(hook)
    other = torch.randn(2, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    out = torch.cat([contiguous_grad(y), other], dim=1)
    (out * torch.randn_like(out)).sum().backward()
    assert seen["grad"].is_contiguous(memory_format=torch.channels_last)
    assert x.grad is not None
    assert contiguous_grad(other) is other  # nothing to do without a gradient
