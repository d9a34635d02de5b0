"""Supernet shapes and α bookkeeping; search-space files, loader and validation errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

import nas.search_space as ss
from nas.backbone import UNetBackbone, parse_cell_name
from nas.cell import CellInput, SkipCell
from nas.errors import UserError
from nas.search_space import SearchSpace, list_search_spaces, load_search_space
from nas.supernet import Supernet


def test_tiny_forward_backward_32() -> None:
    torch.manual_seed(0)
    net = Supernet("tiny")
    out = net(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fullscale_forward_backward_64_batch1() -> None:
    torch.manual_seed(0)
    net = Supernet("unet_fullscale")
    assert sorted(net.cells) == sorted(f"skip_{e}_{d}" for e in range(1, 5) for d in range(1, 5))
    out = net(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 2, 64, 64)
    out.mean().backward()
    assert all(p.grad is not None for p in net.arch_parameters())


def test_parameters_are_disjoint_and_complete() -> None:
    net = Supernet("tiny")
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}
    # per cell: node1 (1×10), node2 (2×10), ssb, csb
    assert len(net.arch_parameters()) == 4 * 4
    assert all("alpha" in n for n, p in net.named_parameters() if id(p) in arch)
    assert len(net.softmax_groups(include_blocks=True)) == 4 * 3  # csb is sigmoid-gated
    assert len(net.softmax_groups(include_blocks=False)) == 4 * 2
    assert any(k.endswith("ssb_alpha") for k in net.state_dict())  # α are saved


def test_alpha_state_dict_names_are_stable() -> None:
    """The discretizer reads α from checkpoints by these exact names."""
    net = Supernet("tiny")
    arch = {id(p) for p in net.arch_parameters()}
    names = sorted(n for n, p in net.named_parameters() if id(p) in arch)
    expected = sorted(
        f"cells.skip_{k}_{k}.{a}"
        for k in range(1, 5)
        for a in ("node_alphas.0", "node_alphas.1", "ssb_alpha", "csb_alpha")
    )
    assert names == expected
    assert set(expected) <= set(net.state_dict())


def test_supernet_is_the_shared_backbone_with_search_cells() -> None:
    net = Supernet("unet_fullscale")
    assert isinstance(net, UNetBackbone)
    assert all(isinstance(c, SkipCell) and isinstance(c.node0, CellInput) for c in net.cells.values())
    assert list(net.cells)[:4] == ["skip_1_4", "skip_2_4", "skip_3_4", "skip_4_4"]
    assert [n for n, _ in net.named_children()] == ["encoder", "cells", "decoder", "head"]
    # decoder level d: 4 cells × 2·node_width, plus the lower path
    assert net.decoder["level1"][0].in_channels == 4 * 2 * 16 + 16


class _Pool(torch.nn.Module):
    """A stand-in cell: any module with ``out_channels`` called as ``cell(x, size)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.out_channels = c

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, size)


def test_backbone_takes_any_cells_and_leaves_absent_ones_out() -> None:
    widths = [4, 8, 8, 16, 16]
    net = UNetBackbone(3, widths, 2, lambda w: {"skip_1_1": _Pool(w[0]), "skip_2_1": _Pool(w[1])})
    assert list(net.cells) == ["skip_1_1", "skip_2_1"]
    assert net.decoder["level1"][0].in_channels == 4 + 8 + 8
    assert net.decoder["level2"][0].in_channels == 8  # no cell: the lower path only
    x = torch.rand(2, 3, 32, 32)
    assert net(x).shape == (2, 2, 32, 32)
    assert net(x.contiguous(memory_format=torch.channels_last)).is_contiguous(
        memory_format=torch.channels_last
    )
    with pytest.raises(ValueError, match="skip_<enc>_<dec>"):
        UNetBackbone(3, widths, 1, lambda w: {"skip_5_1": _Pool(w[4])})
    with pytest.raises(TypeError, match="out_channels"):
        UNetBackbone(3, widths, 1, lambda w: {"skip_1_1": torch.nn.Identity()})
    assert parse_cell_name("skip_3_2") == (3, 2)


def test_alpha_rows_long_format() -> None:
    net = Supernet("tiny")
    rows = net.alpha_rows()
    assert len(rows) == 4 * ((1 + 2) * 10 + 2 + 2)
    assert set(rows[0]) == {"cell", "group", "input", "op", "alpha", "weight"}
    assert {r["cell"] for r in rows} == {"skip_1_1", "skip_2_2", "skip_3_3", "skip_4_4"}
    node1 = [r for r in rows if r["cell"] == "skip_2_2" and r["group"] == "node1"]
    assert sum(r["weight"] for r in node1) == pytest.approx(1.0)


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    net = Supernet("tiny").eval()
    x = torch.rand(2, 3, 32, 32)
    a = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    b = net_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-5)


# --------------------------------------------------------------------------- search spaces


def test_shipped_spaces_load_and_relate() -> None:
    assert {"tiny", "unet_classic", "unet_elunet", "unet_fullscale"} <= set(list_search_spaces())
    full = load_search_space("unet_fullscale")
    elu = load_search_space("unet_elunet")
    classic = load_search_space("unet_classic")
    assert len(full.skips) == 16 and full.widths == [8, 16, 32, 64, 128]
    assert (full.nodes, full.node_width, full.head_channels) == (3, 16, 2)
    assert len(full.ops) == 10 and full.ssb_gating == "softmax" and full.csb_gating == "sigmoid"
    assert set(elu.skips) < set(full.skips)
    assert all(e <= d for e, d in elu.skips)
    assert classic.skips == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert load_search_space("tiny").head_channels == 1


def test_to_dict_round_trip_via_file(tmp_path: Path) -> None:
    space = load_search_space("unet_elunet")
    assert load_search_space(space.to_dict()) == space
    path = tmp_path / "run" / "search_space.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(space.to_dict()))
    assert load_search_space(path) == space
    assert load_search_space(str(path)).name == "unet_elunet"


def test_installed_data_dir_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ss.search_space_dirs()[1] == Path(sys.prefix) / "share" / "skipnas" / "search_spaces"
    share = tmp_path / "share"
    share.mkdir()
    (share / "mine.yaml").write_text(yaml.safe_dump(load_search_space("tiny").to_dict()))
    monkeypatch.setattr(ss, "search_space_dirs", lambda: [tmp_path / "missing", share])
    assert load_search_space("mine").widths == [4, 8, 8, 16, 16]


def _write(tmp_path: Path, **changes) -> Path:
    data = load_search_space("tiny").to_dict()
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "changes,entry,words",
    [
        ({"ops": ["zero", "identity", "warp_conv"]}, "ops[2]", "warp_conv"),
        ({"skips": [[1, 1], [2, 2], [3, 3], [5, 4]]}, "skips[3]", "encoder level 5"),
        ({"skips": [[1, 1], [0, 2]]}, "skips[1]", "not in 1..4"),
        ({"skips": [[1, 1], [2, 2], [1, 1]]}, "skips[2]", "duplicate"),
        ({"skips": [[1, 1], [2]]}, "skips[1]", "[encoder_level, decoder_level]"),
        ({"widths": [4, 8, 16, 32]}, "widths", "5 encoder widths"),
        ({"nodes": 0}, "nodes", ">= 1"),
        ({"ssb_gating": "relu"}, "ssb_gating", "softmax, sigmoid"),
        ({"csb_gating": "tanh"}, "csb_gating", "softmax, sigmoid"),
        ({"resample_down": "nearest"}, "resample_down", "maxpool"),
        ({"head_channels": 3}, "head_channels", "1 or 2"),
        ({"node_width": None}, "node_width", "missing"),
        ({"colour": "red"}, "colour", "unknown key"),
    ],
)
def test_search_space_errors_name_file_and_entry(tmp_path, changes, entry, words) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(UserError) as err:
        load_search_space(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {entry}: "), message
    assert words in message and "\n" not in message


def test_named_space_errors_use_search_spaces_prefix(monkeypatch, tmp_path) -> None:
    folder = tmp_path / "spaces"
    folder.mkdir()
    (folder / "x.yaml").write_text(_write(tmp_path, nodes=-1).read_text())
    monkeypatch.setattr(ss, "search_space_dirs", lambda: [folder])
    with pytest.raises(UserError, match=r"^search_spaces/x\.yaml: nodes: "):
        load_search_space("x")


def test_unknown_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown search space 'nope'.*unet_fullscale"):
        load_search_space("nope")
    with pytest.raises(UserError, match="not found"):
        load_search_space(tmp_path / "missing.yaml")


def test_decoder_levels_without_skips_use_the_lower_path_only() -> None:
    data = load_search_space("tiny").to_dict()
    data["skips"] = [[1, 1], [3, 1]]
    net = Supernet(load_search_space(data))
    assert sorted(net.cells) == ["skip_1_1", "skip_3_1"]
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)


def test_supernet_accepts_space_object() -> None:
    space = SearchSpace.from_dict(load_search_space("tiny").to_dict())
    assert Supernet(space).space is space


def test_every_cell_resamples_its_encoder_level_to_its_decoder_level() -> None:
    """skip_e_d: max-pool by 2^(d-e) when the encoder level is finer, bilinear up when coarser,
    the 1×1 projection at the lower resolution, as the search space says."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = Supernet("unet_fullscale").eval()
    widths, size = net.widths, 64
    for name, cell in net.cells.items():
        e, d = parse_cell_name(name)
        assert cell.node0.down == d - e, name
        x = torch.randn(1, widths[e - 1], size >> (e - 1), size >> (e - 1))
        out_hw = (size >> (d - 1), size >> (d - 1))
        proj = cell.node0.project if cell.node0.project is not None else (lambda t: t)
        if d > e:
            want = proj(F.max_pool2d(x, 2 ** (d - e)))
        elif d < e:
            want = F.interpolate(proj(x), size=out_hw, mode="bilinear", align_corners=False)
        else:
            want = proj(x)
        torch.testing.assert_close(cell.node0(x, out_hw), want, msg=name)
