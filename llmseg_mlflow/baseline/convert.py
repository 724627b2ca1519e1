"""A prepared dataset in nnU-Net v2's raw format: imagesTr/_0000.png, labelsTr 0/1 PNGs, dataset.json.

nnU-Net reads PNG (never JPEG: lossy) through its NaturalImage2DIO reader; an RGB PNG is read as
three channels, so RGB images stay one file and dataset.json names three channels (as nnU-Net's own
Dataset120_RoadSegmentation conversion does). Held-out images are converted the same way into
imagesTs/, so prediction reads them exactly as training read the pool.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from llmseg_mlflow.catalog.masks import ColourMaskError, read_mask
from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.catalog.volume_pool import pool_slices
from llmseg_mlflow.errors import UsageError

DATASET_ID = 1  # every baseline has its own nnUNet_raw folder, so the id never collides
FILE_ENDING = ".png"
READER = "NaturalImage2DIO"
CASES_FILE = "cases.json"


@dataclass(frozen=True)
class RawDataset:
    """One converted dataset under nnUNet_raw: its folder and which case is which original file."""

    folder: Path  # nnUNet_raw/Dataset001_<key>
    name: str  # Dataset001_<key>
    channels: tuple[str, ...]
    train_cases: dict[str, str]  # case id -> pool image file name
    heldout_cases: dict[str, str]  # case id -> held-out image file name (the evaluator's key)

    @property
    def images_tr(self) -> Path:
        """Training images (`{case}_0000.png`)."""
        return self.folder / "imagesTr"

    @property
    def labels_tr(self) -> Path:
        """Training labels (`{case}.png`, values 0/1)."""
        return self.folder / "labelsTr"

    @property
    def images_ts(self) -> Path:
        """Held-out images (`{case}_0000.png`), read by the predictor."""
        return self.folder / "imagesTs"

    def heldout_image(self, case: str) -> Path:
        """The converted file of one held-out case."""
        return self.images_ts / f"{case}_0000{FILE_ENDING}"

    @property
    def dataset_json(self) -> Path:
        """nnU-Net's dataset.json."""
        return self.folder / "dataset.json"


def dataset_name(key: str) -> str:
    """`Dataset001_<key>` with the characters nnU-Net's name parsing tolerates."""
    return f"Dataset{DATASET_ID:03d}_{re.sub(r'[^A-Za-z0-9]+', '', key) or 'data'}"


def channel_names(colour: str) -> tuple[str, ...]:
    """The dataset.json channels: one for grayscale, R, G, B for RGB (z-score normalised each)."""
    return ("R", "G", "B") if colour == "rgb" else ("gray",)


def read_image(path: Path, colour: str) -> Image.Image:
    """An image in the catalog's colour: 8-bit gray or RGB (JPEG, palette, alpha all decoded here)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB" if colour == "rgb" else "L")
    except OSError as exc:
        raise UsageError(
            f"cannot read image {path} ({exc}); re-prepare the dataset (`llmseg datasets prepare NAME --force`)"
        ) from exc


def read_label(path: Path, size: tuple[int, int], levels: tuple[int, int] = (0, 255)) -> np.ndarray:
    """A prepared mask as nnU-Net labels (uint8 0/1), by the platform's one mask rule; a mask of another
    size than its image is an error."""
    try:
        label = read_mask(path, levels).astype(np.uint8)
    except (OSError, ColourMaskError) as exc:
        raise UsageError(f"cannot read mask {path} ({type(exc).__name__}: {exc}); re-prepare the dataset") from exc
    if label.shape[::-1] != size:
        raise UsageError(
            f"mask {path} is {label.shape[1]}x{label.shape[0]} but its image is {size[0]}x{size[1]}; "
            "nnU-Net needs them the same size: re-prepare the dataset"
        )
    check_labels(label, path)
    return label


def check_labels(label: np.ndarray, path: Path) -> None:
    """nnU-Net trains on labels 0 (background) and 1 (foreground) only."""
    bad = np.setdiff1d(np.unique(label), [0, 1])
    if bad.size:
        raise UsageError(f"labels converted from {path} hold {bad.tolist()[:8]}, not only 0/1; fix the mask")


def _write_case(
    image: Path,
    mask: Path | None,
    colour: str,
    image_out: Path,
    label_out: Path | None,
    levels: tuple[int, int] = (0, 255),
) -> None:
    img = read_image(image, colour)
    img.save(image_out)  # PNG: lossless, and the only format of the three nnU-Net reads that we need
    if mask is not None and label_out is not None:
        Image.fromarray(read_label(mask, img.size, levels)).save(label_out)


def convert(data: PreparedDataset, raw_root: Path, progress: Callable[[str], None] = lambda _: None) -> RawDataset:
    """Write the pool as nnU-Net's training set and the held-out images as imagesTs under raw_root.

    A pool of NIfTI volumes trains on their foreground slices (the 2d configuration on what is scored)."""
    with tempfile.TemporaryDirectory(prefix="pool_slices.", dir=raw_root if raw_root.is_dir() else None) as tmp:
        return _convert(data, raw_root, progress, Path(tmp))


def _convert(data: PreparedDataset, raw_root: Path, progress: Callable[[str], None], scratch: Path) -> RawDataset:
    if data.volumes:
        progress(
            f"slicing the {len(data.pool_volumes())} pool volumes of {data.spec.key!r} for nnU-Net's 2d configuration"
        )
    pool, heldout = _pairs(data, scratch)
    name = dataset_name(data.spec.key)
    channels = channel_names(data.spec.colour)
    raw = RawDataset(
        raw_root / name,
        name,
        channels,
        {f"pool_{i:05d}": img.name for i, (img, _) in enumerate(pool)},
        {f"heldout_{i:05d}": img.name for i, (img, _) in enumerate(heldout)},
    )
    for folder in (raw.images_tr, raw.labels_tr, raw.images_ts):
        folder.mkdir(parents=True, exist_ok=True)
    progress(f"converting {len(pool)} pool and {len(heldout)} held-out images to nnU-Net's raw format")
    bar = tqdm(total=len(pool) + len(heldout), desc="convert", unit="img", leave=False)
    for case, (img, mask) in zip(raw.train_cases, pool):
        _write_case(
            img,
            mask,
            data.spec.colour,
            raw.images_tr / f"{case}_0000{FILE_ENDING}",
            raw.labels_tr / f"{case}{FILE_ENDING}",
            data.mask_levels,
        )
        bar.update()
    for case, (img, _) in zip(raw.heldout_cases, heldout):
        _write_case(img, None, data.spec.colour, raw.heldout_image(case), None)
        bar.update()
    bar.close()
    raw.dataset_json.write_text(
        json.dumps(
            {
                "channel_names": {str(i): c for i, c in enumerate(channels)},
                "labels": {"background": 0, "foreground": 1},
                "numTraining": len(pool),
                "file_ending": FILE_ENDING,
                "overwrite_image_reader_writer": READER,
                "name": data.spec.key,
                "description": f"{data.spec.title}: the prepared pool (digest {data.digest[:16]})",
            },
            indent=2,
        )
    )
    (raw.folder / CASES_FILE).write_text(json.dumps({"train": raw.train_cases, "heldout": raw.heldout_cases}, indent=2))
    return raw


def _pairs(data: PreparedDataset, scratch: Path) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """The pool and held-out pairs (a pool of volumes sliced into scratch), or a UsageError naming what is missing."""
    fix = f"prepare it again: `llmseg datasets prepare {data.spec.key} --force`"
    if not data.pool.is_dir():
        raise UsageError(f"the pool of dataset {data.spec.key!r} is missing ({data.pool}); {fix}")
    pool = pool_slices(data.spec, data.pool_volumes(), data.pool, scratch) if data.volumes else data.pool_pairs()
    if len(pool) < 5:  # nnU-Net's fold 0 is a 5-fold split of the pool
        raise UsageError(
            f"the pool of dataset {data.spec.key!r} ({data.pool}) holds {len(pool)} image/mask "
            f"pairs; nnU-Net needs at least 5; {fix}"
        )
    heldout = data.heldout_pairs()
    if not heldout:
        raise UsageError(f"dataset {data.spec.key!r} has no held-out images ({data.heldout}); {fix}")
    return pool, heldout
