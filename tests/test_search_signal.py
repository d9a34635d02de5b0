"""Search signal: α movement, distance from uniform, agreement with the initial α and between seeds."""

import math

import pytest
import torch

from nas.discretize import random_alpha_state
from nas.search_signal import (INIT_DECIDED, pair_agreement, search_signal, selected_pairs, signal_columns,
                               signal_verdict)
from nas.search_space import load_search_space


@pytest.fixture
def tiny_space():
    return load_search_space("tiny")  # 4 cells, 2 nodes, 10 ops (9 non-zero)


def _copy(state):
    return {c: {g: t.clone() for g, t in groups.items()} for c, groups in state.items()}


def test_unmoved_alpha_are_decided_by_the_initialisation(tiny_space):
    a0 = random_alpha_state(tiny_space, 1)
    s = search_signal(a0, _copy(a0), tiny_space)
    assert s["alpha_move"] == 0.0 and s["alpha_move_ratio"] == 0.0
    assert s["init_agreement"] == 1.0
    assert any("decided by the initialisation" in n for n in signal_verdict(s))


def test_equal_initial_alpha_have_no_choice_to_agree_with(tiny_space):
    """search.alpha_init 0: the initial "genotype" would be the tie-break order, not a choice."""
    a0 = {c: {g: torch.zeros_like(t) for g, t in groups.items()}
          for c, groups in random_alpha_state(tiny_space, 1).items()}
    s = search_signal(a0, _copy(a0), tiny_space)
    assert s["init_agreement"] is None and s["init_chance"] is None and s["alpha_move_ratio"] is None
    assert all(cell["init_agreement"] is None for cell in s["cells"].values())
    assert not any("decided by the initialisation" in n for n in signal_verdict(s))
    assert math.isnan(signal_columns(s)["init_agreement"])


def test_a_shift_of_a_whole_group_is_no_move(tiny_space):
    a0 = random_alpha_state(tiny_space, 1)
    a1 = _copy(a0)
    for groups in a1.values():
        for g in groups.values():
            g += 5.0  # the softmax ignores it
    s = search_signal(a0, a1, tiny_space)
    assert s["alpha_move"] == pytest.approx(0.0, abs=1e-12)
    assert s["init_agreement"] == 1.0


def test_move_ratio_top_gain_and_kl_match_hand_computed_values(tiny_space):
    a0 = {c: {g: torch.zeros_like(t) for g, t in groups.items()}
          for c, groups in random_alpha_state(tiny_space, 1).items()}
    a1 = _copy(a0)
    for groups in a1.values():  # node1: one α up by log 2 → weights 2/11 and 1/11
        groups["node1"][0, 1] = math.log(2.0)
    s = search_signal(a0, a1, tiny_space)
    assert s["alpha_move_ratio"] is None  # all-equal start: no spread to compare with
    # centred change of node1: log2·(1 − 1/10) once and −log2/10 nine times; node2: 0 (20 α)
    sq = (math.log(2) * 0.9) ** 2 + 9 * (math.log(2) / 10) ** 2
    assert s["alpha_move"] == pytest.approx(math.sqrt(4 * sq / (4 * 30)))
    gain1, gain2 = 10 * 2 / 11 - 1, 0.0
    assert s["top_gain"] == pytest.approx((gain1 + gain2) / 2)  # median of 8 nodes: 4 of each
    kl1 = math.log(10) + (2 / 11) * math.log(2 / 11) + 9 * (1 / 11) * math.log(1 / 11)
    assert s["kl_uniform"] == pytest.approx(kl1 / 2)
    assert s["cells"]["skip_1_1"]["top_gain"] == pytest.approx(gain1)
    cols = signal_columns(s)
    assert math.isnan(cols["alpha_move_ratio"]) and cols["top_gain"] == pytest.approx(s["top_gain"])


def test_agreement_counts_shared_pairs_and_chance_is_the_random_overlap(tiny_space):
    a = random_alpha_state(tiny_space, 1)
    b = _copy(a)
    sel = selected_pairs(a, tiny_space, k=3)
    # move the top pair of node2 of one cell to the bottom in b: exactly one kept pair changes
    cell = "skip_2_2"
    top = max(sel[(cell, 2)], key=lambda p: float(a[cell]["node2"][p]))
    b[cell]["node2"][top] = -100.0
    r = pair_agreement(a, b, tiny_space, k=3)
    kept = 4 * 2 * 3
    assert r["kept"] == kept
    assert r["agreement"] == pytest.approx((kept - 1) / kept)
    assert r["cells"][cell] == pytest.approx(5 / 6)
    # independent uniform choices of 3 of m pairs share 9/m on average: m = 9 (node1), 18 (node2)
    assert r["chance"] == pytest.approx(4 * (9 / 9 + 9 / 18) / kept)


def test_random_states_agree_about_at_chance_level(tiny_space):
    values = [pair_agreement(random_alpha_state(tiny_space, s), random_alpha_state(tiny_space, 100 + s),
                             tiny_space)["agreement"] for s in range(40)]
    chance = pair_agreement(random_alpha_state(tiny_space, 0), random_alpha_state(tiny_space, 1),
                            tiny_space)["chance"]
    assert abs(sum(values) / len(values) - chance) < 0.04
    assert INIT_DECIDED > chance + 0.2
