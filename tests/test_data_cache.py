"""Preprocessing and caching: later epochs (and, with a disk cache, later runs) never decode again."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from nas.data import build_data, center_crop_box, load_original, preprocess_image, preprocess_mask
from test_data_fixtures import H, W, cfg_for, make_layout


@pytest.fixture
def decodes(monkeypatch):
    """Counts cv2.imdecode calls (every file read goes through it)."""
    calls = {"n": 0}
    real = cv2.imdecode

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", counting)
    return calls


def _epochs(bundle, n=2):
    for epoch in range(n):
        for ds in (bundle.train, bundle.val, bundle.test):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                ds[i]


def test_memory_cache_decodes_each_file_once(tmp_path, decodes):
    root = make_layout(tmp_path, "folder", n=6)
    bundle = build_data(cfg_for(root), "train")
    assert decodes["n"] == 12  # 6 images + 6 masks, read and checked up front
    _epochs(bundle)
    assert decodes["n"] == 12


def test_no_cache_decodes_on_every_access(tmp_path, decodes):
    root = make_layout(tmp_path, "folder", n=6)
    bundle = build_data(cfg_for(root, "data.cache=none"), "train")
    _epochs(bundle, 2)
    assert decodes["n"] == 12 + 2 * 12


def test_disk_cache_survives_runs_and_notices_edits(tmp_path, decodes):
    root = make_layout(tmp_path / "data", "folder", n=4)
    cfg = cfg_for(root, "data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}")
    first = build_data(cfg, "train")
    assert decodes["n"] == 8
    second = build_data(cfg, "train")
    assert decodes["n"] == 8  # nothing decoded: checks and arrays come from the cache
    assert [r.orig_size for r in second.train.records] == [r.orig_size for r in first.train.records]
    x1, x2 = first.train[0][0], second.train[0][0]
    assert (x1 == x2).all() and decodes["n"] == 8
    edited = root / "images" / "img1.png"
    os.utime(edited, ns=(1, 1))  # a changed mtime invalidates that pair only
    build_data(cfg, "train")
    assert decodes["n"] == 10


def test_preprocessing_crops_center_square_and_binarises():
    assert center_crop_box(30, 40) == (0, 5, 30) and center_crop_box(50, 20) == (15, 0, 20)
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, 5:35] = 200  # exactly the center square is bright
    assert (preprocess_image(rgb, 16) == 200).all()
    mask = np.zeros((30, 40), np.uint8)
    mask[:, 20:] = 200
    out = preprocess_mask(mask, 16)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1} and out[:, :6].max() == 0


def test_records_keep_original_size_and_load_original(tmp_path):
    root = make_layout(tmp_path, "folder", n=3)
    bundle = build_data(cfg_for(root), "train")
    rec = bundle.train.records[0]
    rgb, mask = load_original(rec)
    assert rec.orig_size == (H, W) and rgb.shape == (H, W, 3) and mask.shape == (H, W)
    synth = build_data(cfg_for(None, "data.synthetic_n=4"), "train").train.records[0]
    rgb, mask = load_original(synth)
    assert synth.image_path is None and rgb.shape == (16, 16, 3) and synth.orig_size == (16, 16)


def test_shared_memory_cache_still_serves_items(tmp_path):
    root = make_layout(tmp_path, "folder", n=3)
    ds = build_data(cfg_for(root, "data.augment.enabled=false"), "train").train
    before = ds[0][0].clone()
    ds.share_memory()  # what make_loader does for workers under spawn/forkserver
    assert ds.store.memory.images.is_shared() and (ds[0][0] == before).all()
