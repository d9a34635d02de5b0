"""Discrete network of a genotype: hand-counted parameters, forward/backward, end to end from a
freshly built tiny supernet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas.backbone import UNetBackbone
from nas.cell import CellInput
from nas.discretize import discretize
from nas.errors import UserError
from nas.evaluation import count_parameters
from nas.genotype import Backbone, Block, CellGenotype, Edge, Genotype, load_genotype, save_genotype
from nas.models import build_model, list_models
from nas.models.genotype_net import GenotypeNet


def double_conv(c_in: int, c_out: int) -> int:
    """(conv3×3 no bias → BN) × 2."""
    return 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out


def handmade(csb: bool = True) -> Genotype:
    """One live cell (skip_1_1: one sep_conv_3x3 edge 0→1, node 1 in SSB and CSB) and one cell
    that kept no output (skip_2_2), which the network leaves out."""
    cells = {
        "skip_1_1": CellGenotype(edges=[Edge(1, 0, "sep_conv_3x3", 0.7)],
                                 ssb=Block("softmax", [1], [1.0]),
                                 csb=Block("sigmoid", [1] if csb else [], [0.8] if csb else [])),
        "skip_2_2": CellGenotype(edges=[], ssb=Block("softmax", [], []), csb=Block("sigmoid", [], [])),
    }
    backbone = Backbone(in_channels=3, widths=[2, 4, 4, 8, 8], nodes=2, node_width=4,
                        resample_down="maxpool", head_channels=1)
    return Genotype(search_space="handmade", backbone=backbone, source={}, cells=cells)


@pytest.mark.parametrize("m", [1.0, 2.0])
@pytest.mark.parametrize("csb", [True, False])
def test_parameter_count_by_hand(m: float, csb: bool) -> None:
    net = GenotypeNet(handmade(csb), width_multiplier=m)
    w = [int(x * m) for x in (2, 4, 4, 8, 8)]
    c = int(4 * m)
    out_c = 2 * c if csb else c                      # SSB (+ CSB) of skip_1_1
    encoder = double_conv(3, w[0]) + sum(double_conv(a, b) for a, b in zip(w, w[1:]))
    project = w[0] * c + 2 * c                       # 1×1 conv + affine BN (w[0] != c)
    sep_conv_3x3 = 9 * c + c * c + 2 * c             # depthwise + pointwise + affine BN
    csb_conv = c * c if csb else 0                   # one kept node × node width → node width
    decoder = (double_conv(w[4], w[3]) + double_conv(w[3], w[2]) + double_conv(w[2], w[1])
               + double_conv(out_c + w[1], w[0]))    # level 2 has no cell: lower path only
    head = w[0] * 1 + 1
    assert count_parameters(net) == encoder + project + sep_conv_3x3 + csb_conv + decoder + head
    parts = net.parameter_breakdown()
    assert parts == {"encoder": encoder, "decoder": decoder, "head": head, "skip_1_1.project": project,
                     "skip_1_1.ops": sep_conv_3x3, "skip_1_1.csb": csb_conv}
    assert sum(parts.values()) == count_parameters(net)
    assert list(net.cells) == ["skip_1_1"]


@pytest.mark.parametrize("size", [32, 64])
def test_forward_backward(size: int) -> None:
    torch.manual_seed(0)
    net = GenotypeNet(handmade(), width_multiplier=2.0, out_channels=2)
    x = torch.rand(2, 3, size, size)
    y = net(x)
    assert y.shape == (2, 2, size, size)
    y.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())  # every built op is used
    cell = net.cells["skip_1_1"]
    assert cell.edge_weights.tolist() == [1.0]  # renormalised per node
    assert {n for n, _ in net.named_buffers()} >= {"cells.skip_1_1.edge_weights", "cells.skip_1_1.ssb_weights"}
    net.eval()
    with torch.no_grad():
        assert torch.isfinite(net(x)).all()


def test_shares_the_supernet_backbone_and_cell_input() -> None:
    net = GenotypeNet(handmade(), width_multiplier=2.0)
    assert isinstance(net, UNetBackbone)
    cell = net.cells["skip_1_1"]
    assert isinstance(cell.node0, CellInput) and cell.node0.project[1].affine
    assert [n for n, _ in net.named_children()] == ["encoder", "cells", "decoder", "head"]
    assert net.widths == [4, 8, 8, 16, 16] and net.in_channels == 3 and net.node_width == 8


def test_loads_checkpoints_with_legacy_projection_keys() -> None:
    """Checkpoints written before CellInput held node 0's projection at ``<cell>.project.*``."""
    torch.manual_seed(0)
    net = GenotypeNet(handmade(), width_multiplier=1.0)
    state = net.state_dict()
    assert "cells.skip_1_1.node0.project.0.weight" in state
    legacy = {k.replace(".node0.project.", ".project."): v for k, v in state.items()}
    assert "cells.skip_1_1.project.1.running_var" in legacy
    fresh = GenotypeNet(handmade(), width_multiplier=1.0)
    fresh.load_state_dict(legacy)  # strict
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_bad_input_and_arguments() -> None:
    net = GenotypeNet(handmade(), width_multiplier=1.0)
    with pytest.raises(UserError, match="divisible by 16"):
        net(torch.rand(1, 3, 24, 24))
    with pytest.raises(UserError, match="width_multiplier"):
        GenotypeNet(handmade(), width_multiplier=0)
    bad = handmade()
    bad.cells["skip_1_1"].edges[0].op = "nope"
    with pytest.raises(UserError, match=r"cells\.skip_1_1\.edges\[0\]\.op: unknown op 'nope'"):
        GenotypeNet(bad)


def test_end_to_end_from_tiny_supernet(tmp_path: Path, tiny_supernet_alphas) -> None:
    """Supernet α → discretize → genotype.yaml → registry → train step, with every policy."""
    supernet, state = tiny_supernet_alphas
    assert "genotype" in list_models()
    for policy in ("thesis", "darts", "threshold"):
        g = discretize(state, supernet.space, policy)
        path = save_genotype(g, tmp_path / f"{policy}.yaml")
        net = build_model("genotype", genotype=str(path), width_multiplier=2.0)
        assert net.genotype == load_genotype(path)
        assert set(net.cells) == set(g.cells)  # every tiny cell keeps an output
        built_ops = sum(len(c.ops) for c in net.cells.values())
        assert built_ops == sum(len(c.live()[0]) for c in g.cells.values())
        x, target = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32).round()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), target)
        loss.backward()
        assert torch.isfinite(loss)
    # the retrain loop rebuilds from the dict form stored in checkpoints
    again = build_model("genotype", genotype=Genotype.from_dict(g.to_dict()), width_multiplier=2.0)
    again.load_state_dict(net.state_dict())


def test_cell_output_matches_a_hand_computation_with_its_edges_and_weights() -> None:
    """Edges from node 1 read node 1 (not node 0); edge, SSB and CSB weights are applied."""
    import torch.nn.functional as F

    from nas.models.genotype_net import GenotypeCell

    cell = CellGenotype(
        edges=[Edge(1, 0, "identity", 0.2), Edge(1, 0, "avg_pool_3x3", 0.6),     # node 1: 1/4, 3/4
               Edge(2, 0, "identity", 0.1), Edge(2, 1, "max_pool_3x3", 0.3)],   # node 2: 1/4, 3/4 of pool(n1)
        ssb=Block("softmax", [1, 2], [0.3, 0.7]), csb=Block("sigmoid", [2], [0.4]))
    net = GenotypeCell(cell, c_in=4, node_width=4, down=0, resample_down="maxpool").eval()
    assert net.node0.project is None  # c_in == node width: node 0 is the input itself
    x = torch.randn(2, 4, 8, 8)
    avg = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    n1 = 0.25 * x + 0.75 * avg
    n2 = 0.25 * x + 0.75 * F.max_pool2d(n1, 3, stride=1, padding=1)
    ssb = 0.3 * n1 + 0.7 * n2
    csb = F.conv2d(0.4 * n2, net.csb_conv.weight)
    torch.testing.assert_close(net(x), torch.cat([ssb, csb], 1))


def test_absent_cells_are_left_out(tmp_path: Path) -> None:
    """`skip_<e>_<d>: absent` in a file builds the same network as leaving the cell out."""
    import yaml
    from test_genotype import tiny_genotype_dict

    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(tiny_genotype_dict(), sort_keys=False))
    assert "skip_2_2: absent" in path.read_text()
    torch.manual_seed(0)
    from_file = GenotypeNet(str(path), width_multiplier=1.0)
    assert sorted(from_file.cells) == ["skip_1_1", "skip_3_3"]
    genotype = load_genotype(path)
    genotype.search_space = "unknown_space"  # no space to complete against: the cells may be left out
    del genotype.cells["skip_2_2"], genotype.cells["skip_4_4"]
    torch.manual_seed(0)
    in_memory = GenotypeNet(genotype, width_multiplier=1.0)
    assert count_parameters(in_memory) == count_parameters(from_file)
    x = torch.randn(2, 3, 32, 32)
    from_file.eval(), in_memory.eval()
    assert torch.equal(from_file(x), in_memory(x))
    assert from_file(x).shape == (2, 1, 32, 32)
