"""Tiny fake downloads in the layouts of the study's datasets: real PNG/JPEG/GIF files and real NIfTI volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


def image(rng: np.random.Generator, rgb: bool = False, size: int = SIZE) -> np.ndarray:
    """A noisy picture (uint8), RGB with distinct channels when asked."""
    shape = (size, size, 3) if rgb else (size, size)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def mask(rng: np.random.Generator, size: int = SIZE, foreground: int = 255) -> np.ndarray:
    """A square of foreground on background 0."""
    out = np.zeros((size, size), np.uint8)
    y, x = rng.integers(2, size // 2, size=2)
    out[y : y + size // 3, x : x + size // 3] = foreground
    return out


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    """Write an array as an image file (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def bagls(root: Path, n: int, seed: int = 0) -> Path:
    """BAGLS: <n>.png frames (RGB-looking), <n>_seg.png masks and <n>.meta files in one folder."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        frame = image(rng)
        save(np.stack([frame] * 3, axis=-1), root / f"{i}.png")
        save(mask(rng), root / f"{i}_seg.png")
        (root / f"{i}.meta").write_text("{'Video Id': 1}")
    return root


def folders(
    root: Path,
    n: int,
    *,
    image_dir: str = "images",
    mask_dir: str = "masks",
    image_ext: str = "png",
    mask_ext: str = "png",
    suffix: str = "",
    rgb: bool = False,
    foreground: int = 255,
    seed: int = 0,
    names: list[str] | None = None,
) -> Path:
    """Images and masks in two folders; masks named <name><suffix>.<mask_ext>."""
    rng = np.random.default_rng(seed)
    for name in names or [str(i) for i in range(n)]:
        save(image(rng, rgb), root / image_dir / f"{name}.{image_ext}")
        save(mask(rng, foreground=foreground), root / mask_dir / f"{name}{suffix}.{mask_ext}")
    return root


def ham10000(root: Path, n: int, duplicate_part: bool = False) -> Path:
    """HAM10000: ISIC_*.jpg in two part folders, ISIC_*_segmentation.png in the tschandl folder."""
    rng = np.random.default_rng(1)
    for i in range(n):
        name = f"ISIC_{24306 + i:07d}"
        part = 1 if i < n // 2 else 2
        save(image(rng, rgb=True), root / f"HAM10000_images_part_{part}" / f"{name}.jpg", quality=95)
        save(mask(rng), root / "HAM10000_segmentations_lesion_tschandl" / f"{name}_segmentation.png")
        if duplicate_part and part == 1:
            # Kaggle's copy ships part 1 twice, once in lower case.
            copy = root / "ham10000_images_part_1" / f"{name}.jpg"
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes((root / f"HAM10000_images_part_{part}" / f"{name}.jpg").read_bytes())
    (root / "HAM10000_metadata.csv").write_text("lesion_id,image_id\n")
    return root


def retina(root: Path, n_per_split: int) -> Path:
    """Combined retina: train/ and test/ with image/ (RGB .tif) and mask/ (.gif) sharing names 01, 02, ..."""
    rng = np.random.default_rng(2)
    for split in ("train", "test"):
        for i in range(1, n_per_split + 1):
            save(image(rng, rgb=True), root / split / "image" / f"{i:02d}.tif")
            save(mask(rng), root / split / "mask" / f"{i:02d}.gif")
    return root


def volumes(
    root: Path,
    n: int,
    *,
    myoma: dict[int, range] | None = None,
    shape: tuple[int, int, int] = (32, 32, 12),
    image_dir: str = "images",
    label_dir: str = "labels",
    image_name: str = "case_{i:03d}.nii.gz",
    label_name: str = "case_{i:03d}.nii.gz",
    label_affine: np.ndarray | None = None,
    label_shape: tuple[int, int, int] | None = None,
    myoma_brightness: float = 0.0,
) -> Path:
    """UMD-like NIfTI volumes: uterus labels 1/2 in most slices, myoma label 3 in the given slices
    (myoma_brightness added to its voxels makes it segmentable by a threshold)."""
    import nibabel as nib

    rng = np.random.default_rng(3)
    myoma = myoma if myoma is not None else {i: range(3 + i % 3, 8 + i % 2) for i in range(n)}
    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    for i in range(n):
        pixels = rng.normal(300.0 + 50 * i, 80.0, size=shape).astype(np.float32)
        pixels[0, 0, 0] = 5000.0  # an outlier that windowing must clip
        labels = np.zeros(label_shape or shape, np.uint8)
        labels[4:28, 4:28, 1:-1] = 1
        labels[10:20, 10:20, 2:-2] = 2
        for k in myoma.get(i, ()):
            labels[12 + i : 20 + i, 8:16, k] = 3
        if myoma_brightness and labels.shape == pixels.shape:
            pixels[labels == 3] += myoma_brightness
        (root / image_dir).mkdir(parents=True, exist_ok=True)
        (root / label_dir).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(pixels, affine), str(root / image_dir / image_name.format(i=i)))
        lab_affine = affine if label_affine is None else label_affine
        nib.save(nib.Nifti1Image(labels, lab_affine), str(root / label_dir / label_name.format(i=i)))
    return root
