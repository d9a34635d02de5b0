"""Segmentation metrics exactly as the ISIC challenge defines them (per image, then averaged).

Everything is computed from per-image pixel confusion counts, batched and without Python loops
over pixels, so the same code runs on CPU and GPU. The definitions, including every empty case,
are those of the challenge's scorer (`isic-challenge-scoring` 5.6.0, `metrics.binary_*`):
sensitivity 1 when TP+FN=0, specificity 1 when TN+FP=0, Jaccard and Dice 1 when TP+FP+FN=0,
thresholded Jaccard = Jaccard if >= 0.65 else 0, precision (its `binary_ppv`) 1 when TP+FP=0.
Test scores (`nas retrain`, `nas evaluate`) feed these functions the prediction and the
ground truth at each image's ORIGINAL size over the whole image (see `nas.inference`), as the
scorer sees the submitted PNGs; per-epoch validation scores them at the network input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

METRIC_NAMES = ("dice", "jaccard", "jaccard_t", "accuracy", "sensitivity", "specificity", "precision")
JACCARD_THRESHOLD = 0.65
THRESHOLD = 0.5        # a pixel is predicted lesion when its probability is > THRESHOLD
MASK_THRESHOLD = 128   # a stored ground-truth grey level is lesion when > MASK_THRESHOLD (as the scorer)


def confusion_counts(prob: torch.Tensor, gt: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """Per-image (TP, FP, FN, TN) as a float64 tensor [B, 4].

    `prob` are probabilities (pred = prob > threshold); `gt` is a {0,1} mask (or any mask where
    foreground is > 0.5). Shapes [B, 1, H, W] or [B, H, W].
    """
    pred = (prob > threshold).reshape(prob.shape[0], -1)
    truth = (gt > 0.5).reshape(gt.shape[0], -1)
    tp = (pred & truth).sum(1)
    fp = (pred & ~truth).sum(1)
    fn = (~pred & truth).sum(1)
    tn = (~pred & ~truth).sum(1)
    return torch.stack([tp, fp, fn, tn], dim=1).to(torch.float64)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den with the ISIC convention: 1 where the denominator is 0 (nothing to get wrong)."""
    return torch.where(den > 0, num / den.clamp(min=1), torch.ones_like(num))


def metrics_from_counts(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image metrics [B] from confusion counts [B, 4]."""
    tp, fp, fn, tn = counts.unbind(1)
    jaccard = _ratio(tp, tp + fp + fn)
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": jaccard,
        "jaccard_t": torch.where(jaccard >= JACCARD_THRESHOLD, jaccard, torch.zeros_like(jaccard)),
        "accuracy": (tp + tn) / (tp + fp + fn + tn).clamp(min=1),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
    }


def per_image_metrics(prob: torch.Tensor, gt: torch.Tensor, threshold: float = THRESHOLD) -> dict[str, torch.Tensor]:
    return metrics_from_counts(confusion_counts(prob, gt, threshold))


@dataclass
class MetricAccumulator:
    """Collects per-image counts over batches; reports the mean over images and the pooled Dice."""

    counts: list[torch.Tensor] = field(default_factory=list)

    def update(self, prob: torch.Tensor, gt: torch.Tensor) -> None:
        self.counts.append(confusion_counts(prob.detach(), gt.detach()).cpu())

    def per_image(self) -> dict[str, torch.Tensor]:
        if not self.counts:
            return {k: torch.zeros(0, dtype=torch.float64) for k in METRIC_NAMES}
        return metrics_from_counts(torch.cat(self.counts))

    def summary(self) -> dict[str, float]:
        """Mean over images of every metric, plus `pooled_dice` (micro Dice over all pixels)."""
        if not self.counts:
            return {}
        counts = torch.cat(self.counts)
        out = {k: float(v.mean()) for k, v in metrics_from_counts(counts).items()}
        tp, fp, fn, _ = counts.sum(0).unbind(0)
        out["pooled_dice"] = float(_ratio(2 * tp, 2 * tp + fp + fn))
        return out
