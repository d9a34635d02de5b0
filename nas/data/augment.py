"""The thesis augmentations, with OpenCV, on the fly, as a pure function of a numpy Generator.

The dataset passes `np.random.default_rng([seed, epoch, index])`, so an augmented item does not
depend on DataLoader workers or on resuming. Each transform is applied with
`augment.probability` and its own on/off switch and ranges:

1. random crop (side = U(min_fraction, 1) of the image) resized back to full size
2. flip, chosen uniformly among none / horizontal / vertical (as in the thesis)
3. rotation U(0, max_degrees) and scale U(min, max) about the image center
4. brightness/contrast, `cv2.convertScaleAbs(alpha, beta)` (image only, as in the thesis,
   including its absolute value)
5. salt & pepper: `amount` of pixels set white and as many black (image only; last, so the noise
   is not smoothed by a resampling)

Steps 1-3 are affine maps, so they are composed into ONE matrix and applied with one
`cv2.warpAffine`: the image is interpolated once (bilinear) instead of up to three times, and the
mask goes through the very same matrix with INTER_NEAREST (which warpAffine evaluates at the same
source coordinates as bilinear), so image and mask stay aligned to the pixel.
Border: constant 0 (black image, background mask). Reflection would invent mirrored lesion
fragments at the border that real images never show; black corners look like the
dermatoscope's own vignette, which real images often have.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from nas.config import AugmentConfig

Pair = tuple[np.ndarray, np.ndarray]  # (image uint8 (S, S, 3), mask uint8 (S, S))


def crop_matrix(s: int, fraction: float, y: float, x: float) -> np.ndarray:
    """3x3 map of the square of side `fraction`*s at relative offset (y, x) in [0, 1] onto the
    full s x s image, with cv2.resize's pixel-centre convention."""
    side = int(np.clip(round(fraction * s), 1, s))
    y0, x0 = round(y * (s - side)), round(x * (s - side))
    k = s / side
    return np.array([[k, 0, (0.5 - x0) * k - 0.5], [0, k, (0.5 - y0) * k - 0.5], [0, 0, 1]])


def flip_matrix(s: int, mode: int) -> np.ndarray:
    """mode 0: none, 1: horizontal (left-right), 2: vertical (up-down)."""
    m = np.eye(3)
    if mode in (1, 2):
        axis = 0 if mode == 1 else 1
        m[axis, axis], m[axis, 2] = -1.0, s - 1.0
    return m


def rotate_scale_matrix(s: int, degrees: float, scale: float) -> np.ndarray:
    """Counter-clockwise rotation by `degrees` and zoom by `scale` about the image centre."""
    c = (s - 1) / 2.0
    return np.vstack([cv2.getRotationMatrix2D((c, c), degrees, scale), [0, 0, 1]])


def warp(image: np.ndarray, mask: np.ndarray, m: np.ndarray) -> Pair:
    """Apply the 3x3 affine `m` to both: image bilinear, mask nearest, constant-0 border."""
    s = image.shape[0]
    a = m[:2].astype(np.float64)
    img = cv2.warpAffine(image, a, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    msk = cv2.warpAffine(mask, a, (s, s), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, msk


def brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return cv2.convertScaleAbs(image, alpha=alpha, beta=beta)


def salt_pepper(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(image.shape[:2])
    out = image.copy()
    out[u < amount] = 255
    out[(u >= amount) & (u < 2 * amount)] = 0
    return out


class Augmenter:
    """Callable (image, mask, rng) -> (image, mask) configured by `data.augment`."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        c = self.cfg
        # One decision per transform, always drawn, so switching one transform off does not
        # change what the others do.
        crop_on, flip_on, rot_on, scale_on, bc_on, sp_on = rng.random(6) < c.probability
        s = image.shape[0]
        m = np.eye(3)  # geometric steps compose right to left: crop first, then flip, then rotate/scale
        if c.crop.enabled and crop_on:
            m = crop_matrix(s, rng.uniform(c.crop.min_fraction, 1.0), rng.random(), rng.random()) @ m
        if c.flip.enabled and flip_on:
            m = flip_matrix(s, int(rng.integers(3))) @ m
        degrees = rng.uniform(0.0, c.rotate.max_degrees) if (c.rotate.enabled and rot_on) else 0.0
        scale = rng.uniform(c.scale.min, c.scale.max) if (c.scale.enabled and scale_on) else 1.0
        if degrees != 0.0 or scale != 1.0:
            m = rotate_scale_matrix(s, degrees, scale) @ m
        if not np.array_equal(m, np.eye(3)):
            image, mask = warp(image, mask, m)
        if c.brightness_contrast.enabled and bc_on:
            alpha = rng.uniform(*c.brightness_contrast.alpha)
            beta = rng.uniform(*c.brightness_contrast.beta)
            image = brightness_contrast(image, alpha, beta)
        if c.salt_pepper.enabled and sp_on:
            image = salt_pepper(image, c.salt_pepper.amount, rng)
        return image, mask


def build_augmenter(cfg: AugmentConfig) -> Optional[Augmenter]:
    """None when augmentation is off, so datasets skip the RNG entirely."""
    return Augmenter(cfg) if cfg.enabled and cfg.probability > 0 else None
