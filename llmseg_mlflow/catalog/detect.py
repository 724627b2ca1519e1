"""Detect the layout of the user's own data for `llmseg datasets add`: a catalog entry from a folder.

Finds masks beside the images with a suffix, or image and mask folders (possibly inside train/ and
test/ sub-folders), or NIfTI image and label volumes; then the extensions, grayscale or RGB, and
the values the masks use. Only a sample of files is opened; the preparation checks every file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image

from llmseg_mlflow.catalog.datasets import LOSSY_EXTS
from llmseg_mlflow.catalog.masks import ColourMaskError, mask_pixels, mask_values
from llmseg_mlflow.catalog.sources import (
    IMAGE_DIR_ALIASES,
    MASK_DIR_ALIASES,
    RASTER_EXTS,
    DatasetSourceError,
    guess_mask_suffix,
    split_ext,
    subdirs,
)

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

_SAMPLE = 16  # files opened to judge colour and mask values


@dataclass(frozen=True)
class DetectedLayout:
    """What `datasets add` found in a source folder, enough to write a catalog entry."""

    source: Path
    format: str
    layout: str
    image_dir: str
    mask_dir: str
    mask_suffix: str
    image_ext: str
    source_mask_ext: str
    colour: str
    mask_values: tuple[int, int]
    values_seen: tuple[int, ...]
    n_images: int
    collections: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    source_image_dirs: tuple[str, ...] = ()

    @property
    def normalized_mask_ext(self) -> str:
        """The extension of normalised masks: the source's when it is a plain lossless one, else png."""
        return self.source_mask_ext if self.source_mask_ext in ("png", "tif", "tiff", "bmp") else "png"

    def describe(self) -> list[str]:
        """What was found, one line per finding, for the CLI."""
        where = f" (in each of {', '.join(c + '/' for c in self.collections)})" if self.collections else ""
        if self.format == "nifti":
            lines = [
                f"found {self.n_images} NIfTI image volume(s) with label volumes{where}",
                f"labels seen: {list(self.values_seen)}; foreground label {self.mask_values[1]} "
                "(mask = label == foreground; other labels are background)",
                "the pool keeps the volumes as they are; held-out slices holding the foreground are scored "
                "(--normalize: those slices become the pool, grayscale PNGs in images/ and masks/)",
            ]
            return lines + list(self.notes)
        if self.layout == "suffix":
            layout = f"one folder, masks beside the images: <name>.{self.image_ext} + <name>{self.mask_suffix}.{self.source_mask_ext}"
        else:
            named = (
                f"<name>{self.mask_suffix}.{self.source_mask_ext}"
                if self.mask_suffix
                else f"<name>.{self.source_mask_ext} (same names)"
            )
            if self.source_image_dirs:
                folders = ", ".join(f"{d}/" for d in self.source_image_dirs)
                layout = f"image folders {folders} (merged into {self.image_dir}/) with <name>.{self.image_ext}, and {self.mask_dir}/{named}"
            else:
                layout = f"two folders: {self.image_dir}/<name>.{self.image_ext} and {self.mask_dir}/{named}"
        lines = [
            f"found {self.n_images} image(s){where}: {layout}",
            f"images: {self.colour}; masks: values seen {list(self.values_seen)} -> "
            f"background {self.mask_values[0]}, foreground {self.mask_values[1]}",
        ]
        if self.source_mask_ext in LOSSY_EXTS:
            lines.append(
                f"masks are .{self.source_mask_ext} (lossy): kept as they are; the platform reads a pixel "
                f"as foreground when it is nearer {self.mask_values[1]} than {self.mask_values[0]}"
            )
        return lines + list(self.notes)

    def entry(
        self, title: str, modality: str, subset_size: int | None, normalize: bool = False
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The raw catalog entry and per-field comments for the user's YAML."""
        entry: dict[str, Any] = {
            "title": title,
            "modality": modality,
            "colour": self.colour,
            "layout": self.layout,
        }
        comments = {"colour": "grayscale | rgb", "layout": "suffix (masks beside images) | folders"}
        if self.layout == "folders":
            entry["image_dir"] = self.image_dir
            entry["mask_dir"] = self.mask_dir
        entry["mask_suffix"] = self.mask_suffix
        entry["image_ext"] = self.image_ext
        entry["mask_ext"] = self.normalized_mask_ext if normalize else self.source_mask_ext
        if entry["mask_ext"] != self.source_mask_ext:
            comments["mask_ext"] = f"the source's .{self.source_mask_ext} masks are stored as .{entry['mask_ext']}"
        entry["mask_values"] = list(self.mask_values)
        comments["mask_values"] = "[background, foreground] in the source"
        entry["normalize"] = normalize
        comments["normalize"] = (
            "true: masks stored as 0/255 under the entry's names; false: the pool keeps the source's files as they are"
        )
        if self.format == "nifti":
            comments["normalize"] = (
                "true: the foreground slices become the pool (8-bit PNGs, 0/255 masks); "
                "false: the pool keeps the volumes as they are"
            )
        entry["subset_size"] = subset_size
        comments["subset_size"] = "null = all"
        entry["heldout_fraction"] = 0.1
        entry["small_foreground"] = False
        comments["small_foreground"] = "true adds '(with small foreground, mostly background)' to the prompt"
        entry["split_by"] = "patient"
        comments["split_by"] = (
            "patient | slice"
            if self.format == "nifti"
            else ("patient | slice; set source.group_pattern to tell patients apart")
        )
        source: dict[str, Any] = {"path": str(self.source)}
        if self.source_image_dirs:
            source["image_dirs"] = list(self.source_image_dirs)
            source["mask_dirs"] = [self.mask_dir]
        if self.format == "nifti":
            source.update({"format": "nifti", "slice_axis": 2, "window": [1, 99]})
        entry["source"] = source
        entry["notes"] = f"added by `llmseg datasets add` on {date.today().isoformat()}"
        return entry, comments


# ---- 2-D images ------------------------------------------------------------------------------------


def _open(path: Path) -> Image.Image | None:
    """The decoded image, or None when unreadable (the preparation reports those by name)."""
    try:
        with Image.open(path) as img:
            img.load()
        return img
    except Exception:  # Pillow raises many types for broken files
        return None


def _rasters(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and split_ext(p.name)[1] in RASTER_EXTS and not p.name.startswith(".")
    )


def _stems(files: list[Path]) -> set[str]:
    return {split_ext(p.name)[0] for p in files}


def _main_ext(files: list[Path]) -> str:
    return Counter(split_ext(p.name)[1] for p in files).most_common(1)[0][0]


def _is_maskish(files: list[Path]) -> bool:
    """True when the files look like masks: few distinct values (or lossy two-level pictures)."""
    for path in files[:4]:
        img = _open(path)
        if img is None:
            continue
        arr = np.asarray(img.convert("L"))
        values = mask_values(arr)
        if len(values) > 8 and split_ext(path.name)[1] not in LOSSY_EXTS:
            return False
        if split_ext(path.name)[1] in LOSSY_EXTS:
            middle = ((arr > 64) & (arr < 192)).mean()
            if middle > 0.05:
                return False
    return True


def _alias_rank(name: str, aliases: tuple[str, ...]) -> int:
    low = name.lower()
    return 0 if low in aliases else 1 if any(a.rstrip("s") in low for a in aliases) else 2


def _folder_pair(parent: Path) -> tuple[Path, Path, str, int] | None:
    """(images folder, masks folder, mask suffix, pairs) of the best-pairing sub-folders of parent."""
    folders = [d for d in subdirs(parent) if _rasters(d)]
    best = None
    for a in folders:
        for b in folders:
            if a == b:
                continue
            suffix, count = guess_mask_suffix(_stems(_rasters(a)), _stems(_rasters(b)))
            if not count:
                continue
            # Same names both ways: the folder names, then the pixels, say which holds the masks.
            score = (count, _alias_rank(b.name, MASK_DIR_ALIASES) == 0, _alias_rank(a.name, IMAGE_DIR_ALIASES) == 0)
            if best is None or score > best[0]:
                best = (score, a, b, suffix, count)
    if best is None:
        return None
    _, images, masks, suffix, count = best
    if not suffix and _alias_rank(masks.name, MASK_DIR_ALIASES) > _alias_rank(images.name, MASK_DIR_ALIASES):
        images, masks = masks, images
    if not suffix and _alias_rank(masks.name, MASK_DIR_ALIASES) == _alias_rank(images.name, MASK_DIR_ALIASES):
        if _is_maskish(_rasters(images)) and not _is_maskish(_rasters(masks)):
            images, masks = masks, images
    return images, masks, suffix, count


def _more_image_dirs(parent: Path, images: Path, masks: Path, suffix: str) -> list[Path]:
    """Other folders whose images the same masks folder completes (HAM10000's part_1 and part_2)."""
    mask_stems = _stems(_rasters(masks))
    taken = set(_stems(_rasters(images)))
    extra = []
    for folder in subdirs(parent):
        if folder in (images, masks) or not _rasters(folder):
            continue
        stems = _stems(_rasters(folder))
        other, count = guess_mask_suffix(stems, mask_stems)
        if count and other == suffix and not stems & taken:
            extra.append(folder)
            taken |= stems
    return extra


def _colour(files: list[Path]) -> str:
    for path in files[:_SAMPLE]:
        img = _open(path)
        if img is None or img.mode in ("L", "1", "I", "I;16", "F", "LA"):
            continue
        arr = np.asarray(img.convert("RGB"))
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            return "rgb"
    return "grayscale"


def _mask_values(files: list[Path], foreground: int | None) -> tuple[tuple[int, int], tuple[int, ...], list[str]]:
    """([background, foreground], values seen, notes) from a spread sample of masks."""
    step = max(1, len(files) // _SAMPLE)
    sample = files[::step][:_SAMPLE]
    lossy = split_ext(sample[0].name)[1] in LOSSY_EXTS
    seen: set[int] = set()
    notes: list[str] = []
    for path in sample:
        img = _open(path)
        if img is None:
            continue
        try:
            arr = mask_pixels(img, path.name, lossy=lossy)
        except ColourMaskError:
            raise DatasetSourceError(
                f"{path} is a colour mask (its channels differ); save masks as single-channel images"
            ) from None
        seen.update(mask_values(arr))
    values = tuple(sorted(seen))
    if not values:
        raise DatasetSourceError(f"none of the sampled masks could be read, e.g. {sample[0]}")
    if lossy:
        return (0, 255), (min(values), max(values)), notes
    if foreground is not None:
        if foreground not in seen:
            raise DatasetSourceError(
                f"--foreground-value {foreground} does not occur in the masks (values seen: {list(values)})"
            )
        others = [v for v in values if v != foreground]
        if len(others) > 1:
            raise DatasetSourceError(
                f"masks hold the values {list(values)}: more than background and foreground {foreground}; "
                "llmseg prepares binary masks, so convert them to one label first"
            )
        return (others[0] if others else 0, foreground), values, notes
    if len(values) == 2:
        return (values[0], values[1]), values, notes
    if len(values) == 1:
        notes.append(f"the sampled masks only hold {values[0]}: assuming background 0 and foreground 255")
        return (0, 255) if values[0] in (0, 255) else (0, values[0]), values, notes
    raise DatasetSourceError(
        f"masks hold the values {list(values[:12])}: which one is the foreground? Pass --foreground-value N "
        "(other values must be background 0), or convert the masks to two values"
    )


def _detect_images(root: Path, foreground: int | None) -> DetectedLayout:
    files = _rasters(root)
    stems = _stems(files)
    suffix, count = guess_mask_suffix(stems, stems, same_folder=True)
    if count and suffix and count >= (len(files) - count) / 2:
        masks = [p for p in files if split_ext(p.name)[0].endswith(suffix)]
        images = [p for p in files if not split_ext(p.name)[0].endswith(suffix)]
        values, seen, notes = _mask_values(masks, foreground)
        return DetectedLayout(
            root,
            "images",
            "suffix",
            "images",
            "masks",
            suffix,
            _main_ext(images),
            _main_ext(masks),
            _colour(images),
            values,
            seen,
            len(images),
            (),
            tuple(notes),
        )
    parents = [root] + [d for d in subdirs(root)]
    for parent in parents:
        found = _folder_pair(parent)
        if found is None:
            continue
        images_dir, masks_dir, suffix, _ = found
        collections: tuple[str, ...] = ()
        if parent != root:
            collections = tuple(
                d.name for d in subdirs(root) if (d / images_dir.name).is_dir() and (d / masks_dir.name).is_dir()
            )
        extra = _more_image_dirs(parent, images_dir, masks_dir, suffix) if parent == root else []
        images = [p for d in [images_dir, *extra] for p in _rasters(d)]
        masks = _rasters(masks_dir)
        values, seen, notes = _mask_values(masks, foreground)
        n_images = sum(len(_rasters(root / c / images_dir.name)) for c in collections) if collections else len(images)
        image_dir = "images" if extra and masks_dir.name != "images" else images_dir.name
        return DetectedLayout(
            root,
            "images",
            "folders",
            image_dir,
            masks_dir.name,
            suffix,
            _main_ext(images),
            _main_ext(masks),
            _colour(images),
            values,
            seen,
            n_images,
            collections,
            tuple(notes),
            tuple(d.name for d in [images_dir, *extra]) if extra else (),
        )
    raise DatasetSourceError(
        f"could not find images with masks in {root}: expected masks beside the images with a suffix "
        "(1.png + 1_seg.png), or two folders such as images/ and masks/ whose files share names "
        "(1.png + 1.png, or 1.jpg + 1_m.png), or NIfTI volumes in images/ and labels/"
    )


# ---- NIfTI --------------------------------------------------------------------------------------


def _detect_volumes(root: Path, foreground: int | None) -> DetectedLayout:
    import nibabel as nib

    from llmseg_mlflow.catalog.datasets import DatasetSpec, SourceSpec
    from llmseg_mlflow.catalog.sources_nifti import VolumeSource

    probe = DatasetSpec(
        key="probe", title="", modality="", colour="grayscale", layout="folders", source=SourceSpec(format="nifti")
    )
    units = VolumeSource(probe, root).listing.units
    seen: set[int] = set()
    for unit in units[:3]:
        labels = np.asanyarray(cast("SpatialImage", nib.load(str(unit.mask))).dataobj)
        seen.update(int(v) for v in np.unique(labels)[:64])
    values = tuple(sorted(seen))
    if foreground is None:
        others = [v for v in values if v != 0]
        if len(others) != 1:
            raise DatasetSourceError(
                f"label volumes hold the labels {list(values)}: pass --foreground-value N to say which one "
                "to segment (the others become background)"
            )
        foreground = others[0]
    elif foreground not in seen:
        raise DatasetSourceError(
            f"--foreground-value {foreground} does not occur in the first label volumes (labels: {list(values)})"
        )
    return DetectedLayout(
        root,
        "nifti",
        "folders",
        "images",
        "masks",
        "",
        "png",
        "png",
        "grayscale",
        (0, foreground),
        values,
        len(units),
    )


def detect_layout(source: Path, foreground: int | None = None) -> DetectedLayout:
    """The layout of a folder of the user's own data (images with masks, or NIfTI volumes)."""
    from llmseg_mlflow.catalog.sources_nifti import has_volumes

    root = Path(source).expanduser().resolve()
    if not root.is_dir():
        raise DatasetSourceError(f"source folder {root} does not exist")
    if not any(root.iterdir()):
        raise DatasetSourceError(f"source folder {root} is empty")
    if has_volumes(root):
        return _detect_volumes(root, foreground)
    return _detect_images(root, foreground)
