"""Augmentation keeps image and mask aligned, is deterministic per (seed, epoch, index), train only."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from nas.config import AugmentConfig
from nas.data import build_data, make_loader
from nas.data.augment import Augmenter
from test_data_fixtures import cfg_for

GEOMETRIC = ("crop", "flip", "rotate", "scale")
ALL = GEOMETRIC + ("brightness_contrast", "salt_pepper")


def only(name: str) -> AugmentConfig:
    """Probability 1, every transform off except `name`."""
    cfg = AugmentConfig(probability=1.0)
    for other in ALL:
        getattr(cfg, other).enabled = other == name
    return cfg


def planted(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Red channel = 255 * mask, an asymmetric lesion, noise in green and blue."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 3, size // 2), (size // 5, size // 8), 30, 0, 360, 1, -1)
    cv2.rectangle(mask, (size // 2, size // 6), (size - 8, size // 3), 1, -1)
    img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    img[..., 0] = mask * 255
    return img, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_mask_follows_each_geometric_transform(name):
    aug = Augmenter(only(name))
    img, mask = planted()
    changed = 0
    for i in range(12):
        out_img, out_mask = aug(img, mask, np.random.default_rng([1, 0, i]))
        assert out_mask.dtype == np.uint8 and set(np.unique(out_mask)) <= {0, 1}
        assert iou(out_img[..., 0] > 127, out_mask) > 0.95, (name, i)
        changed += not np.array_equal(out_mask, mask)
    assert changed >= 6  # the transform really moved things


def test_mask_follows_all_transforms_together():
    aug = Augmenter(dataclasses.replace(only("crop"), probability=1.0))
    for name in GEOMETRIC:
        getattr(aug.cfg, name).enabled = True
    img, mask = planted()
    for i in range(12):
        out_img, out_mask = aug(img, mask, np.random.default_rng([2, 0, i]))
        assert iou(out_img[..., 0] > 127, out_mask) > 0.95


@pytest.mark.parametrize("name", ("brightness_contrast", "salt_pepper"))
def test_photometric_transforms_leave_the_mask_alone(name):
    img, mask = planted()
    out_img, out_mask = Augmenter(only(name))(img, mask, np.random.default_rng(5))
    assert out_mask is mask and not np.array_equal(out_img, img)


def test_salt_and_pepper_amount():
    img = np.full((200, 200, 3), 128, np.uint8)
    out, _ = Augmenter(only("salt_pepper"))(img, np.zeros((200, 200), np.uint8), np.random.default_rng(0))
    white, black = (out == 255).all(-1).mean(), (out == 0).all(-1).mean()
    assert 0.003 < white < 0.007 and 0.003 < black < 0.007


@pytest.fixture(scope="module")
def bundle():
    return build_data(cfg_for(None, "data.synthetic_n=12", "data.augment.probability=1.0"), "search")


def _item(ds, i, epoch):
    ds.set_epoch(epoch)
    return ds[i]


def test_items_are_a_function_of_seed_epoch_index(bundle):
    train = bundle.train
    a, b = _item(train, 3, 1), _item(train, 3, 1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = _item(train, 3, 2)
    assert not torch.equal(a[0], c[0])
    assert a[0].dtype == torch.float32 and 0 <= a[0].min() and a[0].max() <= 1
    assert set(a[1].unique().tolist()) <= {0.0, 1.0}


def test_only_training_sets_augment(bundle):
    for ds in (bundle.val, bundle.test):
        assert ds.augment is None
        assert torch.equal(_item(ds, 0, 1)[0], _item(ds, 0, 2)[0])
    for ds in (bundle.train, bundle.w_half, bundle.a_half):
        assert ds.augment is not None


def test_loader_results_do_not_depend_on_workers(bundle):
    train = bundle.train
    train.set_epoch(4)
    batches = []
    for workers in (0, 2):
        loader = make_loader(train, batch_size=4, shuffle=True, seed=11, workers=workers)
        batches.append([x for x, _ in loader])
    assert all(torch.equal(p, q) for p, q in zip(*batches))


def test_composed_matrices_match_the_plain_operations():
    from nas.data.augment import crop_matrix, flip_matrix, warp

    img, mask = planted(size=40)
    m = crop_matrix(40, 0.5, 0.25, 1.0)  # side 20 at y0=5, x0=20
    got, _ = warp(img, mask, m)
    ref = cv2.resize(img[5:25, 20:40], (40, 40), interpolation=cv2.INTER_LINEAR)
    assert np.abs(got.astype(int) - ref.astype(int))[2:-2, 2:-2].max() <= 2
    for mode, code in ((1, 1), (2, 0)):
        got, got_mask = warp(img, mask, flip_matrix(40, mode))
        assert np.array_equal(got, cv2.flip(img, code)) and np.array_equal(got_mask, cv2.flip(mask, code))


def test_make_loader_rejects_shuffle_with_sampler(bundle):
    with pytest.raises(ValueError, match="not both"):
        make_loader(bundle.train, 2, shuffle=True, seed=0, workers=0,
                    sampler=torch.utils.data.SequentialSampler(bundle.train))
