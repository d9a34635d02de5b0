"""Metrics against hand-computed confusion matrices (ISIC definitions), including empty masks."""

import pytest
import torch

from nas.metrics import MetricAccumulator, confusion_counts, per_image_metrics


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
