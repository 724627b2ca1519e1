"""Pools of NIfTI volumes kept as they are: the source's image and label volumes under their relative paths
in pool/ and heldout/, and beside them heldout_slices/, the held-out slices that evaluation scores.

The study is 2-D: every held-out slice along `source.slice_axis` that holds the foreground label is one
scored image (8-bit PNG, 0/255 mask), exactly the slices a normalised preparation would hold. Pipelines
read the volumes as code written for the real dataset does; the platform scores them on those slices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from llmseg_mlflow.catalog.datasets import DatasetSpec
from llmseg_mlflow.catalog.sources import Unit
from llmseg_mlflow.catalog.sources_nifti import read_volume_pair, volume_id

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

SLICES = "heldout_slices"  # beside pool/ and heldout/: images/ and masks/ of the scored slices


def volume_ext(path: Path) -> str:
    """'nii.gz' or 'nii'."""
    return "nii.gz" if path.name.lower().endswith(".nii.gz") else "nii"


def volume_layout(units: Iterable[Unit], root: Path) -> dict[str, str]:
    """How the pool's volumes are laid out (folders, label suffix, extensions), for the prompt and the knobs.

    A layout with one folder per case has image_dir = mask_dir = '.': the knobs then name the pool root.
    """
    units = list(units)
    image_dirs = {u.image.parent.relative_to(root).as_posix() for u in units}
    mask_dirs = {u.mask.parent.relative_to(root).as_posix() for u in units}
    suffixes = {
        volume_id(u.mask)[len(volume_id(u.image)) :] for u in units if volume_id(u.mask).startswith(volume_id(u.image))
    }
    return {
        "image_dir": image_dirs.pop() if len(image_dirs) == 1 else ".",
        "mask_dir": mask_dirs.pop() if len(mask_dirs) == 1 else ".",
        "mask_suffix": suffixes.pop() if len(suffixes) == 1 else "",
        "image_ext": volume_ext(units[0].image),
        "mask_ext": volume_ext(units[0].mask),
    }


def place_volumes(
    units: Iterable[Unit],
    root: Path,
    base: Path,
    split: str,
    copy: Callable[[Path, Path], None],
    sha256: Callable[[Path], str],
) -> list[dict[str, Any]]:
    """Copy each unit's image and label volume to base/split/<its path in the source>; manifest entries."""
    entries = []
    for unit in units:
        for role, src in (("image", unit.image), ("mask", unit.mask)):
            rel = src.relative_to(root)
            dst = base / split / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy(src, dst)
            entries.append(
                {
                    "split": split,
                    "role": role,
                    "stem": unit.key,
                    "path": dst.relative_to(base).as_posix(),
                    "sha256": sha256(dst),
                    "group": unit.group,
                    "volume": unit.key,
                }
            )
    return entries


def scored_slices(files: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Volume key -> the indices of its scored held-out slices, from the manifest's entries."""
    out: dict[str, list[int]] = {}
    for entry in files:
        if entry["split"] == SLICES and entry["role"] == "image":
            out.setdefault(entry["volume"], []).append(int(entry["slice"]))
    return {k: sorted(v) for k, v in out.items()}


def blank_label_volume(real: Path, dst: Path, slices: list[int], axis: int, foreground: int) -> None:
    """A label volume of the real one's shape, type and header that marks each scored slice as foreground.

    It tells the sandbox only which slices are scored (it is told anyway, to predict them), so code that
    keeps the slices holding the foreground label keeps exactly those; the real outline never enters it.
    """
    import nibabel as nib

    label = cast("SpatialImage", nib.load(str(real)))  # typed FileBasedImage; NIfTI loads are spatial images
    data = np.zeros(label.shape, dtype=label.get_data_dtype())
    index: list[Any] = [slice(None)] * 3
    for k in slices:
        index[axis] = k
        data[tuple(index)] = foreground
    nib.save(nib.Nifti1Image(data, label.affine, label.header), str(dst))


def pool_slices(
    spec: DatasetSpec, pool_volumes: list[tuple[str, Path, Path]], root: Path, dest: Path
) -> list[tuple[Path, Path]]:
    """Write the foreground slices of the pool's volumes into dest/images and dest/masks (8-bit PNG, 0/255),
    for tools that train on 2-D images (nnU-Net's 2d baseline); (image, mask) paths in volume order."""
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    pairs = []
    for index, (key, image, mask) in enumerate(pool_volumes):
        for sample in read_volume_pair(spec, Unit(index, key, image, mask, key), root).samples:
            pair = dest / "images" / f"{sample.stem}.png", dest / "masks" / f"{sample.stem}.png"
            for path, blob in zip(pair, (sample.image, sample.mask)):
                if not path.exists():
                    path.write_bytes(blob.data or b"")
            pairs.append(pair)
    return pairs
