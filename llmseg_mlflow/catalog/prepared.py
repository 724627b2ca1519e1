"""A prepared dataset as the manifest describes it: where its splits lie, what its pool holds, its pairs,
and the checks that its files are still what was prepared (catalog/integrity.py does the hashing)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmseg_mlflow.catalog.datasets import DatasetSpec
from llmseg_mlflow.catalog.integrity import (
    PreparedDataModifiedError,
    _blind_heldout,
    _copy_hard_links,
    _digest,
    _read_manifest,
    _sha256,
    _verify_split,
)
from llmseg_mlflow.catalog.masks import read_mask
from llmseg_mlflow.catalog.sources import listing, natural_key
from llmseg_mlflow.catalog.summary import PrepareSummary
from llmseg_mlflow.catalog.volume_pool import SLICES

MANIFEST = "manifest.json"
MANIFEST_VERSION = 4  # 3: pools keep the source's files unless normalize; 4: and NIfTI volumes stay volumes


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset: root is <root>/<key>, holding pool/, heldout/ and manifest.json."""

    spec: DatasetSpec
    root: Path
    pool: Path
    heldout: Path
    manifest: Path
    digest: str
    n_pool: int
    n_heldout: int
    summary: PrepareSummary | None = None
    normalized: bool = True  # masks re-encoded as 0/255; False: the source's own values

    @property
    def mask_levels(self) -> tuple[int, int]:
        """(background, foreground) values of the prepared (or scored) 2-D masks."""
        return (0, 255) if self.normalized or self.spec.source.is_volumes else self.spec.mask_values

    @property
    def volumes(self) -> bool:
        """True when pool/ and heldout/ hold NIfTI volumes; the scored slices then lie in heldout_slices/."""
        return self.spec.keeps_volumes

    @property
    def heldout_slices(self) -> Path:
        """Folder of the scored held-out slices (images/, masks/) of a pool of volumes."""
        return self.root / SLICES

    def read_mask(self, path: Path) -> np.ndarray:
        """A prepared mask as a boolean array, by the one rule of catalog/masks.py."""
        return read_mask(path, self.mask_levels)

    def pool_images(self) -> Path:
        """Folder of pool images (pool/ for the suffix layout, pool/images for folders)."""
        return self.spec.images_dir(self.pool)

    def pool_masks(self) -> Path:
        """Folder of pool masks."""
        return self.spec.masks_dir(self.pool)

    def heldout_images(self) -> Path:
        """Folder of held-out images."""
        return self.spec.images_dir(self.heldout)

    def heldout_masks(self) -> Path:
        """Folder of held-out masks."""
        return self.spec.masks_dir(self.heldout)

    def heldout_pairs(self) -> list[tuple[Path, Path]]:
        """(image, mask) paths of what is scored: the held-out images, or the held-out volumes' scored
        slices; in natural order of their names."""
        return _pairs_of_split(self, SLICES if self.volumes else "heldout")

    def pool_pairs(self) -> list[tuple[Path, Path]]:
        """(image, mask) paths of the pool (image and label volumes for a pool of volumes), in natural order."""
        return _pairs_of_split(self, "pool")

    def heldout_volumes(self) -> list[tuple[str, Path, Path]]:
        """(volume key, image volume, label volume) of the held-out split of a pool of volumes."""
        return _volumes_of_split(self, "heldout")

    def pool_volumes(self) -> list[tuple[str, Path, Path]]:
        """(volume key, image volume, label volume) of the pool of a pool of volumes."""
        return _volumes_of_split(self, "pool")

    def manifest_files(self) -> list[dict[str, Any]]:
        """The manifest's file entries (path, split, role, sha256, and for slices volume and slice)."""
        return _read_manifest(self.manifest)["files"]

    def prompt_fills(self) -> dict[str, str]:
        """The spec's prompt fills with the prepared total as the sample count."""
        return self.spec.prompt_fills(n_total=self.n_pool + self.n_heldout)

    def verify_heldout(self) -> None:
        """Check every held-out file against the manifest's sha256; PreparedDataModifiedError naming the
        files that differ. Only files whose size, times or inode changed since they last matched are
        hashed again (VERIFIED beside the manifest remembers), so calling it before every evaluation is cheap."""
        _verify_split(self, "heldout")
        if self.volumes:
            _verify_split(self, SLICES)

    def blind_heldout(self) -> Path:
        """<root>/heldout_blind/: heldout/'s layout with copies of its images and, for every mask, an
        all-zero placeholder of its name, size and format. The evaluation sandbox mounts this, so the real
        masks never enter it (they are read on the host only, to score). Built once; rebuilt when touched."""
        return _blind_heldout(self)


_LAYOUT_FIELDS = ("mask_suffix", "image_ext", "mask_ext", "image_dir", "mask_dir")


def load_prepared(spec: DatasetSpec, root: Path) -> PreparedDataset | None:
    """The prepared dataset under root/<key> from its manifest (files not re-hashed), or None.

    Files that are hard links (older versions linked the source's files) are replaced by copies first.
    """
    base = Path(root) / spec.key
    path = base / MANIFEST
    if not path.is_file():
        return None
    data = _read_manifest(path)
    if data.get("dataset") != spec.key:
        raise PreparedDataModifiedError(
            f"{path} belongs to dataset {data.get('dataset')!r}, not {spec.key!r}; delete {base} "
            "or prepare again with --force (force=True)"
        )
    summary = data.get("summary")
    pool_layout = data.get("pool_layout") or {}
    layout = {k: v for k, v in pool_layout.items() if k in _LAYOUT_FIELDS}
    recorded = _recorded(data, spec)
    normalize = bool(recorded["normalize"])
    if spec.source.is_volumes and not normalize and not pool_layout.get("volumes"):
        # a NIfTI entry read from exported images
        layout["source"] = spec.source.model_copy(update={"format": "images"})
    prepared = PreparedDataset(
        # the prompt and the knobs describe what the pool holds
        spec=spec.model_copy(update={"normalize": normalize, **layout}),
        root=base,
        pool=base / "pool",
        heldout=base / "heldout",
        manifest=path,
        digest=str(data["digest"]),
        n_pool=int(data["counts"]["pool"]),
        n_heldout=int(data["counts"]["heldout"]),
        summary=PrepareSummary.from_dict(summary) if isinstance(summary, dict) else None,
        normalized=normalize,
    )
    _copy_hard_links(prepared, data["files"])
    return prepared


def verify_prepared(prepared: PreparedDataset) -> None:
    """Re-hash every file against the manifest; raise PreparedDataModifiedError on any change."""
    data = _read_manifest(prepared.manifest)
    base = prepared.root
    changed, missing = [], []
    listed = set()
    for entry in data["files"]:
        path = base / entry["path"]
        listed.add(entry["path"])
        if not path.is_file():
            missing.append(entry["path"])
        elif _sha256(path) != entry["sha256"]:
            changed.append(entry["path"])
    extra = sorted(
        p.relative_to(base).as_posix()
        for folder in (prepared.pool, prepared.heldout, prepared.heldout_slices)
        if folder.is_dir()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(base).as_posix() not in listed
    )
    problems = [
        f"{label}: {listing(items)}"
        for label, items in (("changed", changed), ("missing", missing), ("added", extra))
        if items
    ]
    if _digest(data["files"]) != data.get("digest"):
        problems.append("the manifest's digest does not match its file list")
    if problems:
        raise PreparedDataModifiedError(
            f"the prepared folder {base} was modified since it was prepared ({'; '.join(problems)}); "
            f"delete {base} or prepare again with --force (force=True)"
        )


def _recorded(data: dict[str, Any], spec: DatasetSpec) -> dict[str, Any]:
    """The manifest's settings; manifests before version 3 hold normalised copies (synthetic data is
    generated in the entry's format, so both modes give the same pool), and before version 4 NIfTI
    sources were always sliced."""
    recorded = dict(data.get("settings", {}))
    if "normalize" not in recorded:
        recorded["normalize"] = spec.normalize if spec.is_synthetic else True
    if recorded.get("source_format") == "nifti" and int(data.get("version", 0)) < 4:
        recorded["normalize"] = True
    return recorded


def _by_stem(prepared: PreparedDataset, split: str) -> dict[str, dict[str, Path]]:
    """stem -> {role: path} of one split, read from the manifest, in natural order of the stems."""
    by_stem: dict[str, dict[str, Path]] = {}
    for entry in prepared.manifest_files():
        if entry["split"] == split:
            by_stem.setdefault(entry["stem"], {})[entry["role"]] = prepared.root / entry["path"]
    return {s: by_stem[s] for s in sorted(by_stem, key=natural_key)}


def _pairs_of_split(prepared: PreparedDataset, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of one split."""
    return [(files["image"], files["mask"]) for files in _by_stem(prepared, split).values()]


def _volumes_of_split(prepared: PreparedDataset, split: str) -> list[tuple[str, Path, Path]]:
    """(key, image, label) volume triples of one split of a pool of volumes."""
    if not prepared.volumes:
        raise ValueError(f"dataset {prepared.spec.key!r} is not a pool of volumes")
    return [(stem, files["image"], files["mask"]) for stem, files in _by_stem(prepared, split).items()]
