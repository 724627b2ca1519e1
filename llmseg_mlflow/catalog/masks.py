"""One rule for reading a mask, wherever the platform reads one (scoring, nnU-Net, figures).

A pixel is foreground when its value is nearer the entry's foreground value than its background
value; for the usual [0, F] that is "above F/2". The rule reads lossless 0/255 or 0/1 masks exactly
and JPEG masks (grey values blurred around the edges) the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from llmseg_mlflow.catalog.datasets import LOSSY_EXTS


class ColourMaskError(ValueError):
    """A mask whose colour channels differ: not a binary mask."""


def foreground(values: np.ndarray, levels: tuple[int, int] = (0, 255)) -> np.ndarray:
    """Boolean foreground of mask values: nearer the foreground level than the background level."""
    background, fg = levels
    work = values.astype(np.int64)
    return np.abs(work - fg) < np.abs(work - background)


_LOSSY_CHANNEL_SPREAD = 16  # JPEG chroma noise: a grey RGB mask's channels differ by a few levels


def mask_pixels(img: Image.Image, name: str, lossy: bool = False) -> np.ndarray:
    """The mask's values, one channel: grey levels, or palette indices for a coloured palette.

    A lossy (JPEG) mask saved as RGB counts as grey when its channels differ by a few levels only."""
    if img.mode in ("1", "LA"):
        img = img.convert("L")
    if img.mode == "P":
        # GIF and some PNG masks store grey levels through a palette (index 1 = white); a coloured
        # palette (VOC style) means the index is the class.
        palette = np.asarray(img.getpalette() or [], dtype=np.int32).reshape(-1, 3)
        used = np.unique(np.asarray(img))
        colours = palette[used[used < len(palette)]]
        if len(colours) and (colours == colours[:, :1]).all():
            img = img.convert("L")
    arr = np.asarray(img)
    if arr.ndim == 3:
        colour = arr[..., :3]
        if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2]):
            return colour[..., 0]
        spread = int((colour.max(-1).astype(np.int16) - colour.min(-1)).max())
        if not lossy or spread > _LOSSY_CHANNEL_SPREAD:
            raise ColourMaskError(name)
        arr = colour.mean(-1).round().astype(np.uint8)
    return arr


def mask_values(arr: np.ndarray) -> list[int]:
    """The distinct values of a mask, ascending."""
    if arr.dtype == np.uint8:
        return np.flatnonzero(np.bincount(arr.ravel(), minlength=256)).tolist()
    return [int(v) for v in np.unique(arr)]


def read_mask(path: Path, levels: tuple[int, int] = (0, 255)) -> np.ndarray:
    """A mask file as a boolean array (grey, palette or lossy colour encodings alike)."""
    with Image.open(path) as img:
        img.load()
        values = mask_pixels(img, Path(path).name, lossy=Path(path).suffix.lower().lstrip(".") in LOSSY_EXTS)
    return foreground(values, levels)
