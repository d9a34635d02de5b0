"""torchvision encoders for the transfer-learning baselines (AER-Net, MobileNetV2 U-Net).

Encoders are always built with ``weights=None``: skipnas never downloads anything. ImageNet
weights are used only when the user names a local state-dict file (``pretrained=<path>``), e.g.
one saved once with ``torch.save(torchvision.models.efficientnet_b1(weights="DEFAULT")
.state_dict(), "effb1.pt")`` on a machine with internet access.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from nas.errors import UserError

_ARCHS = ("efficientnet_b1", "mobilenet_v2")


def torchvision_features(arch: str, model: str, pretrained: str | os.PathLike[str] | None) -> nn.Sequential:
    """The ``features`` trunk of torchvision's `arch`, randomly initialised or loaded from a file.

    The weights file is read before the network is built, so a bad path fails fast.

    Args:
        arch: ``"efficientnet_b1"`` or ``"mobilenet_v2"``.
        model: registry name of the calling model, used in error messages.
        pretrained: None, or the path of a local state-dict file (see `read_local_weights`).
    """
    import torchvision.models as tvm  # deferred: importing torchvision costs ~1 s

    if arch not in _ARCHS:
        raise ValueError(f"unsupported torchvision encoder {arch!r}")
    if pretrained is not None and not isinstance(pretrained, (str, os.PathLike)):
        raise UserError(f"{model}: pretrained must be the path of a local weights file or null, "
                        f"got {pretrained!r}")
    state = None if pretrained is None else read_local_weights(pretrained, model=model, arch=arch)
    features = getattr(tvm, arch)(weights=None).features
    if state is not None:
        load_features(features, state, model=model, arch=arch, source=str(pretrained))
    return features


def read_local_weights(path: str | os.PathLike[str], *, model: str, arch: str) -> dict[str, torch.Tensor]:
    """Read a torchvision state dict for `arch` from the local file `path`.

    Accepted: the state dict of the whole torchvision classifier (keys ``features.*``; the
    ``classifier.*`` keys are dropped), of its ``features`` trunk alone, or either of these
    wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``. Returns the trunk's state dict.
    A missing or unreadable file, or one without a state dict, is a one-line `UserError`.
    """
    file = Path(path).expanduser()
    hint = f"pretrained weights for {model} ({arch})"
    if str(path).strip() == "" or not file.is_file():
        raise UserError(f"{model}: {hint}: file '{file}' does not exist (pretrained must name a "
                        f"local state-dict file; nothing is downloaded)")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not a state dict
        raise UserError(f"{model}: cannot read {hint} from '{file}': {_one_line(exc)}") from exc
    state = _unwrap(obj)
    if state is None:
        raise UserError(f"{model}: '{file}' does not hold a state dict (a mapping of tensor names "
                        f"to tensors), got {type(obj).__name__}")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return state


def load_features(features: nn.Module, state: Mapping[str, torch.Tensor], *, model: str, arch: str,
                  source: str) -> None:
    """Copy `state` into `features` after checking keys and shapes (one-line `UserError` if not).

    Missing ``num_batches_tracked`` buffers are tolerated (some converters drop them).
    """
    expected = features.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserError(f"{model}: '{source}' is not a torchvision {arch} state dict: "
                        f"{len(missing)} missing key(s) {_first(missing)}, "
                        f"{len(unexpected)} unexpected key(s) {_first(unexpected)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise UserError(f"{model}: '{source}': tensor '{key}' has shape {tuple(value.shape)}, "
                            f"{arch} needs {tuple(expected[key].shape)}")
    features.load_state_dict(state, strict=False)


def _unwrap(obj: Any) -> dict[str, torch.Tensor] | None:
    for _ in range(2):
        if isinstance(obj, Mapping) and not _is_state(obj):
            obj = obj.get("state_dict", obj.get("model"))
    return dict(obj) if isinstance(obj, Mapping) and _is_state(obj) and obj else None


def _is_state(obj: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _first(keys: list[str], n: int = 3) -> str:
    return "[" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + "]"


def _one_line(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return text[:200]


def replace_stem(features: nn.Sequential, in_channels: int) -> None:
    """Give a torchvision trunk a first convolution for `in_channels` instead of 3 channels.

    The new convolution copies the old one's geometry and is randomly initialised (pretrained
    RGB filters do not transfer to other channel counts).
    """
    old = features[0][0]
    features[0][0] = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride,
                               old.padding, bias=old.bias is not None)
