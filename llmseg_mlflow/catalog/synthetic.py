"""Synthetic segmentation data: textured images with blobs to find and distractors to ignore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from llmseg_mlflow.catalog.datasets import DatasetSpec, SyntheticSpec


def _smooth_field(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A smooth background in [0, 1]: a gradient plus a few low-frequency waves."""
    field = rng.uniform(-0.5, 0.5) * xx + rng.uniform(-0.5, 0.5) * yy
    for _ in range(3):
        fy, fx = rng.uniform(0.5, 2.5, size=2) * np.pi
        field += rng.uniform(0.1, 0.3) * np.sin(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi))
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def _ellipse(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """A random rotated ellipse: its boolean mask and normalised radius (0 centre, 1 rim)."""
    cy, cx = rng.uniform(0.15, 0.85, size=2)
    ay, ax = rng.uniform(lo, hi, size=2)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / ax
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ay
    r = np.sqrt(u * u + v * v)
    return r <= 1.0, r


def _rectangle(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A random axis-aligned rectangle: a distractor whose corners set it apart from blobs."""
    cy, cx = rng.uniform(0.15, 0.85, size=2)
    hy, hx = rng.uniform(0.06, 0.16, size=2)
    return (np.abs(yy - cy) <= hy) & (np.abs(xx - cx) <= hx)


def make_sample(rng: np.random.Generator, size: int | tuple[int, int], rgb: bool) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxW or HxWx3, mask uint8 HxW in {0, 255}) pair; `size` is a side or (height, width)."""
    h, w = (size, size) if isinstance(size, int) else size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy / (h - 1), xx / (w - 1)
    background = _smooth_field(rng, yy, xx)
    # Distractors are as bright as the targets but striped, so a threshold alone cannot segment.
    distract = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        shape = _rectangle(rng, yy, xx) if rng.random() < 0.5 else _ellipse(rng, yy, xx, 0.06, 0.15)[0]
        distract |= shape
    period = rng.uniform(3.0, 5.0) / max(h, w)
    stripes = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * (xx + yy) / period))

    mask = np.zeros((h, w), dtype=bool)
    shading = np.zeros((h, w))
    for _ in range(rng.integers(1, 4)):
        blob, radius = _ellipse(rng, yy, xx, 0.08, 0.2)
        mask |= blob
        # Each blob has its own brightness, so no single threshold fits all of them.
        level = rng.uniform(0.75, 1.0) * (1.0 - 0.3 * radius**2)
        shading = np.where(blob, np.maximum(shading, level), shading)

    noise_shape = (h, w, 3) if rgb else (h, w)
    noise = rng.normal(0.0, 0.04, size=noise_shape)
    if rgb:
        skin = np.array([0.85, 0.65, 0.55]) + rng.uniform(-0.1, 0.1, size=3)
        lesion = np.array([0.5, 0.25, 0.2]) + rng.uniform(-0.12, 0.12, size=3)
        # Distractors share the lesion's hue but are striped: texture, not colour, tells them apart.
        other = lesion + rng.uniform(-0.05, 0.1, size=3)
        img = (0.7 + 0.3 * background)[..., None] * skin
        img = np.where(distract[..., None], (0.55 + 0.5 * stripes)[..., None] * other, img)
        img = np.where(mask[..., None], shading[..., None] * lesion, img)
    else:
        img = 0.1 + 0.45 * background
        img = np.where(distract, 0.5 + 0.45 * stripes, img)
        img = np.where(mask, 0.3 + 0.55 * shading, img)
    img = np.clip(img + noise, 0.0, 1.0)
    return (img * 255).round().astype(np.uint8), mask.astype(np.uint8) * 255


def generate_synthetic(
    spec: DatasetSpec, out: Path, n: int | None = None, size: int | None = None, seed: int | None = None
) -> Path:
    """Write n image/mask pairs in the spec's layout under `out`; the same seed gives identical bytes."""
    defaults = spec.synthetic or SyntheticSpec()
    n = defaults.n if n is None else n
    size = defaults.size if size is None else size
    seed = defaults.seed if seed is None else seed
    if n < 1 or size < 16:
        raise ValueError(f"synthetic data needs n >= 1 and size >= 16, got n={n}, size={size}")
    out = Path(out)
    images, masks = spec.images_dir(out), spec.masks_dir(out)
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rgb = spec.colour == "rgb"
    for i in range(n):
        # One generator per sample: sample i is the same whatever n is.
        rng = np.random.default_rng([seed, i])
        shape = size if defaults.sizes is None else defaults.sizes[i % len(defaults.sizes)]
        img, mask = make_sample(rng, shape, rgb)
        Image.fromarray(img).save(images / spec.image_name(str(i)))
        Image.fromarray(mask).save(masks / spec.mask_name(str(i)))
    return out
