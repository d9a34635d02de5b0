"""Candidate operations of a mixed edge, as a name → factory registry.

Every op keeps the spatial size and maps ``C_in`` → ``C_out`` channels, so a search space can
list any op for any edge. Users add an op with :func:`register_op`; the search-space loader and
the cells only ever build ops through :func:`build_op`, so a registered op is usable from a
search-space file at once.

Parameter-free ops adapt channels without weights (thesis, "Operations"): more output channels
→ the input channels are tiled (then sliced when ``C_out`` is not a multiple), fewer → groups of
channels are averaged (identity, avg pool) or max-reduced (max pool). Conv ops are
ReLU → conv(s) → BatchNorm (DARTS), all derived from :class:`ReLUConvBN` so a cell can share
one ReLU per node and fold its mixing weight into the BatchNorm (see ``forward_weighted``).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nas.errors import UserError

OpFactory = Callable[[int, int, bool], nn.Module]

#: name → factory ``(c_in, c_out, affine) -> nn.Module``.
OPS: dict[str, OpFactory] = {}

#: Ops without parameters that are pure functions of their input. A cell computes each of them
#: once per node state and reuses the result on every edge leaving that node.
PARAMETER_FREE: set[str] = set()


def register_op(name: str, *, parameter_free: bool = False) -> Callable[[OpFactory], OpFactory]:
    """Decorator adding ``factory(c_in, c_out, affine) -> nn.Module`` to :data:`OPS`.

    ``parameter_free=True`` promises the op has no parameters and is deterministic, which lets
    a cell compute it once per node instead of once per edge.
    """

    def decorator(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise ValueError(f"op '{name}' is already registered")
        OPS[name] = factory
        if parameter_free:
            PARAMETER_FREE.add(name)
        return factory

    return decorator


def check_op_name(name: str) -> None:
    """Raise :class:`UserError` naming ``name`` and listing known ops if it is not registered."""
    if name not in OPS:
        raise UserError(f"unknown op '{name}'; known ops: {', '.join(sorted(OPS))}")


def build_op(name: str, c_in: int, c_out: int, affine: bool = False) -> nn.Module:
    """Build op ``name`` mapping ``c_in`` → ``c_out`` channels (BatchNorm affine per ``affine``)."""
    check_op_name(name)
    return OPS[name](c_in, c_out, affine)


# --------------------------------------------------------------------------- channel adaption

Reduce = Literal["mean", "max"]


def adapt_channels(x: Tensor, c_out: int, reduce: Reduce = "mean") -> Tensor:
    """Map ``x``'s channels to ``c_out`` without weights.

    Tiles channels when growing (tile, then slice); when shrinking, reduces groups of
    ``C_in / C_out`` consecutive channels with mean or max (reshape, no loop), or with adaptive
    pooling over the channel axis when ``C_in`` is not a multiple of ``C_out``.
    """
    c_in = x.shape[1]
    if c_out == c_in:
        return x
    if c_out > c_in:
        reps = -(-c_out // c_in)
        tiled = x.repeat(1, reps, 1, 1)
        return tiled if reps * c_in == c_out else tiled[:, :c_out]
    b, _, h, w = x.shape
    if c_in % c_out == 0:
        groups = x.reshape(b, c_out, c_in // c_out, h, w)
        return groups.mean(2) if reduce == "mean" else groups.amax(2)
    pool = F.adaptive_avg_pool3d if reduce == "mean" else F.adaptive_max_pool3d
    return pool(x.unsqueeze(1), (c_out, h, w)).squeeze(1)


class Zero(nn.Module):
    """Zeros of the output shape. A mixed edge never calls it; its α only enters the softmax."""

    def __init__(self, c_out: int) -> None:
        super().__init__()
        self.c_out = c_out

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return x.new_zeros((b, self.c_out, h, w))


class Identity(nn.Module):
    """Identity; channel mismatch handled by :func:`adapt_channels` (group mean / tiling)."""

    def __init__(self, c_out: int) -> None:
        super().__init__()
        self.c_out = c_out

    def forward(self, x: Tensor) -> Tensor:
        return adapt_channels(x, self.c_out, "mean")


class Pool3x3(nn.Module):
    """3×3 stride-1 max/avg pool whose channel adaption uses the same reduction.

    Reducing groups of channels and pooling spatially commute for both max and mean, so the
    channel step runs first when it shrinks the tensor and last when it grows it: the spatial
    pool always runs on the smaller tensor.
    """

    def __init__(self, kind: Literal["max", "avg"], c_in: int, c_out: int) -> None:
        super().__init__()
        self.kind, self.c_in, self.c_out = kind, c_in, c_out

    def _pool(self, x: Tensor) -> Tensor:
        if self.kind == "max":
            return F.max_pool2d(x, 3, stride=1, padding=1)
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> Tensor:
        reduce: Reduce = "max" if self.kind == "max" else "mean"
        if self.c_out < self.c_in:
            return self._pool(adapt_channels(x, self.c_out, reduce))
        return adapt_channels(self._pool(x), self.c_out, reduce)


# --------------------------------------------------------------------------- conv ops


class Pointwise(nn.Conv2d):
    """1×1 convolution without bias, run as a matrix product on channels-last input.

    On CPU, torch sends a 1×1 ``conv2d`` to its generic unfold-and-multiply kernel, several
    times slower than the matrix product it is for an NHWC tensor (``[B·H·W, C] @ Wᵀ``,
    forward and backward). Same parameters, state-dict keys and float32 result as
    ``nn.Conv2d(c_in, c_out, 1, bias=False)``; other layouts take the ordinary convolution.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1)).permute(0, 3, 1, 2)
        return super().forward(x)


def contiguous_grad(x: Tensor) -> Tensor:
    """``x`` unchanged, but its gradient is made dense in ``x``'s memory format in backward.

    A tensor that enters a channel ``cat`` gets a strided slice of the concatenation's
    gradient; BatchNorm's CPU backward is about ten times slower on such a gradient than on a
    channels-last one, and every conv op of a node would pay that. One copy here is cheaper.
    """
    if not (torch.is_grad_enabled() and x.requires_grad and x.dim() == 4):
        return x
    return _ContiguousGrad.apply(x)


class _ContiguousGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
        return grad.contiguous(memory_format=fmt)


class ReLUConvBN(nn.Module):
    """ReLU → ``body`` (convolutions) → BatchNorm: the shape of every conv op (DARTS).

    ``forward_weighted(relu_x, w)`` returns ``w * forward(x)`` given an already rectified input:
    a cell applies ReLU once per node for all ops leaving it, and folds the mixing weight ``w``
    into the BatchNorm's scale, so the op's output is not stored a second time for the weight's
    gradient.
    """

    def __init__(self, body: nn.Sequential, c_out: int, affine: bool) -> None:
        super().__init__()
        self.body = body
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self._body(F.relu(x)))

    def forward_weighted(self, relu_x: Tensor, weight: Tensor, recompute: bool = False) -> Tensor:
        """``weight * forward(x)`` from ``relu_x = ReLU(x)``.

        ``recompute=True`` keeps no intermediate of a multi-conv body for backward and reruns
        the body instead (activation checkpointing): with ReLU shared and the weight folded
        into BatchNorm, the op then stores a single tensor (the BatchNorm input), which is
        what keeps full-resolution supernet search within a few GB.
        """
        return scaled_batch_norm(self.bn, self._body(relu_x, recompute), weight)

    def _body(self, relu_x: Tensor, recompute: bool = False) -> Tensor:
        """``body(relu_x)``; under CPU autocast in float32, returned in the autocast dtype.

        oneDNN's bfloat16 kernels for these 16-channel depthwise, dilated and 1×k convs are
        slower than its float32 ones; storing the output (the BatchNorm input) in bfloat16
        keeps most of bf16's memory saving.
        """
        run: Callable[[Tensor], Tensor] = self.body
        low = None
        if relu_x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            run, low = partial(_float32_forward, self.body), torch.get_autocast_dtype("cpu")
        if recompute and torch.is_grad_enabled() and len(self.body) > 1:
            y = checkpoint(run, relu_x, use_reentrant=False)
        else:
            y = run(relu_x)
        return y if low is None else y.to(low)


def _float32_forward(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` in float32 with autocast off (inside an autocast region)."""
    with torch.autocast(x.device.type, enabled=False):
        return module(x.float())


def scaled_batch_norm(bn: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    """``weight * bn(x)`` as one batch-norm call (same running-stat updates as ``bn(x)``).

    Only a plain ``nn.BatchNorm2d`` is folded; a replaced norm layer (SyncBatchNorm, a
    cross-rank BatchNorm, ...) keeps its own forward and is multiplied afterwards.
    """
    if type(bn) is not nn.BatchNorm2d:
        return weight * bn(x)
    channels = x.shape[1]
    scale = weight.expand(channels).contiguous() if bn.weight is None else bn.weight * weight
    shift = None if bn.bias is None else bn.bias * weight
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or bn.running_mean is None
    keep_stats = not bn.training or bn.track_running_stats
    return F.batch_norm(
        x,
        bn.running_mean if keep_stats else None,
        bn.running_var if keep_stats else None,
        scale,
        shift,
        use_batch_stats,
        momentum,
        bn.eps,
    )


def _separable(c_in: int, c_out: int, k: int, dilation: int, affine: bool) -> ReLUConvBN:
    """Depthwise k×k (optionally dilated) then pointwise 1×1 (DARTS SepConv/DilConv, once)."""
    pad = dilation * (k - 1) // 2
    body = nn.Sequential(
        nn.Conv2d(c_in, c_in, k, padding=pad, dilation=dilation, groups=c_in, bias=False),
        Pointwise(c_in, c_out),
    )
    return ReLUConvBN(body, c_out, affine)


def _spatial_separable(c_in: int, c_out: int, k: int, affine: bool) -> ReLUConvBN:
    """1×k then k×1 dense convolutions (DARTS conv_7x1_1x7)."""
    body = nn.Sequential(
        nn.Conv2d(c_in, c_out, (1, k), padding=(0, k // 2), bias=False),
        nn.Conv2d(c_out, c_out, (k, 1), padding=(k // 2, 0), bias=False),
    )
    return ReLUConvBN(body, c_out, affine)


@register_op("zero", parameter_free=True)
def _zero(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return Zero(c_out)


@register_op("identity", parameter_free=True)
def _identity(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return Identity(c_out)


@register_op("max_pool_3x3", parameter_free=True)
def _max_pool_3x3(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return Pool3x3("max", c_in, c_out)


@register_op("avg_pool_3x3", parameter_free=True)
def _avg_pool_3x3(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return Pool3x3("avg", c_in, c_out)


@register_op("dil_conv_3x3")
def _dil_conv_3x3(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return _separable(c_in, c_out, 3, 2, affine)


@register_op("dil_conv_5x5")
def _dil_conv_5x5(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return _separable(c_in, c_out, 5, 2, affine)


@register_op("sep_conv_3x3")
def _sep_conv_3x3(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return _separable(c_in, c_out, 3, 1, affine)


@register_op("sep_conv_5x5")
def _sep_conv_5x5(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return _separable(c_in, c_out, 5, 1, affine)


@register_op("spatial_sep_conv_5x5")
def _spatial_sep_conv_5x5(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return _spatial_separable(c_in, c_out, 5, affine)


@register_op("spatial_sep_conv_7x7")
def _spatial_sep_conv_7x7(c_in: int, c_out: int, affine: bool) -> nn.Module:
    return _spatial_separable(c_in, c_out, 7, affine)


#: The thesis' ten ops, in the order search spaces list them.
THESIS_OPS: tuple[str, ...] = (
    "zero",
    "identity",
    "max_pool_3x3",
    "avg_pool_3x3",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "spatial_sep_conv_5x5",
    "spatial_sep_conv_7x7",
)

__all__ = [
    "OPS",
    "PARAMETER_FREE",
    "Pointwise",
    "THESIS_OPS",
    "ReLUConvBN",
    "adapt_channels",
    "build_op",
    "check_op_name",
    "contiguous_grad",
    "register_op",
    "scaled_batch_norm",
]
