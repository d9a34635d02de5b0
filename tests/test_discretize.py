"""Discretizer: each policy on hand-set α gives the hand-derived genotype; pruning; fallback;
reading α from a run folder (checkpoint and alphas.csv); the `nas discretize` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nas.cli import main
from nas.discretize import (FALLBACK_NOTE, POLICIES, DiscretizeWarning, alpha_state_from_checkpoint,
                            alpha_state_from_state_dict, cell_weights, discretize, discretize_run)
from nas.errors import UserError
from nas.genotype import Block, Edge, load_genotype
from nas.loop import ALPHAS_COLUMNS, CsvLog
from nas.runs import atomic_torch_save, write_yaml
from nas.search_space import SearchSpace, load_search_space
from nas.supernet import Supernet

OPS = ["zero", "identity", "max_pool_3x3", "sep_conv_3x3"]
ZERO, ID, MAX, SEP = range(4)


def space(nodes: int = 3, ops: list[str] = OPS) -> SearchSpace:
    return SearchSpace(name="handmade", in_channels=3, widths=[4, 4, 8, 8, 8], nodes=nodes, node_width=4,
                       ops=list(ops), skips=[(1, 1)], head_channels=1)


def log(p: list) -> torch.Tensor:
    """α whose softmax is exactly the (normalised) probabilities p."""
    return torch.tensor(p, dtype=torch.float64).log()


def logit(g: list) -> torch.Tensor:
    """α whose sigmoid is g."""
    g = torch.tensor(g, dtype=torch.float64)
    return (g / (1 - g)).log()


#           zero  identity max   sep
NODE1 = [[0.50, 0.10, 0.15, 0.25]]
NODE2 = [[0.05, 0.30, 0.05, 0.10],   # from n0
         [0.12, 0.05, 0.05, 0.28]]   # from n1
NODE3 = [[0.10, 0.05, 0.05, 0.05],
         [0.10, 0.20, 0.05, 0.05],
         [0.03, 0.05, 0.05, 0.22]]
HAND = {"skip_1_1": {"node1": log(NODE1), "node2": log(NODE2), "node3": log(NODE3),
                     "ssb": log([0.40, 0.35, 0.25]),       # mean 1/3: nodes 1, 2
                     "csb": logit([0.9, 0.2, 0.6])}}       # mean 0.567: nodes 1, 3


def edges_of(g, cell="skip_1_1") -> list[tuple]:
    return [(e.to, e.from_, e.op, e.weight) for e in g.cells[cell].edges]


def test_thesis_policy_top_k_pairs_never_zero() -> None:
    g = discretize(HAND, space(), "thesis", k=2)
    assert edges_of(g) == [(1, 0, "max_pool_3x3", 0.15), (1, 0, "sep_conv_3x3", 0.25),
                           (2, 0, "identity", 0.30), (2, 1, "sep_conv_3x3", 0.28),
                           (3, 1, "identity", 0.20), (3, 2, "sep_conv_3x3", 0.22)]
    cell = g.cells["skip_1_1"]
    assert cell.ssb == Block("softmax", [1, 2], [0.4 / 0.75, 0.35 / 0.75])  # renormalised
    assert cell.csb == Block("sigmoid", [1, 3], [0.9, 0.6])                  # gate values
    assert g.source == {"policy": "thesis", "k": 2}
    assert g.backbone.widths == [4, 4, 8, 8, 8] and g.search_space == "handmade"


def test_darts_policy_top2_edges_best_op() -> None:
    g = discretize(HAND, space(), "darts")
    # node 3: n0's best non-zero op is a three-way tie at 0.05, but n1 (0.20) and n2 (0.22) win
    assert edges_of(g) == [(1, 0, "sep_conv_3x3", 0.25),
                           (2, 0, "identity", 0.30), (2, 1, "sep_conv_3x3", 0.28),
                           (3, 1, "identity", 0.20), (3, 2, "sep_conv_3x3", 0.22)]
    assert g.source == {"policy": "darts"}


def test_threshold_policy_cumulative_mass() -> None:
    g = discretize(HAND, space(), "threshold", threshold=0.6)
    # node 1: mass .5, need > .3: .25 + .15; node 2: mass .83, need > .498: .30 + .28;
    # node 3: mass .75, need > .45: .22 + .20 + .05 (first of the 0.05 ties: n0 identity)
    assert edges_of(g) == [(1, 0, "max_pool_3x3", 0.15), (1, 0, "sep_conv_3x3", 0.25),
                           (2, 0, "identity", 0.30), (2, 1, "sep_conv_3x3", 0.28),
                           (3, 0, "identity", 0.05), (3, 1, "identity", 0.20), (3, 2, "sep_conv_3x3", 0.22)]
    assert g.source == {"policy": "threshold", "threshold": 0.6}


def test_pruning_drops_nodes_that_reach_no_block() -> None:
    alphas = {"skip_1_1": dict(HAND["skip_1_1"], ssb=log([0.2, 0.2, 0.6]), csb=logit([0.1, 0.1, 0.8]))}
    g = discretize(alphas, space(), "thesis", k=1)
    # k=1 keeps 0->1 sep, 0->2 identity, 2->3 sep; only node 3 is read: node 1 (and 0->1) go
    assert edges_of(g) == [(2, 0, "identity", 0.30), (3, 2, "sep_conv_3x3", 0.22)]
    assert g.cells["skip_1_1"].ssb == Block("softmax", [3], [1.0])
    assert g.cells["skip_1_1"].csb == Block("sigmoid", [3], [0.8])


def test_block_ties_keep_every_node() -> None:
    """Equal α give equal weights: all nodes are at the mean and all are kept."""
    alphas = {"skip_1_1": dict(HAND["skip_1_1"], ssb=torch.zeros(3), csb=torch.full((3,), 0.3))}
    cell = discretize(alphas, space()).cells["skip_1_1"]
    assert cell.ssb.nodes == [1, 2, 3] and cell.csb.nodes == [1, 2, 3]
    assert cell.ssb.weights == [0.333333] * 3


@pytest.fixture
def first_node_starves(monkeypatch):
    """A user policy that keeps nothing for node 1 and identity from every input elsewhere."""
    def policy(w, ops, k, threshold):
        return [] if w.shape[0] == 1 else [(j, ops.index("identity")) for j in range(w.shape[0])]
    monkeypatch.setitem(POLICIES, "starve", policy)


def test_edges_from_unfed_nodes_are_pruned(first_node_starves) -> None:
    alphas = {"skip_1_1": dict(HAND["skip_1_1"], ssb=log([0.1, 0.8, 0.1]), csb=logit([0.1, 0.9, 0.1]))}
    g = discretize(alphas, space(), "starve")
    assert edges_of(g) == [(2, 0, "identity", 0.30)]  # 1->2 went with node 1, node 3 reaches nothing


def test_fallback_when_nothing_survives(first_node_starves, tmp_path: Path) -> None:
    alphas = {"skip_1_1": dict(HAND["skip_1_1"], ssb=log([0.8, 0.1, 0.1]), csb=logit([0.9, 0.1, 0.1]))}
    with pytest.warns(DiscretizeWarning, match="skip_1_1: no edge survived"):
        g = discretize(alphas, space(), "starve")
    cell = g.cells["skip_1_1"]
    assert cell.edges == [Edge(1, 0, "identity", 1.0)]
    assert cell.ssb.nodes == [1] and cell.csb.nodes == [1] and cell.notes == [FALLBACK_NOTE]
    from nas.genotype import save_genotype

    path = save_genotype(g, tmp_path / "g.yaml")
    assert "note:" in path.read_text()
    assert load_genotype(path).cells["skip_1_1"].notes == [FALLBACK_NOTE]


def test_bad_arguments() -> None:
    with pytest.raises(UserError, match="policy 'best' unknown"):
        discretize(HAND, space(), "best")
    with pytest.raises(UserError, match="k must be an integer >= 1"):
        discretize(HAND, space(), k=0)
    with pytest.raises(UserError, match=r"threshold must be a number in \(0, 1\]"):
        discretize(HAND, space(), "threshold", threshold=1.5)
    with pytest.raises(UserError, match=r"skip_1_1\.node2: shape \(1, 4\)"):
        discretize({"skip_1_1": dict(HAND["skip_1_1"], node2=log(NODE1))}, space())
    with pytest.raises(UserError, match="no α for cell skip_1_1"):
        discretize({}, space())


def test_weights_are_the_supernets(tiny_supernet_alphas) -> None:
    net, state = tiny_supernet_alphas
    for name, cell in net.cells.items():
        ours = cell_weights(state[name], net.space)
        for group, w in cell.group_weights().items():
            torch.testing.assert_close(ours[group].float(), w.detach())


# ----------------------------------------------------------------------------- run folders
def fake_search_run(run_dir: Path, epochs: int = 2) -> tuple[Supernet, list[dict]]:
    """A run folder as `nas search` writes it (search_space.yaml, alphas.csv, checkpoints/last.pt),
    through the same writers, with α changing every epoch; returns the net and α per epoch."""
    torch.manual_seed(1)
    net = Supernet("tiny")
    write_yaml(run_dir / "search_space.yaml", net.space.to_dict())
    log_ = CsvLog(run_dir / "alphas.csv", ALPHAS_COLUMNS)
    states = []
    for epoch in range(1, epochs + 1):
        with torch.no_grad():
            for p in net.arch_parameters():
                p.normal_()
        for step_in_epoch in (1, 2):  # the end of the epoch is the second logged step
            log_.write({"epoch": round(epoch - 1 + step_in_epoch / 2, 6), "step": 2 * (epoch - 1) + step_in_epoch,
                        **r} for r in net.alpha_rows())
        states.append(alpha_state_from_state_dict(net.state_dict(), "x"))
    atomic_torch_save({"model": net.state_dict(), "loop": {"epoch": epochs, "step": 2 * epochs, "step_in_epoch": 0},
                       "search_space": net.space.to_dict()}, run_dir / "checkpoints" / "last.pt")
    return net, states


def test_run_folder_checkpoint_and_csv(tmp_path: Path) -> None:
    run = tmp_path / "run"
    net, states = fake_search_run(run)
    found = alpha_state_from_checkpoint(run)
    assert found.epoch == 2 and found.step == 4 and found.space == net.space
    for cell, groups in states[-1].items():
        for group, t in groups.items():
            assert torch.equal(found.alpha_state[cell][group], t)

    space_ = load_search_space("tiny")
    last = discretize_run(run)
    assert last == discretize(states[-1], space_, source={"run": str(run), "epoch": 2, "step": 4})
    assert discretize_run(run, epoch=2) == last  # that epoch is the checkpoint's
    first = discretize_run(run, "darts", epoch=1)  # alphas.csv, full precision: same genotype
    assert first == discretize(states[0], space_, "darts", source={"run": str(run), "epoch": 1, "step": 2})
    assert first != discretize_run(run, "darts")
    with pytest.raises(UserError, match=r"alphas.csv: no α logged at the end of epoch 5 \(epochs logged: 1, 2\)"):
        discretize_run(run, epoch=5)


def test_missing_run_and_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nowhere: run folder not found"):
        discretize_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty/checkpoints/last.pt: checkpoint not found"):
        discretize_run(tmp_path / "empty")


def test_cli_writes_genotype_and_prints_table(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    fake_search_run(run)
    assert main(["discretize", str(run)]) == 0
    out = capsys.readouterr().out
    assert "skip_1_1" in out and "SSB" in out and "genotype.yaml" in out
    g = load_genotype(run / "genotype.yaml")
    assert len(g.source.pop("digest")) == 16  # by which a later nas discretize knows its own file
    assert g.source == {"run": str(run), "epoch": 2, "step": 4, "policy": "thesis", "k": 3}
    assert all(len(c.node_edges(n)) in (0, 3) for c in g.cells.values() for n in (1, 2))  # k=3, or pruned

    assert main(["discretize", str(run), "--policy", "threshold", "--threshold", "0.5",
                 "--from-epoch", "1", "-o", str(tmp_path / "t.yaml")]) == 0
    assert load_genotype(tmp_path / "t.yaml").source["epoch"] == 1

    # defaults from the run's config (discretize.*), command line wins
    (run / "config.yaml").write_text(yaml.safe_dump({"discretize": {"policy": "darts", "k": 1, "threshold": 0.9}}))
    assert main(["discretize", str(run), "-o", str(tmp_path / "d.yaml")]) == 0
    assert load_genotype(tmp_path / "d.yaml").source["policy"] == "darts"


def test_cli_errors_name_the_path(tmp_path: Path, capsys) -> None:
    assert main(["discretize", str(tmp_path / "missing")]) == 2
    assert f"error: {tmp_path / 'missing'}: run folder not found" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    assert main(["discretize", str(tmp_path / "run")]) == 2
    assert "checkpoints/last.pt: checkpoint not found" in capsys.readouterr().err


def test_random_genotypes_are_reproducible_uniform_and_neutral() -> None:
    from nas.discretize import random_genotype

    space_ = load_search_space("tiny")  # node 1 of a cell: 9 non-zero (input, op) pairs, k = 3
    assert random_genotype(space_, 5) == random_genotype(space_, 5)
    assert random_genotype(space_, 5) != random_genotype(space_, 6)
    counts = {op: 0 for op in space_.ops if op != "zero"}
    n = 300
    for seed in range(n):
        g = random_genotype(space_, seed, source={"space": "tiny"})
        g.validate()
        assert g.source == {"space": "tiny", "random": True, "seed": seed, "policy": "thesis", "k": 3}
        for cell in g.cells.values():
            for e in cell.edges:
                assert e.weight == pytest.approx(1 / (e.to * len(space_.ops)), abs=1e-6)  # as all-equal α
            assert cell.ssb.weights == [pytest.approx(1 / len(cell.ssb.nodes))] * len(cell.ssb.nodes)
            assert set(cell.csb.weights) <= {0.5}
        for e in g.cells["skip_1_1"].edges:
            if e.to == 1:
                counts[e.op] += 1
    # each of the 9 ops of node 1 is picked with probability 3/9 per sample (binomial, 5 sigma)
    p = 3 / 9
    for op, c in counts.items():
        assert abs(c - n * p) < 5 * (n * p * (1 - p)) ** 0.5, (op, c)


def test_cli_random_genotype_of_a_run_or_a_space(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    fake_search_run(run)
    assert main(["discretize", str(run), "--random", "--seed", "3", "--k", "2"]) == 0
    g = load_genotype(run / "genotype-random3.yaml")
    digest = g.source.pop("digest")
    assert g.source == {"run": str(run), "random": True, "seed": 3, "policy": "thesis", "k": 2}
    assert isinstance(digest, str) and len(digest) == 16
    assert main(["discretize", "--random", "--space", "tiny", "--seed", "3", "--k", "2",
                 "-o", str(tmp_path / "r.yaml")]) == 0
    assert load_genotype(tmp_path / "r.yaml").cells == g.cells  # same space, seed and k: same sample
    assert main(["discretize", "--random", "--space", "tiny", "--seed", "4", "--k", "2",  # its own file:
                 "-o", str(tmp_path / "r.yaml")]) == 0                                     # replaced
    capsys.readouterr()
    assert main(["discretize", "--random", "--space", "tiny"]) == 2
    assert "needs -o FILE" in capsys.readouterr().err
    assert main(["discretize", str(run), "--random", "--from-epoch", "1"]) == 2


def test_cli_keeps_a_hand_edited_genotype_unless_forced(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    fake_search_run(run)
    target = run / "genotype.yaml"
    assert main(["discretize", str(run)]) == 0
    assert main(["discretize", str(run), "--k", "2"]) == 0  # an unedited result may be replaced
    assert load_genotype(target).source["k"] == 2
    written = target.read_text()
    for edited in (written.replace("weight: 0.", "weight: 0.9", 1), "# my notes\n" + written):
        target.write_text(edited)
        capsys.readouterr()
        assert main(["discretize", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not an unedited discretization" in err and "--force" in err
        assert target.read_text() == edited  # nothing lost
    assert main(["discretize", str(run), "--force"]) == 0
    assert load_genotype(target).source["k"] == 3
    # its own file is recognised by its digest even when the run changed since (e.g. resumed)
    (run / "checkpoints" / "last.pt").unlink()
    assert main(["discretize", str(run), "--from-epoch", "1"]) == 0
    assert load_genotype(target).source["epoch"] == 1


def test_cli_prints_the_search_signal_and_warns_when_the_initialisation_decided(tmp_path, tiny_overrides, capsys):
    from nas.config import load_config
    from nas.search import search

    old = search(load_config(None, tiny_overrides + ["train.epochs=1", "search.arch_optimizer=radam",
                                                     "search.arch_lr=0.0003", "search.beta_decay.mode=gradient"]),
                 tmp_path / "old")
    capsys.readouterr()
    assert main(["discretize", str(old)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "search signal" in out and "kept pairs shared with the initial α's choice 100%" in out
    assert "decided by the initialisation" in out

    new = search(load_config(None, tiny_overrides + ["train.epochs=1"]), tmp_path / "new")  # shipped defaults
    capsys.readouterr()
    assert main(["discretize", str(new)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "search signal" in out and "decided by the initialisation" not in out
