"""Argument and input checks shared by the models, so every bad value gets the same kind of
one-line `UserError` ("<model>: <argument> must be ..., got ...") instead of a shape error
deep inside a convolution."""

from __future__ import annotations

from typing import Any

import torch

from nas.errors import UserError


def check_int(model: str, arg: str, value: Any, minimum: int, maximum: int | None = None,
              parity: str | None = None) -> int:
    """Return `value` if it is an int in ``[minimum, maximum]`` (and ``"even"``/``"odd"`` if asked)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    ok = ok and (maximum is None or value <= maximum)
    ok = ok and (parity is None or value % 2 == (0 if parity == "even" else 1))
    if not ok:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        suffix = f" and {parity}" if parity else ""
        raise UserError(f"{model}: {arg} must be an integer {bound}{suffix}, got {value!r}")
    return value


def check_float(model: str, arg: str, value: Any, low: float, high: float) -> float:
    """Return `value` as float if it is a number in ``[low, high)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise UserError(f"{model}: {arg} must be a number in [{low}, {high}), got {value!r}")
    return float(value)


def check_bool(model: str, arg: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{model}: {arg} must be true or false, got {value!r}")
    return value


def check_levels(model: str, in_channels: Any, out_channels: Any, width: Any, depth: Any,
                 min_width: int = 1) -> list[int]:
    """Check the knobs every U-shaped baseline shares; return the level widths ``width * 2**i``."""
    check_int(model, "in_channels", in_channels, 1)
    check_int(model, "out_channels", out_channels, 1)
    check_int(model, "width", width, min_width)
    check_int(model, "depth", depth, 2, 8)
    return [width * 2 ** i for i in range(depth)]


def check_input(model: str, x: torch.Tensor, in_channels: int, multiple: int) -> None:
    """`x` must be ``[B, in_channels, H, W]`` with H and W divisible by `multiple`.

    `multiple` is 2**(number of poolings): with it every skip connection meets a decoder
    feature map of exactly its own size.
    """
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise UserError(f"{model}: expected input [B, {in_channels}, H, W], got {list(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]  # not int(): under torch.export these are symbolic sizes
    if h % multiple or w % multiple:
        raise UserError(f"{model}: input size {h}x{w} must be divisible by {multiple} "
                        f"(the network halves the resolution {multiple.bit_length() - 1} times); "
                        f"choose an image size that is a multiple of {multiple}")
