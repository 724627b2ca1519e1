"""NIfTI adapter: image and label volumes, read as the 8-bit PNG slices that contain the foreground label.

Each volume pair is read once (nibabel), checked (shape, orientation, voxel size, integer labels),
windowed to 8 bits between two intensity percentiles of that volume, and every slice along
`source.slice_axis` that holds the foreground label becomes one image/mask pair; the mask is
label == foreground, every other label is background. The slice's volume and index go to the manifest.
A normalised preparation stores these slices as the pool; otherwise the pool keeps the volumes and the
held-out slices are what evaluation scores (catalog/volume_pool.py).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from llmseg_mlflow.catalog.datasets import DatasetSpec
from llmseg_mlflow.catalog.sources import (
    Blob,
    DatasetSourceError,
    Listing,
    ReadResult,
    Sample,
    SampleProblem,
    Unit,
    encode,
    guess_mask_suffix,
    listing,
    natural_key,
    resolve_dirs,
    sha256_bytes,
    subdirs,
)

VOLUME_IMAGE_ALIASES = ("images", "image", "imagestr", "imgs", "img", "volumes", "volume", "mri", "data")
VOLUME_LABEL_ALIASES = (
    "labels",
    "label",
    "labelstr",
    "masks",
    "mask",
    "segmentations",
    "segmentation",
    "seg",
    "gt",
    "annotations",
)
_LABEL_WORDS = ("label", "seg", "mask", "gt", "annot")
_PLANES = {"R": "sagittal", "L": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}
_CHANNEL = re.compile(r"_\d{4}$")  # nnU-Net's channel suffix: case_001_0000.nii.gz


def is_nifti(path: Path) -> bool:
    """True for .nii and .nii.gz files."""
    name = path.name.lower()
    return path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz"))


def volume_id(path: Path) -> str:
    """The file name without .nii/.nii.gz."""
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]


def has_volumes(root: Path) -> bool:
    """True when NIfTI files lie in root or up to two folders below it."""
    for depth in ("*", "*/*", "*/*/*"):
        if any(is_nifti(p) for p in root.glob(depth)):
            return True
    return False


def _niftis(folder: Path, ignored: Counter) -> list[Path]:
    files = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if is_nifti(path):
            files.append(path)
        elif path.is_file():
            ext = path.name.rpartition(".")[2] if "." in path.name.strip(".") else "no extension"
            ignored[f"non-NIfTI file(s) (.{ext}), ignored"] += 1
    return files


class VolumeSource:
    """Image and label volumes: in two folders, in one folder with a label suffix, or one folder per case."""

    is_volumes = True

    def __init__(self, spec: DatasetSpec, root: Path, mask_suffix: str | None = None) -> None:
        self.spec = spec
        self.root = root
        self.explicit_suffix = mask_suffix if mask_suffix is not None else spec.source.mask_suffix
        self.listing = self._list()

    # -- listing --

    def _list(self) -> Listing:
        spec, src = self.spec, self.spec.source
        ignored: Counter = Counter()
        notes: list[str] = []
        images = resolve_dirs(self.root, spec.image_dir, src.image_dirs, VOLUME_IMAGE_ALIASES, "images")
        labels = resolve_dirs(self.root, spec.mask_dir, src.mask_dirs, VOLUME_LABEL_ALIASES, "masks")
        if images and labels:
            pairs = self._pair_folders(images, labels, ignored, notes)
        elif any(is_nifti(p) for p in self.root.iterdir()):
            pairs = self._pair_one_folder(ignored, notes)
        else:
            pairs = self._pair_case_folders(ignored)
        pattern = re.compile(src.group_pattern) if src.group_pattern else None
        units = []
        for index, key in enumerate(sorted(pairs, key=natural_key)):
            group = key
            if pattern is not None and (found := pattern.search(key)) is not None:
                group = found.group(1) if found.groups() else found.group(0)
            units.append(Unit(index, key, pairs[key][0], pairs[key][1], group))
        return Listing(units, notes, ignored)

    def _suffix(self, image_ids: set[str], label_ids: set[str], same_folder: bool, notes: list[str]) -> str:
        if self.explicit_suffix is not None:
            return self.explicit_suffix
        suffix, count = guess_mask_suffix(image_ids, label_ids, same_folder)
        if count and suffix:
            notes.append(f"label volumes are named <case>{suffix}.nii.gz")
        return suffix

    def _check_pairs(self, images: dict[str, Path], labels: dict[str, Path], where: str) -> None:
        problems = []
        no_label = sorted((k for k in images if k not in labels), key=natural_key)
        if no_label:
            problems.append(
                f"{len(no_label)} image volume(s) without a label volume: "
                + listing([images[k].name for k in no_label])
            )
        no_image = sorted((k for k in labels if k not in images), key=natural_key)
        if no_image:
            problems.append(
                f"{len(no_image)} label volume(s) without an image volume: "
                + listing([labels[k].name for k in no_image])
            )
        if not images:
            problems.append(f"no image volumes (.nii or .nii.gz) found in {where}")
        if problems:
            raise DatasetSourceError(f"dataset {self.spec.key!r} at {self.root}: " + "; ".join(problems))

    def _pair_folders(
        self, image_dirs: list[Path], label_dirs: list[Path], ignored: Counter, notes: list[str]
    ) -> dict[str, tuple[Path, Path]]:
        images = {_CHANNEL.sub("", volume_id(p)): p for d in image_dirs for p in _niftis(d, ignored)}
        label_files = [p for d in label_dirs for p in _niftis(d, ignored)]
        suffix = self._suffix(set(images), {volume_id(p) for p in label_files}, False, notes)
        labels = {}
        for path in label_files:
            key = volume_id(path)
            if suffix and key.lower().endswith(suffix.lower()):
                key = key[: -len(suffix)]
            labels[key] = path
        self._check_pairs(images, labels, ", ".join(f"{d.name}/" for d in image_dirs))
        return {k: (images[k], labels[k]) for k in images}

    def _pair_one_folder(self, ignored: Counter, notes: list[str]) -> dict[str, tuple[Path, Path]]:
        files = {volume_id(p): p for p in _niftis(self.root, ignored)}
        suffix = self._suffix(set(files), set(files), True, notes)
        if not suffix:
            raise DatasetSourceError(
                f"dataset {self.spec.key!r}: {self.root} holds NIfTI files but no label volumes named like "
                f"<case>_seg.nii.gz; put images in images/ and labels in labels/, or pass the label suffix (--mask-suffix)"
            )
        low = suffix.lower()
        labels = {k[: -len(suffix)]: p for k, p in files.items() if k.lower().endswith(low)}
        images = {_CHANNEL.sub("", k): p for k, p in files.items() if not k.lower().endswith(low)}
        self._check_pairs(images, labels, str(self.root))
        return {k: (images[k], labels[k]) for k in images}

    def _pair_case_folders(self, ignored: Counter) -> dict[str, tuple[Path, Path]]:
        pairs, problems = {}, []
        for folder in subdirs(self.root):
            files = _niftis(folder, ignored)
            if not files:
                continue
            labels = [p for p in files if any(w in volume_id(p).lower() for w in _LABEL_WORDS)]
            images = [p for p in files if p not in labels]
            if len(images) == 1 and len(labels) == 1:
                pairs[folder.name] = (images[0], labels[0])
            else:
                problems.append(f"{folder.name}/ ({len(images)} image and {len(labels)} label volume(s))")
        if problems:
            raise DatasetSourceError(
                f"dataset {self.spec.key!r} at {self.root}: case folders need exactly one image volume and one "
                f"label volume (named with label/seg/mask): " + listing(problems)
            )
        if not pairs:
            raise DatasetSourceError(
                f"dataset {self.spec.key!r}: no NIfTI volumes found under {self.root}; expected images/ and "
                f"labels/ folders of .nii.gz files (see docs/datasets.md)"
            )
        return pairs

    # -- reading --

    def read(self, unit: Unit) -> ReadResult:
        """Load one image/label pair once and return its foreground slices as PNG samples."""
        return read_volume_pair(self.spec, unit, self.root)


def read_volume_pair(spec: DatasetSpec, unit: Unit, root: Path) -> ReadResult:
    """The foreground slices of one image/label volume pair (paths in the manifest relative to root), checked."""
    import nibabel as nib

    image, label = _load(nib, unit.image), _load(nib, unit.mask)
    image_shape, label_shape = _spatial(image.shape, unit.image.name), _spatial(label.shape, unit.mask.name)
    if image_shape != label_shape:
        raise SampleProblem("shape", f"{unit.mask.name} {label_shape} vs image {unit.image.name} {image_shape}")
    image_axes, label_axes = nib.aff2axcodes(image.affine), nib.aff2axcodes(label.affine)
    if image_axes != label_axes:
        raise SampleProblem(
            "orientation",
            f"{unit.mask.name} is {''.join(label_axes)} but {unit.image.name} is {''.join(image_axes)} "
            "(reorient one to the other, e.g. with nibabel.as_closest_canonical on both)",
        )
    image_zooms, label_zooms = image.header.get_zooms()[:3], label.header.get_zooms()[:3]
    if not np.allclose(image_zooms, label_zooms, rtol=1e-2):
        raise SampleProblem(
            "orientation",
            f"{unit.mask.name} voxel size {tuple(round(float(z), 3) for z in label_zooms)} vs "
            f"image {tuple(round(float(z), 3) for z in image_zooms)}",
        )
    try:
        pixels = np.asarray(image.get_fdata(dtype=np.float32)).reshape(image_shape)
        labels = np.asanyarray(label.dataobj).reshape(label_shape)
    except Exception as exc:  # truncated .gz files fail only here
        raise SampleProblem("unreadable", f"{unit.image.name}/{unit.mask.name} ({type(exc).__name__}: {exc})") from None
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.rint(labels)):
        raise SampleProblem("labels", f"{unit.mask.name} (is it an image rather than a label volume?)")
    foreground = labels == spec.foreground_value
    return _slices(spec, unit, root, pixels, foreground, labels, image_axes)


def _slices(
    spec: DatasetSpec,
    unit: Unit,
    root: Path,
    pixels: np.ndarray,
    foreground: np.ndarray,
    labels: np.ndarray,
    axes: tuple,
) -> ReadResult:
    axis = spec.source.slice_axis
    plane = _PLANES.get(axes[axis], "?")
    note = f"voxel axis {axis} runs {axes[axis]}: {plane} slices"
    others = tuple(a for a in range(3) if a != axis)
    keep = np.flatnonzero(foreground.any(axis=others))
    n_slices = pixels.shape[axis]
    label_name = f"label {spec.foreground_value}"
    skipped = {f"slices without {label_name}": n_slices - len(keep)}
    if not len(keep):
        found = [int(v) for v in np.unique(labels)[:12]]
        skipped[f"volumes without {label_name} (labels found, e.g. {found})"] = 1
        return ReadResult([], skipped, [note])
    is_finite = np.isfinite(pixels)
    finite = pixels if is_finite.all() else pixels[is_finite]
    low, high = np.percentile(finite, spec.source.window) if finite.size else (0.0, 0.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    # Slicing a moved axis is a view; np.take along the last axis copies slowly.
    pixels, foreground = np.moveaxis(pixels, axis, 0), np.moveaxis(foreground, axis, 0)
    width = max(3, len(str(n_slices - 1)))
    source = unit.image.relative_to(root).as_posix()
    label_source = unit.mask.relative_to(root).as_posix()
    samples = []
    for k in keep.tolist():
        window = (np.clip(pixels[k], low, high) - low) * scale
        image_png = encode(np.nan_to_num(window).round().astype(np.uint8), "png")
        mask_png = encode(foreground[k].astype(np.uint8) * 255, "png")
        meta = (
            ("source", source),
            ("label_source", label_source),
            ("volume", unit.key),
            ("slice", k),
            ("slice_axis", axis),
        )
        samples.append(
            Sample(
                f"{unit.key}_{k:0{width}d}",
                unit.group,
                (unit.index, k),
                Blob(None, image_png, sha256_bytes(image_png)),
                Blob(None, mask_png, sha256_bytes(mask_png)),
                "L",
                meta,
            )
        )
    return ReadResult(samples, skipped, [note])


def _load(nib, path: Path):
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, ...
        raise SampleProblem("unreadable", f"{path.name} ({type(exc).__name__}: {exc})") from None


def _spatial(shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    """The 3-D shape, dropping trailing singleton axes (a 4-D volume with one time point)."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) != 3:
        raise SampleProblem("shape", f"{name} has shape {tuple(shape)}; expected a 3-D volume (one sequence per file)")
    return dims[0], dims[1], dims[2]
