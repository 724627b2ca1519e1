"""Dataset preparation: pair, check, subset and split a dataset into pool/ and heldout/ with a manifest."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from llmseg_mlflow.catalog.datasets import DatasetSpec
from llmseg_mlflow.catalog.synthetic import generate_synthetic

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
_SHOW = 10  # how many offending files an error message names


class DatasetSourceError(ValueError):
    """A source folder that cannot be prepared: unpaired, unreadable or non-binary files."""


class PreparedDataModifiedError(RuntimeError):
    """A prepared folder that no longer matches its manifest or the requested settings."""


@dataclass(frozen=True)
class Pair:
    """One image and its mask in a source folder."""

    stem: str
    image: Path
    mask: Path


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
        """(image, mask) paths of the held-out set, in natural order of their names."""
        return _pairs_of_split(self, "heldout")

    def pool_pairs(self) -> list[tuple[Path, Path]]:
        """(image, mask) paths of the pool, in natural order of their names."""
        return _pairs_of_split(self, "pool")

    def prompt_fills(self) -> dict[str, str]:
        """The spec's prompt fills with the prepared total as the sample count."""
        return self.spec.prompt_fills(n_total=self.n_pool + self.n_heldout)


# ---- helpers ---------------------------------------------------------------------------------

def _natural_key(stem: str) -> tuple[Any, ...]:
    """Sort '2' before '10' so listings read as people number files."""
    parts = re.split(r"(\d+)", stem)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts) + ((2, 0, stem),)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(entries: list[dict[str, str]]) -> str:
    """sha256 over 'split<TAB>path<TAB>sha256' lines of all files, sorted by path."""
    lines = sorted(f"{e['split']}\t{e['path']}\t{e['sha256']}\n" for e in entries)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _dataset_rng(spec: DatasetSpec, seed: int) -> np.random.Generator:
    """A generator fixed by (seed, dataset key): datasets with the same seed still split differently."""
    key_number = int.from_bytes(hashlib.sha256(spec.key.encode()).digest()[:8], "big")
    return np.random.default_rng([seed, key_number])


def _settings(spec: DatasetSpec) -> dict[str, Any]:
    """The spec fields that decide which files end where; a change means re-preparing."""
    return {
        "layout": spec.layout,
        "image_dir": spec.image_dir,
        "mask_dir": spec.mask_dir,
        "mask_suffix": spec.mask_suffix,
        "image_ext": spec.image_ext,
        "mask_ext": spec.mask_ext,
        "mask_values": list(spec.mask_values),
        "subset_size": spec.subset_size,
        "heldout_fraction": spec.heldout_fraction,
        "synthetic": None if spec.synthetic is None else asdict(spec.synthetic),
    }


# ---- pairing and checking --------------------------------------------------------------------

def _visible_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def _mask_tail(spec: DatasetSpec) -> str:
    return f"{spec.mask_suffix}.{spec.mask_ext}".lower()


def pair_files(spec: DatasetSpec, source: Path) -> list[Pair]:
    """Pair every image with its mask per the spec's layout; other file types are ignored."""
    source = Path(source)
    if not source.is_dir():
        raise DatasetSourceError(f"source folder {source} for dataset {spec.key!r} does not exist")
    images_dir, masks_dir = spec.images_dir(source), spec.masks_dir(source)
    for folder in {images_dir, masks_dir}:
        if not folder.is_dir():
            raise DatasetSourceError(
                f"dataset {spec.key!r} uses the 'folders' layout: expected {folder} "
                f"(folders '{spec.image_dir}/' and '{spec.mask_dir}/' under {source})"
            )
    tail = _mask_tail(spec)
    masks: dict[str, Path] = {}
    for path in _visible_files(masks_dir):
        if path.name.lower().endswith(tail) and len(path.name) > len(tail):
            masks[path.name[: -len(tail)]] = path
    images: dict[str, Path] = {}
    for path in _visible_files(images_dir):
        is_mask = spec.layout == "suffix" and path.name.lower().endswith(tail)
        if not is_mask and path.suffix.lower() == f".{spec.image_ext}":
            images[path.name[: -len(path.suffix)]] = path
    if not images:
        raise DatasetSourceError(
            f"no .{spec.image_ext} images found in {images_dir} for dataset {spec.key!r} "
            f"(layout '{spec.layout}'; masks named like {spec.mask_name('N')})"
        )
    problems = []
    no_mask = sorted((s for s in images if s not in masks), key=_natural_key)
    if no_mask:
        problems.append(
            f"{len(no_mask)} image(s) without a mask (expected {masks_dir / spec.mask_name('<name>')}): "
            + _listing([images[s].name for s in no_mask])
        )
    no_image = sorted((s for s in masks if s not in images), key=_natural_key)
    if no_image:
        problems.append(
            f"{len(no_image)} extra mask(s) without an image: " + _listing([masks[s].name for s in no_image])
        )
    if problems:
        raise DatasetSourceError(f"dataset {spec.key!r} at {source}: " + "; ".join(problems))
    stems = sorted(images, key=_natural_key)
    return [Pair(s, images[s], masks[s]) for s in stems]


def _mask_array(path: Path) -> tuple[np.ndarray, Image.Image]:
    """The mask's pixel values as stored (palette indices for 'P'), one channel."""
    with Image.open(path) as img:
        img.load()
    if img.mode == "1":
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.ndim == 3:
        colour = arr[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise ValueError("colour mask (channels differ); save masks as single-channel images")
        arr = colour[..., 0]
    return arr, img


@dataclass(frozen=True)
class _CheckedMask:
    needs_rewrite: bool
    binary: np.ndarray


def _check_pairs(spec: DatasetSpec, pairs: list[Pair]) -> dict[str, _CheckedMask]:
    """Open every image and mask; collect unreadable files, size mismatches and non-binary masks."""
    unreadable, mismatched, nonbinary = [], [], []
    allowed = set(spec.mask_values)
    checked: dict[str, _CheckedMask] = {}
    for pair in pairs:
        try:
            with Image.open(pair.image) as img:
                img.load()
                image_size = img.size
        except Exception as exc:  # Pillow raises many types for broken files
            unreadable.append(f"{pair.image.name} ({type(exc).__name__}: {exc})")
            continue
        try:
            arr, mask_img = _mask_array(pair.mask)
        except Exception as exc:
            unreadable.append(f"{pair.mask.name} ({type(exc).__name__}: {exc})")
            continue
        if mask_img.size != image_size:
            mismatched.append(f"{pair.mask.name} {mask_img.size} vs image {image_size}")
            continue
        values = np.unique(arr)
        extra = [int(v) for v in values if int(v) not in allowed]
        if extra:
            nonbinary.append(f"{pair.mask.name} has values {[int(v) for v in values[:12]]}")
            continue
        binary = np.where(arr == spec.foreground_value, 255, 0).astype(np.uint8)
        rewrite = mask_img.mode != "L" or tuple(spec.mask_values) != (0, 255)
        checked[pair.stem] = _CheckedMask(rewrite, binary)
    problems = []
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable file(s): " + _listing(unreadable))
    if mismatched:
        problems.append(f"{len(mismatched)} mask(s) of a different size than the image: " + _listing(mismatched))
    if nonbinary:
        problems.append(
            f"{len(nonbinary)} mask(s) not binary (expected only the values {list(spec.mask_values)}; "
            f"set mask_values in the catalog entry if the encoding differs): " + _listing(nonbinary)
        )
    if problems:
        raise DatasetSourceError(f"dataset {spec.key!r}: " + "; ".join(problems))
    return checked


# ---- writing ---------------------------------------------------------------------------------

def _place(src: Path, dst: Path) -> None:
    """Hardlink when the filesystem allows (no extra space), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_split(
    spec: DatasetSpec, base: Path, split: str, pairs: list[Pair], checked: dict[str, _CheckedMask]
) -> list[dict[str, str]]:
    """Write one split in the spec's layout; return its manifest entries."""
    target = base / split
    images_dir, masks_dir = spec.images_dir(target), spec.masks_dir(target)
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for pair in pairs:
        image_dst = images_dir / pair.image.name
        mask_dst = masks_dir / pair.mask.name
        _place(pair.image, image_dst)
        mask = checked[pair.stem]
        if mask.needs_rewrite:
            Image.fromarray(mask.binary).save(mask_dst)
        else:
            _place(pair.mask, mask_dst)
        for role, path in (("image", image_dst), ("mask", mask_dst)):
            entries.append(
                {
                    "split": split,
                    "role": role,
                    "stem": pair.stem,
                    "path": path.relative_to(base).as_posix(),
                    "sha256": _sha256(path),
                }
            )
    return entries


def _split(spec: DatasetSpec, pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair]]:
    """Seeded subset (if the source has more than subset_size) then a seeded held-out split."""
    rng = _dataset_rng(spec, seed)
    if spec.subset_size is not None and len(pairs) > spec.subset_size:
        chosen = np.sort(rng.choice(len(pairs), size=spec.subset_size, replace=False))
        pairs = [pairs[i] for i in chosen]
    if len(pairs) < 2:
        raise DatasetSourceError(
            f"dataset {spec.key!r} has {len(pairs)} image/mask pair(s); at least 2 are needed "
            "to hold one out"
        )
    n_heldout = min(len(pairs) - 1, max(1, round(spec.heldout_fraction * len(pairs))))
    held = set(rng.permutation(len(pairs))[:n_heldout].tolist())
    pool = [p for i, p in enumerate(pairs) if i not in held]
    heldout = [p for i, p in enumerate(pairs) if i in held]
    return pool, heldout


def _build(spec: DatasetSpec, base: Path, source: Path, seed: int, source_label: str) -> None:
    """Pair, check, split and write everything into `base` (a fresh folder)."""
    pairs = pair_files(spec, source)
    pool, heldout = _split(spec, pairs, seed)
    checked = _check_pairs(spec, pool + heldout)
    entries = _write_split(spec, base, "pool", pool, checked)
    entries += _write_split(spec, base, "heldout", heldout, checked)
    entries.sort(key=lambda e: e["path"])
    manifest = {
        "version": MANIFEST_VERSION,
        "dataset": spec.key,
        "seed": seed,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source_label,
        "layout": spec.layout,
        "settings": _settings(spec),
        "counts": {
            "pool": len(pool),
            "heldout": len(heldout),
            "total": len(pool) + len(heldout),
            "source_pairs": len(pairs),
        },
        "digest": _digest(entries),
        "files": entries,
    }
    (base / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


# ---- public API ------------------------------------------------------------------------------

def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise ValueError("not a manifest object")
        return data
    except (OSError, ValueError) as exc:
        raise PreparedDataModifiedError(
            f"{path} is unreadable ({exc}): the prepared folder was modified; delete {path.parent} "
            "or prepare again with --force (force=True)"
        ) from exc


def load_prepared(spec: DatasetSpec, root: Path) -> PreparedDataset | None:
    """The prepared dataset under root/<key> from its manifest (files not re-hashed), or None."""
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
    return PreparedDataset(
        spec=spec,
        root=base,
        pool=base / "pool",
        heldout=base / "heldout",
        manifest=path,
        digest=str(data["digest"]),
        n_pool=int(data["counts"]["pool"]),
        n_heldout=int(data["counts"]["heldout"]),
    )


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
        for folder in (prepared.pool, prepared.heldout)
        if folder.is_dir()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(base).as_posix() not in listed
    )
    problems = [
        f"{label}: {_listing(items)}"
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


def _check_same_request(prepared: PreparedDataset, seed: int) -> None:
    """An existing preparation made with other settings must not be silently reused."""
    data = _read_manifest(prepared.manifest)
    wanted = _settings(prepared.spec)
    differences = []
    if data.get("seed") != seed:
        differences.append(f"seed {data.get('seed')} (asked for {seed})")
    for name, value in wanted.items():
        if data.get("settings", {}).get(name) != value:
            differences.append(f"{name} {data.get('settings', {}).get(name)!r} (catalog says {value!r})")
    if differences:
        raise PreparedDataModifiedError(
            f"{prepared.root} was prepared with {', '.join(differences)}; delete it or prepare "
            "again with --force (force=True); the held-out split changes, so earlier runs are not comparable"
        )


def prepare_dataset(
    spec: DatasetSpec, root: Path, source: Path | None = None, seed: int = 0, force: bool = False
) -> PreparedDataset:
    """Write root/<key>/{pool,heldout,manifest.json}; reuse a matching earlier preparation."""
    root = Path(root)
    base = root / spec.key
    if force and base.exists():
        shutil.rmtree(base)
    existing = load_prepared(spec, root)
    if existing is not None:
        _check_same_request(existing, seed)
        verify_prepared(existing)
        return existing
    if base.exists():
        raise PreparedDataModifiedError(
            f"{base} exists but has no {MANIFEST} (an interrupted or foreign folder); delete it or "
            "prepare again with --force (force=True)"
        )
    if source is None and spec.synthetic is None:
        hint = f" (download it from {spec.source_url})" if spec.source_url else ""
        raise DatasetSourceError(
            f"dataset {spec.key!r} is not synthetic: pass the folder holding its images and masks "
            f"as the source (--source DIR){hint}"
        )
    root.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename at the end, so a crash never leaves a half-made folder.
    with tempfile.TemporaryDirectory(prefix=f".{spec.key}.", dir=root) as tmp:
        work = Path(tmp)
        if source is None:
            source = generate_synthetic(spec, work / "staging")
            label = "synthetic:" + json.dumps(asdict(spec.synthetic), sort_keys=True)
        else:
            label = str(Path(source).resolve())
        built = work / "prepared"
        built.mkdir()
        _build(spec, built, Path(source), seed, label)
        try:
            os.replace(built, base)
        except OSError:
            # Another process (a parallel sweep) finished the same dataset first: use theirs.
            if not (base / MANIFEST).is_file():
                raise
    prepared = load_prepared(spec, root)
    assert prepared is not None  # just written
    _check_same_request(prepared, seed)
    return prepared


def _pairs_of_split(prepared: PreparedDataset, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of one split, read from the manifest."""
    data = _read_manifest(prepared.manifest)
    by_stem: dict[str, dict[str, Path]] = {}
    for entry in data["files"]:
        if entry["split"] == split:
            by_stem.setdefault(entry["stem"], {})[entry["role"]] = prepared.root / entry["path"]
    return [(by_stem[s]["image"], by_stem[s]["mask"]) for s in sorted(by_stem, key=_natural_key)]
