"""One-shot scores (nas.oneshot): cell masks, BatchNorm re-estimation, scores of a tiny search run,
the perturbation discretize policy and `nas rank`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from nas.cell import CellMask
from nas.cli import main
from nas.discretize import cell_weights, check_policy, discretize, random_genotype
from nas.errors import UserError
from nas.genotype import CellGenotype, load_genotype
from nas.oneshot import (OneShotRun, alpha_score, genotype_masks, oneshot_score, perturbation_pairs,
                         reestimate_batch_norm, restricted)
from nas.search_space import load_search_space
from nas.supernet import Supernet


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A 2-epoch search of the `tiny` space at 32 px (6 validation images)."""
    from conftest import TINY

    from nas.config import load_config
    from nas.search import search

    return search(load_config(None, TINY), tmp_path_factory.mktemp("oneshot") / "run")


def _net_and_input() -> tuple[Supernet, torch.Tensor]:
    torch.manual_seed(0)
    net = Supernet("tiny").eval()
    with torch.no_grad():
        for p in net.arch_parameters():
            p.normal_()
    return net, torch.rand(2, 3, 32, 32)


# ----------------------------------------------------------------------------- masks
def test_mask_removes_exactly_the_pair_and_renormalises_the_node() -> None:
    net, x = _net_and_input()
    cell = net.cells["skip_1_1"]
    feat = net.encoder[0](x)
    space = net.space
    with torch.no_grad():
        plain = cell(feat)
        full = CellMask.full(space.nodes, len(space.ops))
        with restricted(net, {"skip_1_1": full}):
            assert torch.equal(cell(feat), plain)  # everything kept: the very same computation
        sep = space.ops.index("sep_conv_3x3")
        full.nodes[1][0, sep] = False  # node 2 loses (n0, sep_conv_3x3)
        full.ssb[0] = False            # the sum block loses node 1
        with restricted(net, {"skip_1_1": full}):
            masked = cell(feat)
        assert cell.mask is None  # restored after the block
        # by hand: the same softmax renormalised over what is left = that α at -inf (here -1e4)
        saved = [cell.node_alphas[1].clone(), cell.ssb_alpha.clone()]
        cell.node_alphas[1][0, sep] = -1e4
        cell.ssb_alpha[0] = -1e4
        manual = cell(feat)
        cell.node_alphas[1].copy_(saved[0])
        cell.ssb_alpha.copy_(saved[1])
    assert not torch.allclose(masked, plain, atol=1e-4)
    torch.testing.assert_close(masked, manual, rtol=1e-5, atol=1e-6)


def test_absent_cell_outputs_zeros_and_masks_follow_the_live_genotype() -> None:
    net, x = _net_and_input()
    space = net.space
    g = random_genotype(space, 3)
    g.cells["skip_2_2"] = CellGenotype.absent()
    masks = genotype_masks(g, space)
    assert not any(t.any() for t in (*masks["skip_2_2"].nodes, masks["skip_2_2"].ssb, masks["skip_2_2"].csb))
    for name, cell in g.cells.items():
        edges, ssb, csb = cell.live()
        assert sum(int(t.sum()) for t in masks[name].nodes) == len(edges)
        assert masks[name].ssb.nonzero().flatten().add(1).tolist() == sorted(ssb)
        assert masks[name].csb.nonzero().flatten().add(1).tolist() == sorted(csb)
    feat = net.encoder[0](x)
    feat = net.encoder[1](torch.nn.functional.max_pool2d(feat, 2))
    with torch.no_grad(), restricted(net, masks):
        out = net.cells["skip_2_2"](feat)
    assert out.shape[1] == net.cells["skip_2_2"].out_channels and not out.any()


def test_batch_norm_reestimation_is_the_plain_average() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    batches = [torch.randn(2, 3, 8, 8) * (i + 1) + i for i in range(3)]
    before = model[1].running_mean.clone()
    with torch.no_grad():
        means = [model[0](b).mean(dim=(0, 2, 3)) for b in batches]
    assert reestimate_batch_norm(model, batches, lambda t: t) == 3
    bn = model[1]
    assert not torch.equal(bn.running_mean, before)
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0))
    assert int(bn.num_batches_tracked) == 3 and bn.momentum == 0.1 and not model.training


# ----------------------------------------------------------------------------- a search run
def test_oneshot_score_is_deterministic_and_alpha_score_is_the_mean_log_weight(search_run: Path) -> None:
    assert main(["discretize", str(search_run)]) == 0
    path = search_run / "genotype.yaml"
    a = oneshot_score(search_run, path, bn_batches=2, threads=1)
    b = oneshot_score(search_run, load_genotype(path), bn_batches=2, threads=1)
    assert a == b and a.n_images == 6 and 0.0 <= a.dice <= 1.0 and a.loss > 0

    g = load_genotype(path)
    state = torch.load(search_run / "checkpoints" / "last.pt", weights_only=False)["model"]
    space = load_search_space("tiny")
    logs = []
    for i, (name, cell) in enumerate(g.cells.items()):
        alphas = {f"node{n}": state[f"cells.{name}.node_alphas.{n - 1}"] for n in (1, 2)}
        alphas |= {"ssb": state[f"cells.{name}.ssb_alpha"], "csb": state[f"cells.{name}.csb_alpha"]}
        w = cell_weights(alphas, space)
        logs += [math.log(float(w[f"node{e.to}"][e.from_, space.ops.index(e.op)])) for e in cell.live()[0]]
    assert alpha_score(search_run, path) == pytest.approx(sum(logs) / len(logs))

    run = OneShotRun(search_run, bn_batches=2, threads=1)
    assert run.score(g) == a
    bn = run.model.encoder[0][1]  # re-estimated for the genotype: 2 batches, not the search's statistics
    assert int(bn.num_batches_tracked) == 2 and not torch.equal(bn.running_mean, state["encoder.0.1.running_mean"])


def test_perturbation_keeps_the_pairs_whose_removal_hurts_most(search_run: Path) -> None:
    run = OneShotRun(search_run, bn_batches=1, val_images=2, threads=1)
    space = run.space
    k = 2
    # the first node decided sees the full supernet: redo its evaluations independently
    masks = run.full_masks()
    run.reestimate(masks)
    keep = masks["skip_1_1"].nodes[0]
    dice = {}
    for o, op in enumerate(space.ops):
        if op != "zero":
            keep[0, o] = False
            dice[(0, o)] = run.evaluate(masks).dice
            keep[0, o] = True
    pairs = perturbation_pairs(run, k)
    kept = pairs["skip_1_1"][1]
    assert len(kept) == k and all(len(p) == k for cell in pairs.values() for p in cell.values())
    assert max(dice[p] for p in kept) <= min(d for p, d in dice.items() if p not in kept)
    assert len(set(dice.values())) > 1  # the removals are told apart at all


def test_cli_discretize_perturbation_writes_a_valid_genotype(search_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pt.yaml"
    assert main(["discretize", str(search_run), "--policy", "perturbation", "--k", "2", "--bn-batches", "1",
                 "--val-images", "1", "--set", "run.threads=1", "-o", str(out)]) == 0
    g = load_genotype(out)
    assert {k: g.source[k] for k in ("policy", "k", "bn_batches", "val_images")} == \
        {"policy": "perturbation", "k": 2, "bn_batches": 1, "val_images": 1}
    assert all(len(c.node_edges(n)) in (0, 2) for c in g.cells.values() for n in (1, 2))
    assert "search signal" in capsys.readouterr().out
    assert main(["discretize", str(search_run), "--policy", "perturbation", "--from-epoch", "1",
                 "-o", str(tmp_path / "x.yaml")]) == 2
    assert "drop --from-epoch" in capsys.readouterr().err


def test_perturbation_policy_is_accepted_and_its_random_control_has_k_pairs() -> None:
    check_policy("perturbation", 2, 0.9)
    space = load_search_space("tiny")
    g = random_genotype(space, 5, "perturbation", 2)
    assert g.source["policy"] == "perturbation" and g.source["k"] == 2
    assert g.cells == random_genotype(space, 5, "thesis", 2).cells  # the same structure as top-k
    with pytest.raises(UserError, match="needs the run's trained weights"):
        from nas.discretize import random_alpha_state

        discretize(random_alpha_state(space, 0), space, "perturbation", 2)


def test_cli_rank_writes_csv_and_prints_the_rank(search_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rank.csv"
    assert main(["rank", str(search_run), "--random", "2", "--seed", "4", "--bn-batches", "1",
                 "--val-images", "2", "--set", "run.threads=1", "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["genotype"] for r in rows) == ["random-4", "random-5", "searched"]
    dice = [float(r["oneshot_dice"]) for r in rows]
    assert dice == sorted(dice, reverse=True) and all(r["val_images"] == "2" for r in rows)
    searched = next(r for r in rows if r["genotype"] == "searched")
    assert f"searched genotype ranks {searched['rank']} of 3 by one-shot Dice" in text


def test_rank_and_oneshot_bad_inputs(search_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["rank", str(search_run), "--random", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --random must be >= 1 (random genotypes to rank the search's against), got 0"]
    assert main(["rank", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: run folder not found"
    (tmp_path / "empty").mkdir()
    assert main(["rank", str(tmp_path / "empty"), "--random", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("checkpoints/last.pt: checkpoint not found")
    assert not (tmp_path / "empty" / "rank.csv").exists()
    with pytest.raises(UserError, match="bn_batches must be an integer >= 1"):
        OneShotRun(search_run, bn_batches=0)
    other = random_genotype(load_search_space("unet_classic"), 0)
    with pytest.raises(UserError, match="backbone differs from the run's search space 'tiny'"):
        oneshot_score(search_run, other, bn_batches=1)
