"""Splits are seeded, disjoint, official where the dataset has one, limited deterministically, reused."""

from __future__ import annotations

import pytest

from nas.data import build_data, read_splits, write_splits
from nas.data.records import Record
from nas.data.splits import apply_limit, fraction_split, make_splits, search_halves
from nas.errors import UserError
from test_data_fixtures import cfg_for, make_layout


def recs(n, subset=None):
    return [Record(f"id{i:03d}", None, None, subset=subset) for i in range(n)]


def test_fraction_split_is_seeded_disjoint_and_complete():
    ids = [r.id for r in recs(100)]
    a = fraction_split(ids, [0.7, 0.15, 0.15], seed=1)
    assert a == fraction_split(list(reversed(ids)), [0.7, 0.15, 0.15], seed=1)  # input order irrelevant
    assert a != fraction_split(ids, [0.7, 0.15, 0.15], seed=2)
    assert [len(x) for x in a] == [70, 15, 15]
    assert sorted(sum(a, [])) == ids


def test_small_sets_keep_a_training_pair_and_non_empty_splits():
    for n in (1, 2, 3, 5):
        train, val, test = fraction_split([f"x{i}" for i in range(n)], [0.7, 0.15, 0.15], seed=0)
        assert len(train) >= 1 and len(train) + len(val) + len(test) == n
        if n >= 3:
            assert val and test


def test_official_split_and_carving():
    records = recs(10, "train") + [Record(f"t{i}", None, None, subset="test") for i in range(4)]
    s = make_splits(records, [0.7, 0.15, 0.15], seed=0, official=True, layout="isic2016")
    assert s["test"] == [f"t{i}" for i in range(4)]
    assert len(s["val"]) == 2 and len(s["train"]) == 8 and "carved" in s["source"]  # 0.15/0.85 of 10
    s = make_splits(records, [0.7, 0.15, 0.15], seed=0, official=False, layout="isic2016")
    assert s["source"] == "seeded" and len(s["test"]) == 2
    only_val = recs(10, "val")  # the shared sample: no official training set -> fractions
    assert make_splits(only_val, [0.7, 0.15, 0.15], 0, True, "isic2017")["source"] == "seeded"


def test_limit_is_deterministic_nested_and_seed_free():
    records = recs(50)
    small, large = apply_limit(records, 10), apply_limit(records, 20)
    assert len(small) == 10 and {r.id for r in small} <= {r.id for r in large}
    assert apply_limit(list(reversed(records)), 10) == list(reversed(small))
    assert apply_limit(records, None) == records and apply_limit(records, 99) == records


def test_search_halves():
    w, a = search_halves([f"x{i}" for i in range(7)], seed=3)
    assert len(w) == 4 and len(a) == 3 and not set(w) & set(a)
    assert (w, a) == search_halves([f"x{i}" for i in range(7)], seed=3)
    with pytest.raises(UserError, match="at least 2"):
        search_halves(["x"], seed=0)


def test_build_data_writes_and_reuses_splits(tmp_path):
    root = make_layout(tmp_path / "data", "folder", n=9)
    cfg = cfg_for(root, "data.limit=8")
    first = build_data(cfg, "search")
    assert sum(len(ds) for ds in (first.train, first.val, first.test)) == 8
    assert set(first.w_half.ids) | set(first.a_half.ids) == set(first.train.ids)
    path = write_splits(tmp_path / "run" / "splits.json", first.splits)
    again = build_data(cfg_for(root, "run.seed=99"), "search", splits=read_splits(path))  # seed ignored on reuse
    for name in ("train", "val", "test", "w_half", "a_half"):
        assert getattr(again, name).ids == getattr(first, name).ids


def test_reused_splits_must_match_the_data(tmp_path):
    root = make_layout(tmp_path, "folder", n=4)
    bad = {"train": ["img0", "ghost"], "val": [], "test": []}
    with pytest.raises(UserError, match="1 ids not found"):
        build_data(cfg_for(root), "train", splits=bad)
    with pytest.raises(UserError, match="both train and val"):
        build_data(cfg_for(root), "train", splits={"train": ["img0"], "val": ["img0"], "test": []})


def test_official_split_of_a_layout_is_used(tmp_path):
    root = make_layout(tmp_path, "isic2017", n=3)
    bundle = build_data(cfg_for(root), "train")
    assert bundle.splits["source"] == "official"
    assert {r.subset for r in bundle.val.records} == {"val"} and {r.subset for r in bundle.test.records} == {"test"}
    seeded = build_data(cfg_for(root, "data.official_split=false"), "train")
    assert seeded.splits["source"] == "seeded"


def test_eval_dataset_is_every_pair_unaugmented(tmp_path):
    from nas.data import build_eval_dataset

    root = make_layout(tmp_path, "isic2017", n=2)
    ds = build_eval_dataset(cfg_for(root))
    assert len(ds) == 6 and ds.augment is None and ds.layout == "isic2017"


def test_each_purpose_needs_its_split_parts():
    """A retrain needs train, val and test; a search only train (val is logged when present)."""
    cfg = cfg_for(None, "data.synthetic_n=8", "data.split=[1.0, 0, 0]")
    bundle = build_data(cfg, "search")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (8, 0, 0)
    with pytest.raises(UserError, match=r"^data\.split \[1\.0, 0\.0, 0\.0\]: the val and test parts of the 8 usable "
                                        r"pairs are empty \(train 8, val 0, test 0; split seeded\); nas retrain needs "
                                        r"train, val, test pairs"):
        build_data(cfg, "train")
    with pytest.raises(UserError, match=r"the test part .* nas evaluate needs test pairs"):
        build_data(cfg_for(None, "data.synthetic_n=8", "data.split=[0.8, 0.2, 0]"), "evaluate")
    with pytest.raises(UserError, match=r"raise data\.limit, now 2"):
        build_data(cfg_for(None, "data.limit=2"), "train")
    build_data(cfg_for(None, "data.limit=3"), "train")  # one pair per part is enough


def test_split_seed_keeps_one_split_across_run_seeds(tmp_path):
    """data.split_seed fixes train/val/test (e.g. one test set for every training seed); the
    search halves still follow run.seed. Without it each run seed draws its own split."""
    root = make_layout(tmp_path / "data", "folder", n=20)
    fixed = [build_data(cfg_for(root, f"run.seed={s}", "data.split_seed=5"), "search") for s in (1, 2)]
    own = [build_data(cfg_for(root, f"run.seed={s}"), "search") for s in (1, 2)]
    for part in ("train", "val", "test"):
        assert getattr(fixed[0], part).ids == getattr(fixed[1], part).ids
    assert fixed[0].w_half.ids != fixed[1].w_half.ids
    assert own[0].test.ids != own[1].test.ids
    assert fixed[0].test.ids == build_data(cfg_for(root, "run.seed=5"), "search").test.ids
