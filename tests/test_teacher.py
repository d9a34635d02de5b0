"""The positive control in CI: a search with the shipped α defaults recovers a small teacher.

The `tiny` space (4 cells, 2 nodes): the teacher has two cells of parameter-free ops
(skip_1_1: max pool, then max pool of that; skip_2_2: average pool and identity of the cell
input) and two absent cells. 128 teacher-labelled synthetic lesions at 32 px, augmentation off
(the teacher labelled exact pixels), 8 epochs of 8 α steps. Only data, size, epochs, batch and
the space are set: every search.* value is the shipped default. Runs are deterministic per seed
on the CPU, so the figures below are exact, not a lucky draw.
"""

from __future__ import annotations

import logging

import pytest

from nas.config import load_config
from nas.data.teacher import write_teacher_dataset
from nas.discretize import load_run_alphas, random_genotype
from nas.genotype import Block, CellGenotype, Edge, Genotype, save_genotype
from nas.recovery import alpha_selection, cell_presence, teacher_recovery
from nas.search_space import load_search_space

SEEDS = (1, 2)


def tiny_teacher() -> Genotype:
    space = load_search_space("tiny")
    base = random_genotype(space, 0)
    cells = {name: CellGenotype.absent() for name in base.cells}
    both = dict(ssb=Block("softmax", [1, 2], [0.5, 0.5]), csb=Block("sigmoid", [1, 2], [1.0, 1.0]))
    cells["skip_1_1"] = CellGenotype(edges=[Edge(1, 0, "max_pool_3x3", 1.0), Edge(2, 1, "max_pool_3x3", 1.0)], **both)
    cells["skip_2_2"] = CellGenotype(edges=[Edge(1, 0, "avg_pool_3x3", 1.0), Edge(2, 0, "identity", 1.0)], **both)
    return Genotype(search_space="tiny", backbone=base.backbone, cells=cells, source={})


@pytest.fixture(scope="module")
def teacher_searches(tmp_path_factory):
    from nas.search import search

    root = tmp_path_factory.mktemp("teacher")
    teacher = tiny_teacher()
    save_genotype(teacher, root / "teacher.yaml")
    write_teacher_dataset(root / "teacher.yaml", root / "data", n=128, size=32, seed=0)
    runs = []
    logging.disable(logging.INFO)
    try:
        for seed in SEEDS:
            cfg = load_config(None, ["search.space=tiny", f"data.root={root / 'data'}", "data.image_size=32",
                                     "data.augment.enabled=false", "train.batch_size=8", "train.epochs=8",
                                     "log.progress=false", "log.plots=false", "run.threads=1", f"run.seed={seed}",
                                     "model.out_channels=1"])
            search(cfg, root / f"seed{seed}")
            runs.append(load_run_alphas(root / f"seed{seed}"))
    finally:
        logging.disable(logging.NOTSET)
    return teacher, runs, root


def test_the_search_recovers_the_teacher_well_above_chance(teacher_searches):
    teacher, runs, _ = teacher_searches
    space = runs[0].space
    recs = [teacher_recovery(alpha_selection(r.alpha_state, space), teacher, space) for r in runs]
    for rec in recs:  # 3 of the 4 teacher edges kept at each seed (chance 1/4: 3 kept of 9 or 18 pairs)
        assert rec["share"] >= rec["chance"] + 0.4, recs
    presence = [cell_presence(r.alpha_state, teacher, space) for r in runs]
    assert sum(p["hits"] for p in presence) >= 3, presence  # the 2 teacher cells the most decided, mostly


def test_discretize_prints_the_recovery_of_a_teacher(teacher_searches, capsys, tmp_path):
    from nas.cli import main

    _, _, root = teacher_searches
    assert main(["discretize", str(root / "seed1"), "--teacher", str(root / "teacher.yaml"),
                 "-o", str(tmp_path / "g.yaml")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "teacher recovery: 75% of the teacher's 4 edges kept (chance 25%;" in text
    assert "teacher cells among the 2 most decided cells: 2 of 2 (chance 50%)" in text
