"""Metrics against hand-computed confusion matrices (ISIC definitions), including empty masks."""

import numpy as np
import pytest
import torch

from nas.metrics import MASK_THRESHOLD, METRIC_NAMES, MetricAccumulator, confusion_counts, per_image_metrics


def _pair(pred_bits, gt_bits):
    p = torch.tensor(pred_bits, dtype=torch.float32).view(1, 1, 1, -1)
    g = torch.tensor(gt_bits, dtype=torch.float32).view(1, 1, 1, -1)
    return p, g


def test_hand_computed_confusion():
    # pred: 1 1 1 0 0 0 0 0 ; gt: 1 1 0 1 0 0 0 0 -> TP=2 FP=1 FN=1 TN=4
    p, g = _pair([0.9, 0.8, 0.7, 0.1, 0.2, 0.0, 0.4, 0.3], [1, 1, 0, 1, 0, 0, 0, 0])
    assert confusion_counts(p, g).tolist() == [[2, 1, 1, 4]]
    m = per_image_metrics(p, g)
    assert m["dice"].item() == pytest.approx(4 / 6)
    assert m["jaccard"].item() == pytest.approx(2 / 4)
    assert m["jaccard_t"].item() == 0.0  # 0.5 < 0.65
    assert m["accuracy"].item() == pytest.approx(6 / 8)
    assert m["sensitivity"].item() == pytest.approx(2 / 3)
    assert m["specificity"].item() == pytest.approx(4 / 5)
    assert m["precision"].item() == pytest.approx(2 / 3)


def test_threshold_is_strictly_greater_than_half():
    p, g = _pair([0.5, 0.51], [0, 1])
    assert confusion_counts(p, g).tolist() == [[1, 0, 0, 1]]


def test_empty_masks_follow_isic_convention():
    p, g = _pair([0.0] * 4, [0] * 4)
    m = per_image_metrics(p, g)
    for k in ("dice", "jaccard", "jaccard_t", "sensitivity", "specificity", "precision", "accuracy"):
        assert m[k].item() == 1.0, k
    # false positives on an empty ground truth: dice 0, sensitivity stays 1 (no positives to find)
    p, g = _pair([0.9, 0.0, 0.0, 0.0], [0] * 4)
    m = per_image_metrics(p, g)
    assert m["dice"].item() == 0.0 and m["sensitivity"].item() == 1.0
    assert m["specificity"].item() == pytest.approx(3 / 4) and m["precision"].item() == 0.0


def test_thresholded_jaccard_keeps_values_above_065():
    p, g = _pair([1, 1, 1, 1, 0], [1, 1, 1, 1, 1])  # J = 4/5
    assert per_image_metrics(p, g)["jaccard_t"].item() == pytest.approx(0.8)


def test_accumulator_mean_over_images_and_pooled_dice():
    acc = MetricAccumulator()
    p1, g1 = _pair([1, 1, 0, 0], [1, 1, 0, 0])  # dice 1, TP=2
    p2, g2 = _pair([1, 0, 0, 0], [0, 1, 1, 1])  # dice 0, FP=1 FN=3
    acc.update(torch.cat([p1, p2]), torch.cat([g1, g2]))
    s = acc.summary()
    assert s["dice"] == pytest.approx(0.5)
    assert s["pooled_dice"] == pytest.approx(4 / (4 + 1 + 3))
    assert acc.per_image()["dice"].tolist() == [1.0, 0.0]


def _scorer_reference(pred: "np.ndarray", truth: "np.ndarray") -> dict[str, float]:
    """The ISIC scorer's definitions (isic-challenge-scoring 5.6.0, metrics.binary_*), written out
    plainly from the confusion matrix of two boolean masks; independent of nas.metrics."""
    tp = int(np.logical_and(pred, truth).sum())
    fp = int(np.logical_and(pred, ~truth).sum())
    fn = int(np.logical_and(~pred, truth).sum())
    tn = int(np.logical_and(~pred, ~truth).sum())
    jaccard = 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)
    return {
        "accuracy": (tp + tn) / (tp + tn + fp + fn),
        "sensitivity": 1.0 if tp + fn == 0 else tp / (tp + fn),
        "specificity": 1.0 if tn + fp == 0 else tn / (tn + fp),
        "jaccard": jaccard,
        "jaccard_t": jaccard if jaccard >= 0.65 else 0.0,
        "dice": 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
        "precision": 1.0 if tp + fp == 0 else tp / (tp + fp),  # the scorer's binary_ppv
    }


def _full_size_cases() -> list[tuple[str, "np.ndarray", "np.ndarray"]]:
    """(name, probability map, stored grey mask) at odd, non-square sizes, with every empty case."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:61, 0:97]
    blob = ((yy - 30) / 20.0) ** 2 + ((xx - 60) / 30.0) ** 2 < 1
    grey = lambda m: np.where(m, 255, 0).astype(np.uint8)  # noqa: E731
    shifted = np.roll(blob, 7, axis=1)
    near = np.roll(blob, 2, axis=0)  # high overlap: thresholded Jaccard kept
    cases = [
        ("overlap", np.where(shifted, 0.9, 0.1), grey(blob)),
        ("high overlap", np.where(near, 0.8, 0.2), grey(blob)),
        ("noisy grey levels", rng.random((61, 97)), rng.integers(0, 256, (61, 97)).astype(np.uint8)),
        ("empty truth, empty prediction", np.zeros((33, 51)), np.zeros((33, 51), np.uint8)),
        ("empty truth, false positives", np.where(np.eye(33, 51) > 0, 0.7, 0.0), np.zeros((33, 51), np.uint8)),
        ("lesion missed entirely", np.zeros((45, 29)), grey(np.ones((45, 29), bool) & (np.arange(29) > 10))),
        ("all lesion, all predicted", np.ones((17, 23)), np.full((17, 23), 255, np.uint8)),
        ("all lesion, half predicted", np.where(np.arange(23) < 11, 0.95, 0.05)[None].repeat(17, 0),
         np.full((17, 23), 255, np.uint8)),
        ("probability exactly 0.5, grey exactly 128", np.full((9, 7), 0.5), np.full((9, 7), 128, np.uint8)),
    ]
    return cases


@pytest.mark.parametrize("name,prob,grey", _full_size_cases(), ids=[c[0] for c in _full_size_cases()])
def test_per_image_metrics_equal_the_isic_scorer_definitions(name, prob, grey):
    """nas.metrics on full-size masks (prediction prob > 0.5, truth grey > 128) against the scorer's
    definitions re-implemented above, including empty-truth, empty-prediction and all-lesion images."""
    expected = _scorer_reference(prob > 0.5, grey > 128)
    p = torch.from_numpy(prob.astype(np.float32))[None, None]
    g = torch.from_numpy(grey)[None, None] > MASK_THRESHOLD
    got = per_image_metrics(p, g)
    assert set(got) == set(METRIC_NAMES)
    for k in METRIC_NAMES:
        assert got[k].item() == pytest.approx(expected[k], abs=1e-12), k
