"""Every supported layout is found by its published folder/file names, detected, and loads."""

from __future__ import annotations

import pytest

from nas.data import build_data, scan_folder
from nas.errors import UserError
from test_data_fixtures import H, SAMPLE, W, cfg_for, make_layout, write_pairs, isic_ids

EXPECTED = {  # layout -> (pairs, subsets)
    "isic2017": (9, {"train", "val", "test"}),
    "isic2016": (6, {"train", "test"}),
    "isic2018": (6, {"train", "val"}),
    "ham10000": (6, {None}),
    "ph2": (3, {None}),
    "folder": (3, {None}),
}


@pytest.mark.parametrize("layout", list(EXPECTED))
def test_layout_is_detected_and_loads(tmp_path, layout):
    root = make_layout(tmp_path, layout)
    scan = scan_folder(root)
    n, subsets = EXPECTED[layout]
    assert scan.layout == layout
    assert not scan.problems
    assert len(scan.records) == n
    assert {r.subset for r in scan.records} == subsets
    assert scan_folder(root, layout).layout == layout  # forcing the right layout works too

    bundle = build_data(cfg_for(root, f"data.layout={layout}"), "train")
    got = bundle.train.records + bundle.val.records + bundle.test.records
    assert len(got) == n and all(r.orig_size == (H, W) for r in got)
    x, y = bundle.train[0]
    assert tuple(x.shape) == (3, 16, 16) and tuple(y.shape) == (1, 16, 16)


def test_ph2_accepts_the_images_folder_itself(tmp_path):
    make_layout(tmp_path, "ph2")
    scan = scan_folder(tmp_path / "PH2 Dataset images")
    assert scan.layout == "ph2" and len(scan.records) == 3


def test_folder_layout_with_train_val_test(tmp_path):
    for k, sub in enumerate(("train", "val", "test")):
        write_pairs(tmp_path / sub / "images", tmp_path / sub / "masks", [f"{sub}{i}" for i in range(2)],
                    image_name="{id}.png", mask_name="{id}_mask.png", start=k)
    scan = scan_folder(tmp_path)
    assert scan.layout == "folder"
    assert sorted(r.subset for r in scan.records) == ["test", "test", "train", "train", "val", "val"]


def test_nested_archive_folder_is_found(tmp_path):
    inner = tmp_path / "download" / "ISIC-2017_Training_Data"
    write_pairs(inner / "ISIC-2017_Training_Data", tmp_path / "download" / "ISIC-2017_Training_Part1_GroundTruth",
                isic_ids(0, 2))
    scan = scan_folder(tmp_path)
    assert scan.layout == "isic2017" and len(scan.records) == 2


def test_forced_layout_mismatch_names_folder_and_expectation(tmp_path):
    make_layout(tmp_path, "ph2")
    with pytest.raises(UserError) as err:
        scan_folder(tmp_path, "isic2017")
    msg = str(err.value)
    assert str(tmp_path) in msg and "ISIC-2017_Training_Data" in msg and "\n" not in msg


def test_unknown_folder_and_missing_folder(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(UserError, match="no known dataset layout"):
        scan_folder(tmp_path)
    with pytest.raises(UserError, match="not found"):
        scan_folder(tmp_path / "nope")


def test_images_without_ground_truth_folder_are_noted_not_dropped(tmp_path):
    make_layout(tmp_path, "isic2018")
    write_pairs(tmp_path / "ISIC2018_Task1-2_Test_Input", tmp_path / "elsewhere", isic_ids(300, 2))
    scan = scan_folder(tmp_path)
    assert len(scan.records) == 6
    assert any("ISIC2018_Task1_Test_GroundTruth" in n and "2 images" in n for n in scan.notes)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared ISIC 2017 sample not present")
def test_real_sample_is_isic2017_with_52_pairs():
    scan = scan_folder(SAMPLE)
    assert scan.layout == "isic2017"
    assert len(scan.records) == 52 and not scan.problems
    assert {r.subset for r in scan.records} == {"val"}
