"""Grouped splits: the images of one lesion never sit in two splits, nor in both search halves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nas.cli import main
from nas.data import build_data
from nas.data.groups import crossing_groups, read_groups
from nas.data.records import Record
from nas.data.splits import HALVES, SPLITS, apply_limit, fraction_split, search_halves
from test_data_fixtures import cfg_for, isic_ids, make_layout

REAL_HAM = Path(__file__).resolve().parents[1] / "data" / "HAM10000"


def fake_ham(root: Path, n: int = 12, sizes: tuple[int, ...] = (3, 1, 2, 4, 1, 2, 1, 3, 2, 1)) -> dict[str, str]:
    """A HAM10000-layout folder of 2n pairs and its `HAM10000_metadata.csv`, lesions of `sizes`
    images (cycled); returns {image id: lesion id}."""
    make_layout(root, "ham10000", n=n)
    ids = isic_ids(24306, 2 * n)
    groups, k, lesion = {}, 0, 0
    while k < len(ids):
        for i in ids[k:k + sizes[lesion % len(sizes)]]:
            groups[i] = f"HAM_{lesion:07d}"
        k += sizes[lesion % len(sizes)]
        lesion += 1
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    rows += [f"{g},{i},nv,histo,45.0,male,back" for i, g in reversed(list(groups.items()))]  # file order irrelevant
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    return groups


def test_no_lesion_crosses_a_split_or_a_search_half(tmp_path):
    groups = fake_ham(tmp_path / "ham")
    assert len(set(groups.values())) < len(groups)  # multi-image lesions, or the test proves nothing
    for seed in range(4):
        data = build_data(cfg_for(tmp_path / "ham", f"run.seed={seed}"), "search")
        s = data.splits
        assert sorted(sum((s[k] for k in SPLITS), [])) == sorted(groups)
        assert crossing_groups(s, groups, SPLITS) == []
        assert crossing_groups(s, groups, HALVES) == []
        assert sorted(s["w_half"] + s["a_half"]) == s["train"]
        assert s["groups"] == {"file": str(tmp_path / "ham" / "HAM10000_metadata.csv"),
                               "count": len(set(groups.values()))}
        assert all(len(s[k]) > 0 for k in SPLITS)


def test_per_image_groups_give_the_splits_of_before(tmp_path):
    """With one group per image the cuts are where the per-image split made them (values from the
    code before groups existed): runs of other datasets, and their resumes, see the same ids."""
    ids = [f"id{i:02d}" for i in range(13)]
    assert fraction_split(ids, [0.7, 0.15, 0.15], seed=5) == [
        ["id00", "id02", "id04", "id05", "id06", "id07", "id08", "id09", "id10"], ["id11", "id12"], ["id01", "id03"]]
    assert search_halves(ids[:9], seed=5) == (["id00", "id04", "id05", "id06", "id08"], ["id01", "id02", "id03", "id07"])
    fake_ham(tmp_path / "ham")
    per_image = build_data(cfg_for(tmp_path / "ham", "data.groups=none"), "search").splits
    assert "groups" not in per_image
    assert [per_image[k] for k in SPLITS] == fraction_split(sorted(per_image["train"] + per_image["val"]
                                                                   + per_image["test"]), [0.7, 0.15, 0.15], seed=3)


def test_grouped_fractions_are_met_as_closely_as_whole_groups_allow():
    rng = np.random.default_rng(0)
    for trial in range(20):
        sizes = rng.integers(1, 7, size=int(rng.integers(3, 60)))
        ids = [f"x{k:04d}" for k in range(int(sizes.sum()))]
        groups = {i: f"g{g}" for g, i in zip(np.repeat(np.arange(len(sizes)), sizes), ids)}
        parts = fraction_split(ids, [0.7, 0.15, 0.15], seed=trial, groups=groups)
        assert parts == fraction_split(list(reversed(ids)), [0.7, 0.15, 0.15], seed=trial, groups=groups)
        assert crossing_groups(dict(zip(SPLITS, parts)), groups, SPLITS) == []
        assert sorted(sum(parts, [])) == ids and parts[0]
        n = len(ids)
        assert abs(len(parts[0]) - 0.7 * n) <= sizes.max() + 1  # each cut within a group of its target
        if len(sizes) >= 3:
            assert parts[1] and parts[2]
        w, a = search_halves(parts[0], seed=trial, groups=groups)
        assert w and a and crossing_groups({"w": w, "a": a}, groups, ("w", "a")) == []


def test_limit_takes_whole_groups_nested_and_at_most_n():
    records = [Record(f"id{k:03d}", None, None, group=f"L{k // 3}") for k in range(60)]
    previous: set[str] = set()
    for limit in (1, 2, 5, 10, 31, 59):
        kept = apply_limit(records, limit)
        ids = {r.id for r in kept}
        assert len(kept) <= max(limit, 3) and len(kept) > limit - 3  # whole groups of 3 (at least one)
        assert all({f"id{3 * (int(r.id[2:]) // 3) + j:03d}" for j in range(3)} <= ids for r in kept)
        assert previous <= ids
        previous = ids


def test_groups_csv_for_any_layout(tmp_path):
    root = make_layout(tmp_path / "mine", "folder", n=9)
    table = tmp_path / "patients.csv"
    table.write_text("id,group\n" + "".join(f"img{k},patient{k % 3}\n" for k in range(9)))
    assert read_groups(table) == {f"img{k}": f"patient{k % 3}" for k in range(9)}
    data = build_data(cfg_for(root, f"data.groups={table}", "data.split=[0.34, 0.33, 0.33]"), "train")
    groups = read_groups(table)
    assert crossing_groups(data.splits, groups, SPLITS) == []
    assert sorted(len(data.splits[k]) for k in SPLITS) == [3, 3, 3] and data.splits["groups"]["count"] == 3


def test_data_check_reports_groups_and_a_leaking_saved_split(tmp_path, monkeypatch, capsys):
    groups = fake_ham(tmp_path / "ham")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "check", "ham", "--size", "16", "--set", "run.seed=1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{len(set(groups.values()))} groups, images per group min 1, median 2, max 4" in out
    assert "no group has images in more than one of train, val, test" in out
    assert "no group has images in more than one of w_half, a_half" in out
    ids = sorted(groups)  # a split of an earlier version, made image by image
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "splits.json").write_text(json.dumps({"train": ids[:16], "val": ids[16:20],
                                                               "test": ids[20:]}))
    assert main(["data", "check", "ham", "--size", "16", "--splits", "old"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "1 group has images in more than one of train, val, test (first: HAM_0000007 in train and val)" in out
    assert main(["data", "check", "ham", "--size", "16", "--splits", "old", "--groups", "none"]) == 0


def test_a_per_image_run_of_an_earlier_version_resumes_with_its_split(tmp_path, tiny_overrides, monkeypatch):
    """A HAM10000 run made before groups existed (split image by image, no data.groups in its
    config.yaml) resumes on exactly its ids although the folder now has lesion groups."""
    groups = fake_ham(tmp_path / "ham", n=8)
    out = tmp_path / "old"
    sets = [*tiny_overrides, "train.epochs=1", f"data.root={tmp_path / 'ham'}", "data.groups=none"]
    assert main(["search", "--out", str(out), *[a for o in sets for a in ("--set", o)]]) == 0
    before = json.loads((out / "splits.json").read_text())
    assert crossing_groups(before, groups, SPLITS + HALVES) != []  # it leaks, as old runs did
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["data"]["groups"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["search", "--resume", str(out), "--set", "train.epochs=2"]) == 0
    assert json.loads((out / "splits.json").read_text()) == before


@pytest.mark.skipif(not (REAL_HAM / "HAM10000_metadata.csv").is_file(), reason="HAM10000 not laid out here")
def test_real_ham10000_metadata_groups_every_image():
    groups = read_groups(REAL_HAM / "HAM10000_metadata.csv")
    assert len(groups) == 10015 and len(set(groups.values())) == 7470
    parts = fraction_split(sorted(groups), [0.8, 0.1, 0.1], seed=2024, groups=groups)
    assert crossing_groups(dict(zip(SPLITS, parts)), groups, SPLITS) == []
