"""Which adapter reads a source: NIfTI volumes (sources_nifti), else 2-D image files (sources)."""

from __future__ import annotations

from pathlib import Path

from llmseg_mlflow.catalog.datasets import DatasetSpec
from llmseg_mlflow.catalog.sources import DatasetSourceError, ImageSource, Source
from llmseg_mlflow.catalog.sources_nifti import VolumeSource, has_volumes


def open_source(spec: DatasetSpec, root: Path, mask_suffix: str | None = None) -> Source:
    """The adapter for the entry's source format, with its listing made (pairing errors raise)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetSourceError(f"source folder {root} for dataset {spec.key!r} does not exist")
    if spec.source.is_volumes:
        if has_volumes(root):
            return VolumeSource(spec, root, mask_suffix)
        # Slices already exported as image files (as the study did) are read like any 2-D dataset.
        try:
            return ImageSource(spec, root, mask_suffix)
        except DatasetSourceError as exc:
            raise DatasetSourceError(
                f"no NIfTI volumes (.nii, .nii.gz) found in {root} or two folders below it, and no exported "
                f"slices either ({exc}); see docs/datasets.md for the layout of {spec.key!r}"
            ) from None
    return ImageSource(spec, root, mask_suffix)
