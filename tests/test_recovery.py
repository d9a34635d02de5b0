"""Teacher recovery and seed agreement: the figures of the positive control, against hand counts."""

import math

import pytest
import torch

from nas.discretize import random_alpha_state, random_genotype
from nas.genotype import Block, CellGenotype, Edge, Genotype
from nas.recovery import (alpha_selection, cell_presence, chance_kappa, fleiss_kappa, genotype_selection,
                          pairwise_agreement, present_cells, teacher_recovery)
from nas.search_space import load_search_space


@pytest.fixture
def tiny_space():
    return load_search_space("tiny")  # 4 cells (skip_k_k), 2 nodes, 9 non-zero ops


def _teacher(space):
    """skip_1_1: n1 = max_pool(n0), n2 = identity(n1); skip_3_3: n1 = sep_conv_3x3(n0); others absent."""
    base = random_genotype(space, 0)
    cells = {name: CellGenotype.absent() for name in base.cells}
    cells["skip_1_1"] = CellGenotype(edges=[Edge(1, 0, "max_pool_3x3", 1.0), Edge(2, 1, "identity", 1.0)],
                                     ssb=Block("softmax", [2], [1.0]), csb=Block("sigmoid", [2], [1.0]))
    cells["skip_3_3"] = CellGenotype(edges=[Edge(1, 0, "sep_conv_3x3", 1.0)],
                                     ssb=Block("softmax", [1], [1.0]), csb=Block("sigmoid", [1], [1.0]))
    return Genotype(search_space=base.search_space, backbone=base.backbone, cells=cells, source={})


def test_teacher_share_counts_kept_teacher_edges_and_chance_is_k_over_pairs(tiny_space):
    teacher = _teacher(tiny_space)
    assert present_cells(teacher) == ["skip_1_1", "skip_3_3"]
    found = {key: set() for key in genotype_selection(teacher, tiny_space)}
    found[("skip_1_1", 1)] = {(0, "max_pool_3x3"), (0, "identity"), (0, "avg_pool_3x3")}  # hit
    found[("skip_1_1", 2)] = {(0, "identity"), (1, "sep_conv_3x3"), (1, "max_pool_3x3")}  # miss (from 0)
    found[("skip_3_3", 1)] = {(0, "sep_conv_3x3"), (0, "identity"), (0, "dil_conv_3x3")}  # hit
    rec = teacher_recovery(found, teacher, tiny_space)
    assert rec["edges"] == 3
    assert rec["share"] == pytest.approx(2 / 3)
    # chance per teacher edge: 3 kept of 9 pairs (node 1), 3 of 18 (node 2)
    assert rec["chance"] == pytest.approx((3 / 9 + 3 / 18 + 3 / 9) / 3)
    assert rec["cells"] == {"skip_1_1": 0.5, "skip_3_3": 1.0}
    assert rec["prior"] == 0.0  # the absent cells keep nothing here
    # by kind: the two edges from the cell input are both kept, the chained one (n2 <- n1) is not
    assert rec["kinds"]["cell input"] == {"hits": 2, "edges": 2, "chance": pytest.approx(3 / 9)}
    assert rec["kinds"]["chained"] == {"hits": 0, "edges": 1, "chance": pytest.approx(3 / 18)}
    found[("skip_2_2", 1)] = {(0, "max_pool_3x3")}  # one of the 2 absent cells keeps the first teacher pair
    assert teacher_recovery(found, teacher, tiny_space)["prior"] == pytest.approx((0.5 + 0 + 0) / 3)


def test_the_teacher_itself_recovers_everything(tiny_space):
    teacher = _teacher(tiny_space)
    assert teacher_recovery(genotype_selection(teacher, tiny_space), teacher, tiny_space)["share"] == 1.0


def test_cell_presence_finds_the_decided_cells(tiny_space):
    teacher = _teacher(tiny_space)
    state = random_alpha_state(tiny_space, 0)
    state = {c: {g: t * 1e-3 for g, t in groups.items()} for c, groups in state.items()}
    for cell in ("skip_1_1", "skip_3_3"):  # decided: one pair far ahead in every node
        for g in ("node1", "node2"):
            state[cell][g] = state[cell][g].clone()
            state[cell][g].view(-1)[3] = 2.0
    pres = cell_presence(state, teacher, tiny_space)
    assert (pres["hits"], pres["present"]) == (2, 2)
    assert sorted(pres["found"]) == ["skip_1_1", "skip_3_3"]
    assert pres["chance"] == 0.5 and pres["auc"] == 1.0


def test_agreement_of_identical_selections_is_one_and_kappa_is_one(tiny_space):
    sel = alpha_selection(random_alpha_state(tiny_space, 3), tiny_space)
    agree = pairwise_agreement([sel, sel, sel], tiny_space)
    assert agree["agreement"] == 1.0 and agree["pairs"] == 3
    assert agree["chance"] == pytest.approx((3 / 9 + 3 / 18) / 2)  # each cell: 3 kept per node
    assert fleiss_kappa([sel, sel, sel], tiny_space) == pytest.approx(1.0)


def test_kappa_matches_the_textbook_formula_on_a_hand_example(tiny_space):
    # one cell, node 1 only (9 items), 2 raters
    a = {("skip_1_1", 1): {(0, "identity"), (0, "max_pool_3x3")}}
    b = {("skip_1_1", 1): {(0, "identity"), (0, "avg_pool_3x3")}}
    # items: identity both kept, max/avg one each, 6 none. P_i: 1, 0, 0, 1 x6 -> P_bar = 7/9
    p = 4 / 18
    p_e = p * p + (1 - p) * (1 - p)
    assert fleiss_kappa([a, b], tiny_space) == pytest.approx((7 / 9 - p_e) / (1 - p_e))


def test_random_genotypes_agree_at_chance_and_their_kappa_is_near_zero(tiny_space):
    sels = [genotype_selection(random_genotype(tiny_space, s), tiny_space) for s in range(6)]
    agree = pairwise_agreement(sels, tiny_space)
    assert abs(agree["agreement"] - agree["chance"]) < 0.15
    chance = chance_kappa(tiny_space, 3, draws=20)
    assert -0.1 < chance["mean"] < 0.1 and chance["p95"] >= chance["mean"]
    assert not math.isnan(fleiss_kappa(sels, tiny_space))


def test_kappa_needs_two_raters(tiny_space):
    sel = alpha_selection(random_alpha_state(tiny_space, 0), tiny_space)
    assert math.isnan(fleiss_kappa([sel], tiny_space))
    assert torch.isfinite(torch.tensor(fleiss_kappa([sel, sel], tiny_space)))
