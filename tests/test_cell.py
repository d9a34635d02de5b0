"""SkipCell: node-level softmax, SSB/CSB gating, resampling (CellInput), sharing, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.cell import CellInput, SkipCell, gate, node_softmax
from nas.ops import THESIS_OPS, Zero

OPS = list(THESIS_OPS)


def reference_forward(cell: SkipCell, x: torch.Tensor) -> torch.Tensor:
    """The cell's definition written plainly: every op called on its own, blocks unfused."""
    states = [cell.node0(x)]
    for node, alpha in zip(cell.mixed, cell.node_alphas):
        w = torch.softmax(alpha.flatten(), 0).view_as(alpha)
        total = 0
        for j, own in enumerate(node.edges):
            for k, name in enumerate(cell.op_names):
                if name == "zero":
                    continue
                op = own[name] if name in own else cell.shared_ops[name]
                total = total + w[j, k] * op(states[j])
        states.append(total)
    inner = states[1:]
    g_ssb = gate(cell.ssb_alpha, cell.ssb_gating)
    g_csb = gate(cell.csb_alpha, cell.csb_gating)
    ssb = sum(g * n for g, n in zip(g_ssb, inner))
    csb = cell.csb_conv(torch.cat([g * n for g, n in zip(g_csb, inner)], 1))
    return torch.cat([ssb, csb], 1)


@pytest.mark.parametrize("ssb,csb", [("softmax", "sigmoid"), ("sigmoid", "softmax")])
def test_cell_matches_its_definition(ssb: str, csb: str) -> None:
    torch.manual_seed(0)
    cell = SkipCell(6, 4, 3, OPS, ssb_gating=ssb, csb_gating=csb).double()
    with torch.no_grad():
        for p in cell.arch_parameters():
            p.normal_()  # far from uniform, so a wrong weight would show
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert torch.allclose(cell(x), reference_forward(cell, x))


def test_output_shape_and_resampling() -> None:
    x = torch.randn(2, 8, 16, 16)
    assert SkipCell(8, 4, 2, OPS)(x).shape == (2, 8, 16, 16)
    assert SkipCell(8, 4, 2, OPS, down=2)(x).shape == (2, 8, 4, 4)
    assert SkipCell(8, 4, 2, OPS, down=1, resample_down="bilinear")(x).shape == (2, 8, 8, 8)
    assert SkipCell(8, 4, 2, OPS, down=-1)(x).shape == (2, 8, 32, 32)
    assert SkipCell(8, 4, 2, OPS, down=-3)(x, size=(100, 90)).shape == (2, 8, 100, 90)
    assert SkipCell(4, 4, 1, OPS).node0.project is None
    assert SkipCell(8, 4, 1, OPS).node0.project is not None


@pytest.mark.parametrize(
    "down,mode,size,expect",
    [
        (0, "maxpool", None, lambda x: x),
        (2, "maxpool", None, lambda x: F.max_pool2d(x, 4)),
        (1, "maxpool", (5, 7), lambda x: F.adaptive_max_pool2d(x, (5, 7))),
        (1, "bilinear", None,
         lambda x: F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)),
        (-1, "maxpool", None,
         lambda x: F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)),
    ],
)
def test_cell_input_resamples_once_without_projection(down, mode, size, expect) -> None:
    x = torch.randn(2, 4, 16, 16)
    node0 = CellInput(4, 4, down, mode)
    assert node0.project is None and not list(node0.parameters())
    assert torch.equal(node0(x, size), expect(x))


def test_cell_input_projects_at_the_lower_resolution() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 16, 16)
    down = CellInput(8, 4, 1).eval()
    assert torch.equal(down(x), down.project(F.max_pool2d(x, 2)))
    up = CellInput(8, 4, -2).eval()
    expect = F.interpolate(up.project(x), size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.equal(up(x), expect)
    assert not CellInput(8, 4, affine=False).project[1].affine
    assert CellInput(8, 4, affine=True).project[1].affine
    with pytest.raises(ValueError, match="resample_down"):
        CellInput(8, 4, 1, "nearest")


def test_state_dict_keys_and_legacy_projection_keys() -> None:
    torch.manual_seed(0)
    cell = SkipCell(8, 4, 2, OPS, down=1)
    keys = set(cell.state_dict())
    assert {"node_alphas.0", "node_alphas.1", "ssb_alpha", "csb_alpha"} <= keys
    assert {"node0.project.0.weight", "node0.project.1.running_mean"} <= keys
    assert cell.out_channels == 8
    # checkpoints written before CellInput stored the projection as `project.*`
    legacy = {k.replace("node0.project.", "project."): v for k, v in cell.state_dict().items()}
    assert "project.0.weight" in legacy
    fresh = SkipCell(8, 4, 2, OPS, down=1)
    fresh.load_state_dict(legacy)  # strict
    for key, value in cell.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_node_weights_sum_to_one_per_node() -> None:
    cell = SkipCell(4, 4, 3, OPS)
    weights = cell.group_weights()
    for i in (1, 2, 3):
        w = weights[f"node{i}"]
        assert w.shape == (i, len(OPS))
        assert torch.allclose(w.sum(), torch.tensor(1.0))
    assert [a.shape for a in cell.node_alphas] == [(1, 10), (2, 10), (3, 10)]
    assert cell.ssb_alpha.shape == cell.csb_alpha.shape == (3,)
    assert all(a.abs().max() < 0.01 for a in cell.arch_parameters())  # DARTS 1e-3·randn


def test_block_gating_softmax_sums_to_one_sigmoid_is_independent() -> None:
    cell = SkipCell(4, 4, 3, OPS, ssb_gating="softmax", csb_gating="sigmoid")
    with torch.no_grad():
        cell.ssb_alpha.copy_(torch.tensor([1.0, 2.0, 3.0]))
        cell.csb_alpha.copy_(torch.tensor([1.0, 2.0, 3.0]))
    w = cell.group_weights()
    assert torch.allclose(w["ssb"].sum(), torch.tensor(1.0))
    assert torch.allclose(w["csb"], torch.sigmoid(torch.tensor([1.0, 2.0, 3.0])))
    with torch.no_grad():
        cell.csb_alpha[0] = -5.0
        cell.ssb_alpha[0] = -5.0
    w2 = cell.group_weights()
    assert torch.equal(w2["csb"][1:], w["csb"][1:])  # other gates untouched
    assert not torch.equal(w2["ssb"][1:], w["ssb"][1:])  # softmax renormalises


def test_gradients_reach_every_alpha_and_weight() -> None:
    torch.manual_seed(0)
    cell = SkipCell(8, 4, 3, OPS, down=1)
    out = cell(torch.randn(2, 8, 16, 16))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in cell.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    zero_col = OPS.index("zero")
    assert all(a.grad[:, zero_col].abs().min() > 0 for a in cell.node_alphas)


def test_zero_is_never_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self, x):
        raise AssertionError("zero op was computed")

    monkeypatch.setattr(Zero, "forward", boom)
    SkipCell(4, 4, 3, OPS)(torch.randn(1, 4, 8, 8))


def test_parameter_free_ops_run_once_per_node() -> None:
    cell = SkipCell(4, 4, 3, OPS)
    calls = {name: 0 for name in cell.shared_ops}

    def counter(name):
        def hook(module, inputs, output):
            calls[name] += 1

        return hook

    for name, module in cell.shared_ops.items():
        module.register_forward_hook(counter(name))
    cell(torch.randn(1, 4, 8, 8))
    assert set(calls) == {"identity", "max_pool_3x3", "avg_pool_3x3"}
    assert all(n == 3 for n in calls.values())  # nodes 0, 1, 2 have outgoing edges


def test_alpha_rows_and_softmax_groups() -> None:
    cell = SkipCell(4, 4, 2, OPS, ssb_gating="softmax", csb_gating="sigmoid")
    rows = cell.alpha_rows("skip_1_1")
    assert len(rows) == (1 + 2) * len(OPS) + 2 + 2
    assert {r["group"] for r in rows} == {"node1", "node2", "ssb", "csb"}
    node2 = [r for r in rows if r["group"] == "node2"]
    assert {r["input"] for r in node2} == {"n0", "n1"}
    assert sum(r["weight"] for r in node2) == pytest.approx(1.0)
    ssb = [r for r in rows if r["group"] == "ssb"]
    assert [r["input"] for r in ssb] == ["n1", "n2"] and {r["op"] for r in ssb} == {"-"}
    assert len(cell.softmax_groups(include_blocks=True)) == 3  # node1, node2, ssb
    assert len(cell.softmax_groups(include_blocks=False)) == 2


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        SkipCell(4, 4, 0, OPS)
    with pytest.raises(ValueError):
        SkipCell(4, 4, 1, ["zero"])
    with pytest.raises(ValueError):
        SkipCell(4, 4, 1, OPS, ssb_gating="relu")
    with pytest.raises(ValueError, match="resample_down"):
        SkipCell(4, 4, 1, OPS, resample_down="nearest")
    assert torch.allclose(node_softmax(torch.zeros(2, 5)), torch.full((2, 5), 0.1))


def test_channels_last_input() -> None:
    torch.manual_seed(0)
    cell = SkipCell(8, 4, 2, OPS, down=1).eval()
    x = torch.randn(2, 8, 16, 16)
    a = cell(x)
    b = cell(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-5)
    assert F.mse_loss(a, b) < 1e-10
