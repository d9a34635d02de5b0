"""A built-in synthetic dermoscopy dataset: the default when `data.root` is not set.

It exists so that every command runs (and every test passes) without downloading anything, on
images that are hard in the ways real ones are: irregular, sometimes multi-lobed lesions
(radially Fourier-perturbed blobs); variegated colour (light/dark brown, blue-grey veil, dark
globules); skin texture and mottling; uneven illumination and the dermatoscope's black circular
vignette; low-contrast lesions with soft borders; hairs crossing the lesion (drawn over the image,
NOT part of the mask); air bubbles (bright rings).

`generate_pair(seed, index, size)` is a pure function of its arguments, vectorised with
NumPy/OpenCV (about 1-2 ms per 128x128 pair). `write_dataset` writes an ISIC 2017-layout folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from nas.data.files import write_image
from nas.data.layouts import ISIC2017
from nas.data.records import Record
from nas.data.seeding import make_rng

DEFAULT_SEED = 0          # the built-in dataset is the same for every run.seed
_STREAM = 0x5D17           # keeps generator draws apart from other uses of the same seed
SKIN = np.array([[236, 198, 172], [226, 178, 148], [208, 156, 124], [184, 128, 98], [242, 214, 196]], np.float32)
LIGHT_BROWN = np.array([172, 116, 80], np.float32)
DARK_BROWN = np.array([78, 46, 32], np.float32)
BLUE_GREY = np.array([112, 118, 138], np.float32)


def synthetic_id(index: int) -> str:
    return f"synth_{index:05d}"


def synthetic_records(n: int, size: int, seed: int = DEFAULT_SEED) -> list[Record]:
    return [Record(synthetic_id(i), None, None, (size, size), None, (seed, i, size)) for i in range(n)]


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-center coordinates in [-1, 1] (y, x)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(t, t, indexing="ij")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Unit-variance-ish low-frequency noise: a cells x cells random grid, bicubic upsampled."""
    g = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)


def _lesion_level(rng: np.random.Generator, size: int) -> np.ndarray:
    """Signed level set (>0 inside) of a union of 1-3 radially perturbed blobs."""
    yy, xx = _grid(size)
    center = rng.uniform(-0.2, 0.2, 2)
    r0 = rng.uniform(0.2, 0.75)
    lobes = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
    level = np.full((size, size), -np.inf, np.float32)
    for j in range(lobes):
        if j == 0:
            c, r = center, r0
        else:
            ang = rng.uniform(0, 2 * np.pi)
            c = center + r0 * rng.uniform(0.5, 0.95) * np.array([np.sin(ang), np.cos(ang)])
            r = r0 * rng.uniform(0.45, 0.8)
        dy, dx = yy - np.float32(c[0]), xx - np.float32(c[1])
        theta = np.arctan2(dy, dx)
        irregular = rng.uniform(0.08, 0.45)
        radius = np.ones_like(theta)
        for k in range(2, 8):
            radius += np.float32(irregular * rng.uniform(-1, 1) / k ** 0.8) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        level = np.maximum(level, 1.0 - np.sqrt(dy * dy + dx * dx) / (np.float32(r) * radius))
    return level + 0.06 * _smooth_noise(rng, size, 8)


def _lesion_colour(rng: np.random.Generator, size: int, level: np.ndarray) -> np.ndarray:
    """(S, S, 3) float colour: brown gradient, darker inside, patches of blue-grey, dark globules."""
    depth = np.clip(level * rng.uniform(0.8, 2.0), 0, 1)
    t = np.clip(rng.uniform(0.1, 0.6) + 0.35 * _smooth_noise(rng, size, int(rng.integers(3, 7))) + 0.4 * depth, 0, 1)
    colour = LIGHT_BROWN + t[..., None] * (DARK_BROWN - LIGHT_BROWN)
    if rng.random() < 0.5:
        veil = np.clip((_smooth_noise(rng, size, 4) - rng.uniform(0.3, 1.2)) * 1.5, 0, 0.8)
        colour += veil[..., None] * (BLUE_GREY - colour)
    dots = np.zeros((size, size), np.uint8)
    inside = np.argwhere(level > 0.15)
    if len(inside) and rng.random() < 0.6:
        scale = size / 128
        for y, x in inside[rng.integers(0, len(inside), int(rng.integers(3, 30)))]:
            cv2.circle(dots, (int(x), int(y)), max(1, int(round(rng.uniform(0.6, 2.2) * scale))), 255, -1, cv2.LINE_AA)
    colour *= 1.0 - 0.45 * (dots[..., None] / 255.0)
    return colour


def _draw_hairs(rng: np.random.Generator, img: np.ndarray, center: np.ndarray) -> None:
    """Dark quadratic curves from border to border, most through the lesion (in place, uint8)."""
    s = img.shape[0]
    for _ in range(int(rng.integers(1, 10))):
        ends = rng.uniform(-1.2, 1.2, (2, 2))
        side = rng.integers(2)
        ends[0, side], ends[1, side] = -1.3, 1.3  # start and end outside opposite borders
        mid = center + rng.normal(0, 0.25, 2) if rng.random() < 0.7 else rng.uniform(-1, 1, 2)
        t = np.linspace(0, 1, 32)[:, None]
        pts = (1 - t) ** 2 * ends[0] + 2 * t * (1 - t) * mid + t ** 2 * ends[1]
        pix = np.round(((pts + 1) / 2 * s) * 16).astype(np.int32)[:, None, ::-1]  # (x, y), 4 fraction bits
        colour = tuple(float(v) for v in rng.uniform(15, 60) * np.array([1.0, 0.85, 0.75]))
        thickness = max(1, int(round(rng.uniform(0.6, 1.8) * s / 128)))
        cv2.polylines(img, [pix], False, colour, thickness, cv2.LINE_AA, shift=4)


def _draw_bubbles(rng: np.random.Generator, img: np.ndarray) -> None:
    s = img.shape[0]
    for _ in range(int(rng.integers(1, 4))):
        c = (int(rng.uniform(0.1, 0.9) * s * 16), int(rng.uniform(0.1, 0.9) * s * 16))
        r = int(rng.uniform(0.03, 0.12) * s * 16)
        inner = img.copy()
        cv2.circle(inner, c, r, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
        cv2.addWeighted(img, 0.88, inner, 0.12, 0, dst=img)
        cv2.circle(img, c, r, (248, 248, 248), max(1, s // 128), cv2.LINE_AA, shift=4)


def generate_pair(seed: int, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 (size, size, 3), mask uint8 (size, size) 0/255); same arguments, same pair."""
    rng = make_rng(seed, index, _STREAM)
    yy, xx = _grid(size)

    skin = SKIN[rng.integers(len(SKIN))] + rng.uniform(-10, 10, 3).astype(np.float32)
    mottle = _smooth_noise(rng, size, int(rng.integers(4, 9)))[..., None] * np.array([9, 6, 5], np.float32)
    img = np.broadcast_to(skin, (size, size, 3)) + mottle

    level = _lesion_level(rng, size)
    edge = rng.uniform(0.04, 0.25)
    alpha = np.clip(0.5 + level / edge, 0, 1)[..., None]
    opacity = rng.uniform(0.25, 0.45) if rng.random() < 0.2 else rng.uniform(0.75, 1.0)  # low contrast
    img = img + alpha * opacity * (_lesion_colour(rng, size, level) - img)

    light = rng.uniform(-0.3, 0.3, 2)
    falloff = 1.0 - rng.uniform(0.05, 0.35) * ((yy - light[0]) ** 2 + (xx - light[1]) ** 2)
    img = img * falloff[..., None] + rng.normal(0, rng.uniform(2, 5), (size, size, 1)).astype(np.float32)
    mask = level > 0
    if rng.random() < 0.4:  # dermatoscope's circular field of view
        rv = rng.uniform(0.95, 1.3)
        fov = np.clip((rv - np.sqrt(yy * yy + xx * xx)) / 0.06, 0, 1)
        img = img * fov[..., None] + (1 - fov[..., None]) * rng.uniform(3, 15)
        mask &= fov > 0.5
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (0, 0), 0.4 + 0.3 * size / 128)

    center = np.argwhere(mask).mean(0) / size * 2 - 1 if mask.any() else np.zeros(2)
    if rng.random() < 0.55:
        _draw_hairs(rng, img, center)
    if rng.random() < 0.3:
        _draw_bubbles(rng, img)
    return img, mask.astype(np.uint8) * 255


def write_dataset(out: str | Path, n: int, size: int, seed: int = DEFAULT_SEED,
                  fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> dict[str, int]:
    """Write `n` pairs as an ISIC 2017 Part 1 folder (Training/Validation/Test_v2); counts per split.

    Ids are `ISIC_<7 digits>` (= index) so the folder loads with the real ISIC 2017 layout;
    images are JPEG (quality 95), masks 0/255 PNG.
    """
    from nas.data.splits import split_counts

    out = Path(out)
    counts, start = {}, 0
    for subset, count in zip(ISIC2017.subsets, split_counts(n, fractions)):  # train, val, test
        counts[subset.subset] = count
        if count == 0:
            continue
        img_dir, mask_dir = out / subset.image_dirs[0], out / subset.mask_dirs[0]
        img_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for i in range(start, start + count):
            rgb, mask = generate_pair(seed, i, size)
            id_ = f"ISIC_{i:07d}"
            write_image(img_dir / f"{id_}.jpg", rgb)
            write_image(mask_dir / ISIC2017.mask_example.format(id=id_), mask)
        start += count
    return counts
