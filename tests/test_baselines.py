"""Baseline networks and the model registry: shapes, gradients, parameter counts, errors.

Forward/backward runs use tiny widths so the whole file stays fast on two CPU cores;
parameter counts are taken at the default widths on the meta device (no memory, no compute).
"""

from __future__ import annotations

import pytest
import torch

from nas.errors import UserError
from nas.models import build_model, list_models, model_info, register_model

BASELINES = ["unet", "r2unet", "attunet", "r2attunet", "unet3plus", "elunet", "improved_unet",
             "aernet", "mobilenetv2_unet"]

# Counts of the widely used public PyTorch implementations (LeeJunHyun/Image_Segmentation for
# the first four, ZJUGiveLab UNet-Version `UNet_3Plus` for UNet 3+), widths 64...1024, 3 -> 1.
PUBLIC_PARAM_COUNTS = {
    "unet": 34_527_041,
    "r2unet": 39_091_393,
    "attunet": 34_878_573,
    "r2attunet": 39_442_925,
    "unet3plus": 26_971_777,
}
# No public reference count exists for these (their papers give no layer tables or use Keras);
# these are this implementation's counts at the defaults, pinned so changes are deliberate.
REGRESSION_PARAM_COUNTS = {
    "elunet": 41_241_281,
    "improved_unet": 26_100_250,
    "aernet": 21_381_325,
    "mobilenetv2_unet": 15_497_921,
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_baseline_with_a_citation() -> None:
    names = list_models()
    assert set(BASELINES) <= set(names)
    assert names == sorted(names)
    for name in BASELINES:
        info = model_info(name)
        assert info and "\n" not in info and "(" in info, (name, info)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("size,batch", [(64, 2), (128, 1)])
def test_forward_backward_shapes_and_gradients(name: str, size: int, batch: int) -> None:
    torch.manual_seed(0)
    out_channels = 2 if size == 64 else 1
    model = build_model(name, out_channels=out_channels, width=8)
    model.train()
    x = torch.rand(batch, 3, size, size)
    y = model(x)
    assert isinstance(y, torch.Tensor)
    assert y.shape == (batch, out_channels, size, size)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"{name}: parameters without gradient: {no_grad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ["aernet", "mobilenetv2_unet"])
def test_pretrained_encoders_accept_sizes_not_divisible_by_32(name: str) -> None:
    model = build_model(name, width=4).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 80, 96)).shape == (1, 1, 80, 96)


@pytest.mark.parametrize("name", sorted(PUBLIC_PARAM_COUNTS.items()))
def test_parameter_counts_match_public_implementations(name: tuple[str, int]) -> None:
    model_name, expected = name
    with torch.device("meta"):
        model = build_model(model_name)
    assert n_params(model) == expected


@pytest.mark.parametrize("name", sorted(REGRESSION_PARAM_COUNTS.items()))
def test_parameter_counts_are_stable(name: tuple[str, int]) -> None:
    model_name, expected = name
    with torch.device("meta"):
        model = build_model(model_name)
    assert n_params(model) == expected


def test_width_and_depth_scale_the_unet_family() -> None:
    with torch.device("meta"):
        small = build_model("unet", width=16, depth=4)
        default = build_model("unet")
    assert len(small.encoder) == 4 and small.encoder[-1][0].out_channels == 128
    assert n_params(small) < n_params(default)


def test_unet3plus_deep_supervision_returns_side_outputs_only_in_training() -> None:
    model = build_model("unet3plus", width=4, deep_supervision=True)
    x = torch.rand(2, 3, 64, 64)
    outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == 5
    assert all(o.shape == (2, 1, 64, 64) for o in outs)
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 1, 64, 64)


def test_unknown_model_lists_known_models() -> None:
    with pytest.raises(UserError, match=r"unknown model 'vnet'.*known models: .*unet"):
        build_model("vnet")


def test_unknown_argument_is_named() -> None:
    with pytest.raises(UserError, match=r"model 'unet' has no argument 'widht'; its arguments are: .*width"):
        build_model("unet", widht=8)


def test_names_are_case_and_dash_insensitive() -> None:
    assert type(build_model("Improved-UNet", width=2)).__name__ == "ImprovedUNet"


@pytest.mark.parametrize("name,kwargs,pattern", [
    ("unet", {"width": 0}, r"unet: width must be an integer >= 1, got 0"),
    ("unet", {"depth": 1}, r"unet: depth must be an integer in \[2, 8\]"),
    ("attunet", {"width": 1}, r"attunet: width must be an integer >= 2"),
    ("r2unet", {"t": 0}, r"r2unet: t must be an integer >= 1"),
    ("unet3plus", {"deep_supervision": "yes"}, r"unet3plus: deep_supervision must be true or false"),
    ("improved_unet", {"kernel_size": 4}, r"improved_unet: kernel_size must be an integer >= 1 and odd"),
    ("mobilenetv2_unet", {"dropout": 1.5}, r"mobilenetv2_unet: dropout must be a number in \[0.0, 1.0\)"),
    ("aernet", {"width": 7}, r"aernet: width must be an integer >= 2 and even"),
])
def test_bad_argument_values_are_user_errors(name: str, kwargs: dict, pattern: str) -> None:
    with pytest.raises(UserError, match=pattern):
        build_model(name, **kwargs)


def test_input_size_not_divisible_is_a_user_error() -> None:
    model = build_model("unet", width=2)
    with pytest.raises(UserError, match=r"unet: input size 72x64 must be divisible by 16"):
        model(torch.rand(1, 3, 72, 64))
    with pytest.raises(UserError, match=r"expected input \[B, 3, H, W\]"):
        model(torch.rand(1, 1, 64, 64))


def test_register_model_rejects_a_second_owner_of_a_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        @register_model("unet")
        class Other(torch.nn.Module):
            """Not U-Net."""


_ENCODERS = {"aernet": "efficientnet_b1", "mobilenetv2_unet": "mobilenet_v2"}


# The file handling is shared (nas.models.backbones): every layout on the cheap MobileNetV2,
# one on EfficientNet-B1.
@pytest.mark.parametrize("name,layout", [("mobilenetv2_unet", "classifier"), ("mobilenetv2_unet", "features"),
                                         ("mobilenetv2_unet", "wrapped"), ("aernet", "classifier")])
def test_pretrained_loads_a_local_state_dict(name: str, layout: str, tmp_path) -> None:
    import torchvision.models as tvm

    torch.manual_seed(1)
    source = getattr(tvm, _ENCODERS[name])(weights=None)
    state = {"classifier": source.state_dict(), "features": source.features.state_dict(),
             "wrapped": {"state_dict": source.state_dict()}}[layout]
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    model = build_model(name, width=4, pretrained=str(path))
    for key, value in source.features.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key


@pytest.mark.parametrize("name", sorted(_ENCODERS))
def test_pretrained_refuses_missing_unreadable_and_foreign_files(name: str, tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(UserError, match=r"nope\.pt' does not exist .*nothing is downloaded"):
        build_model(name, width=4, pretrained=str(missing))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"cannot read pretrained weights"):
        build_model(name, width=4, pretrained=str(garbage))
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(UserError, match=r"is not a torchvision .* state dict: .*missing key"):
        build_model(name, width=4, pretrained=str(foreign))
    not_a_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(UserError, match=r"does not hold a state dict"):
        build_model(name, width=4, pretrained=str(not_a_dict))
    with pytest.raises(UserError, match=r"pretrained must be the path"):
        build_model(name, width=4, pretrained=3)
