"""The built-in synthetic dataset: deterministic, plausible masks, hairs drawn over but not masked."""

from __future__ import annotations

import numpy as np

from nas.data import build_data, generate_pair, scan_folder, write_dataset
from nas.data import synthetic
from test_data_fixtures import cfg_for


def test_deterministic_per_seed_and_index():
    a, b = generate_pair(0, 5, 64), generate_pair(0, 5, 64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], generate_pair(0, 6, 64)[0])
    assert not np.array_equal(a[0], generate_pair(1, 5, 64)[0])


def test_masks_are_binary_non_empty_and_varied():
    fractions = []
    for i in range(40):
        rgb, mask = generate_pair(0, i, 64)
        assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        fractions.append((mask > 0).mean())
    assert min(fractions) > 0.01 and max(fractions) < 0.95 and np.std(fractions) > 0.03


def test_hairs_are_drawn_over_the_image_but_not_in_the_mask(monkeypatch):
    with_hair = [generate_pair(0, i, 64) for i in range(20)]
    monkeypatch.setattr(synthetic, "_draw_hairs", lambda rng, img, center: None)
    without = [generate_pair(0, i, 64) for i in range(20)]
    hairy = [i for i in range(20) if not np.array_equal(with_hair[i][0], without[i][0])]
    assert len(hairy) >= 5
    for i in range(20):
        assert np.array_equal(with_hair[i][1], without[i][1])


def test_default_dataset_when_root_is_unset():
    bundle = build_data(cfg_for(None, "data.synthetic_n=10"), "train")
    assert bundle.layout == "synthetic"
    ids = sorted(r.id for ds in (bundle.train, bundle.val, bundle.test) for r in ds.records)
    assert ids == [f"synth_{i:05d}" for i in range(10)]
    assert all(r.mask_path is None and r.orig_size == (16, 16) for r in bundle.train.records)


def test_written_dataset_loads_as_isic2017(tmp_path):
    counts = write_dataset(tmp_path, 10, 48, seed=1)
    assert counts == {"train": 6, "val": 2, "test": 2}
    scan = scan_folder(tmp_path)
    assert scan.layout == "isic2017" and len(scan.records) == 10 and not scan.problems
    bundle = build_data(cfg_for(tmp_path), "train")
    assert bundle.splits["source"] == "official" and len(bundle.train) == counts["train"]
