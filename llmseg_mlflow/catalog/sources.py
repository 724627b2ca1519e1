"""Source adapters: find image/mask pairs in a download and read each one into a checked sample.

The entry's top-level fields say how the prepared dataset is laid out (what the prompt tells the
LLM); `entry.source` says how the download is read. Reading tolerates the usual variants of a
download (folder-name aliases, other image formats, another mask suffix, train/test sub-folders)
and says which it used, so the summary shows everything that was renamed, converted or ignored.
NIfTI volumes are read by sources_nifti.VolumeSource, with the same interface.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from llmseg_mlflow.catalog.datasets import LOSSY_EXTS, DatasetSpec
from llmseg_mlflow.catalog.masks import ColourMaskError, mask_pixels, mask_values
from llmseg_mlflow.catalog.masks import foreground as foreground_of

RASTER_EXTS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "ppm")
IMAGE_DIR_ALIASES = ("images", "image", "imgs", "img", "frames", "originals", "inputs", "input")
MASK_DIR_ALIASES = (
    "masks",
    "mask",
    "labels",
    "label",
    "segmentations",
    "segmentation",
    "seg",
    "gt",
    "groundtruth",
    "ground_truth",
    "annotations",
    "targets",
)
# Tried before any other suffix when guessing how masks are named, in this order.
COMMON_MASK_SUFFIXES = ("_seg", "_mask", "_m", "_segmentation", "_label", "_labels", "_gt", "-mask", "_manual1")
_SAME_FORMAT = {"jpeg": "jpg", "tiff": "tif"}
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "tif": "TIFF", "bmp": "BMP", "gif": "GIF", "ppm": "PPM"}
SHOW = 10  # how many offending files a message names


class DatasetSourceError(ValueError):
    """A source folder that cannot be prepared: unpaired, unreadable or non-binary files."""


class SampleProblem(Exception):
    """One image/mask pair (or volume pair) that cannot be used, with the reason's kind."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def problem_heading(spec: DatasetSpec, kind: str) -> str:
    """The sentence that introduces a list of problems of one kind."""
    return {
        "unreadable": "unreadable file(s)",
        "colour": "colour mask(s) (channels differ; save masks as single-channel images)",
        "size": "mask(s) of a different size than the image",
        "nonbinary": (
            f"mask(s) not binary (expected only the values {list(spec.mask_values)}; set mask_values "
            "in the catalog entry if the encoding differs)"
        ),
        "shape": "label volume(s) whose shape differs from the image volume",
        "orientation": "label volume(s) not aligned with the image volume (orientation or voxel size)",
        "labels": "label volume(s) with non-integer values",
    }.get(kind, kind)


def listing(items: list[str]) -> str:
    """The first few items joined, with how many more there are."""
    shown = ", ".join(items[:SHOW])
    return shown + (f" ... and {len(items) - SHOW} more" if len(items) > SHOW else "")


def natural_key(stem: str) -> tuple[Any, ...]:
    """Sort '2' before '10' so listings read as people number files."""
    parts = re.split(r"(\d+)", stem)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts) + ((2, 0, stem),)


def same_format(a: str, b: str) -> bool:
    """True for extensions of one file format (jpg/jpeg, tif/tiff)."""
    a, b = a.lower().lstrip("."), b.lower().lstrip(".")
    return _SAME_FORMAT.get(a, a) == _SAME_FORMAT.get(b, b)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def encode(pixels: np.ndarray | Image.Image, ext: str) -> bytes:
    """Pixels encoded in the format of `ext` (JPEG at quality 95)."""
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    fmt = _PIL_FORMAT[_SAME_FORMAT.get(ext, ext)]
    buffer = io.BytesIO()
    if fmt == "JPEG":
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        img.save(buffer, format=fmt, quality=95)
    else:
        img.save(buffer, format=fmt)
    return buffer.getvalue()


# ---- what adapters hand to prepare -------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """One prepared file: link an existing file (link) or write encoded bytes (data)."""

    link: Path | None
    data: bytes | None
    sha256: str


@dataclass(frozen=True)
class Sample:
    """One prepared image/mask pair, checked and encoded, with what the manifest keeps about it."""

    stem: str
    group: str
    order: tuple[int, int]
    image: Blob
    mask: Blob
    image_mode: str
    meta: tuple[tuple[str, Any], ...] = ()
    image_name: str = ""  # the pool's file names; empty: the entry's (normalised copies, slices)
    mask_name: str = ""


@dataclass(frozen=True)
class Unit:
    """One thing an adapter reads at once: an image/mask file pair or an image/label volume pair."""

    index: int
    key: str
    image: Path
    mask: Path
    group: str


@dataclass
class ReadResult:
    """The samples of one unit and what was left out of it (reason -> count)."""

    samples: list[Sample]
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Listing:
    """What an adapter found before reading pixels: the units, the variants used, the files ignored."""

    units: list[Unit]
    notes: list[str] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)


class Source(Protocol):
    """An adapter: a listing made up front, then one read per unit (thread-safe)."""

    is_volumes: bool
    root: Path
    listing: Listing

    def read(self, unit: Unit) -> ReadResult:
        """The checked samples of one unit; raises SampleProblem when it cannot be used."""


# ---- finding folders and naming ------------------------------------------------------------------


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders, sorted by name."""
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def match_dirs(parent: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Sub-folders of parent matching any pattern (case-insensitive globs; 'a/b' paths taken as they are)."""
    found: list[Path] = []
    children = subdirs(parent)
    for pattern in patterns:
        if "/" in pattern:
            candidate = parent / pattern
            if candidate.is_dir() and candidate not in found:
                found.append(candidate)
            continue
        for child in children:
            if fnmatch.fnmatch(child.name.lower(), pattern.lower()) and child not in found:
                found.append(child)
    return found


def resolve_dirs(
    parent: Path, exact: str, explicit: tuple[str, ...], aliases: tuple[str, ...], role: str
) -> list[Path]:
    """The folder(s) holding one role: explicit patterns (all merge), else the entry's name, else one alias."""
    if explicit:
        return match_dirs(parent, explicit)
    if (parent / exact).is_dir():
        return [parent / exact]
    found = match_dirs(parent, (exact,) + aliases)
    if len(found) > 1:
        names = ", ".join(d.name for d in found)
        raise DatasetSourceError(
            f"several folders in {parent} could hold the {role}: {names}; name the right one in your "
            f"datasets YAML (source: {{{role[:-1]}_dirs: [{found[0].name}]}}) or rename the others"
        )
    return found


def split_ext(name: str) -> tuple[str, str]:
    """(stem, lower-case extension without the dot) of a file name."""
    stem, dot, ext = name.rpartition(".")
    return (stem, ext.lower()) if dot and stem else (name, "")


def guess_mask_suffix(image_stems: set[str], mask_stems: set[str], same_folder: bool = False) -> tuple[str, int]:
    """The suffix that pairs the most mask stems with image stems ('' = same names), and how many."""
    counts: Counter = Counter()
    lowered = {s.lower() for s in image_stems}
    for stem in mask_stems:
        low = stem.lower()
        if not same_folder and low in lowered:
            counts[""] += 1
            continue
        for suffix in COMMON_MASK_SUFFIXES:
            if low.endswith(suffix) and len(low) > len(suffix) and low[: -len(suffix)] in lowered:
                counts[stem[-len(suffix) :]] += 1
                break
        else:
            cut = max(stem.rfind("_"), stem.rfind("-"))
            if cut > 0 and low[:cut] in lowered:
                counts[stem[cut:]] += 1
    if not counts:
        return "", 0
    rank = {s: i for i, s in enumerate(COMMON_MASK_SUFFIXES)}
    best = max(counts, key=lambda s: (counts[s], -rank.get(s.lower(), len(rank))))
    return best, counts[best]


# ---- 2-D images ----------------------------------------------------------------------------------


@dataclass
class _Collection:
    """One folder set of a download: images and masks (merged with others, e.g. train/ and test/)."""

    name: str
    image_dirs: list[Path]
    mask_dirs: list[Path]


def _scan(folders: list[Path], ignored: Counter) -> list[Path]:
    """Raster files in the folders (not recursive); other entries are counted in `ignored`."""
    files = []
    for folder in folders:
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if path.is_dir():
                ignored[f"sub-folder(s) inside {folder.name}/, not read"] += 1
                continue
            ext = split_ext(path.name)[1]
            if ext in RASTER_EXTS and not path.name.startswith("."):
                files.append(path)
            elif path.name.startswith("."):
                ignored[f"hidden file(s) ({path.name}), ignored"] += 1
            else:
                ignored[f"non-image file(s) (.{ext or 'no extension'}), ignored"] += 1
    return files


class ImageSource:
    """2-D image files with masks, in the suffix or the folders layout, possibly in sub-collections."""

    is_volumes = False

    def __init__(self, spec: DatasetSpec, root: Path, mask_suffix: str | None = None) -> None:
        self.spec = spec
        self.root = root
        self.explicit_suffix = mask_suffix if mask_suffix is not None else spec.source.mask_suffix
        self.listing = self._list()

    # -- listing --

    def _collections(self) -> list[_Collection]:
        spec, src = self.spec, self.spec.source
        if spec.layout == "suffix":
            if src.image_dirs:
                folders = match_dirs(self.root, src.image_dirs)
                if not folders:
                    raise DatasetSourceError(
                        f"dataset {spec.key!r}: none of the folders {list(src.image_dirs)} (source.image_dirs) is in {self.root}"
                    )
                return [_Collection(d.name, [d], [d]) for d in folders]
            if _has_raster(self.root) or not subdirs(self.root):
                return [_Collection("", [self.root], [self.root])]
            nested_dirs = [d for d in subdirs(self.root) if _has_raster(d)]
            return [_Collection(d.name, [d], [d]) for d in nested_dirs] or [_Collection("", [self.root], [self.root])]

        def at(parent: Path) -> _Collection | None:
            images = resolve_dirs(parent, spec.image_dir, src.image_dirs, IMAGE_DIR_ALIASES, "images")
            masks = resolve_dirs(parent, spec.mask_dir, src.mask_dirs, MASK_DIR_ALIASES, "masks")
            if images and masks:
                return _Collection("" if parent == self.root else parent.name, images, masks)
            return None

        top = at(self.root)
        if top is not None:
            return [top]
        nested = [c for c in (at(d) for d in subdirs(self.root)) if c is not None]
        if nested:
            return nested
        wanted = f"'{spec.image_dir}/' and '{spec.mask_dir}/'"
        if src.image_dirs or src.mask_dirs:
            wanted = f"matching {list(src.image_dirs) or [spec.image_dir]} and {list(src.mask_dirs) or [spec.mask_dir]}"
        raise DatasetSourceError(
            f"dataset {spec.key!r} uses the 'folders' layout: expected {self.root / spec.mask_dir} "
            f"(folders {wanted} under {self.root}, or sub-folders such as train/ and test/ that hold them; "
            f"also accepted: {', '.join(IMAGE_DIR_ALIASES[:4])} and {', '.join(MASK_DIR_ALIASES[:4])})"
        )

    def _list(self) -> Listing:
        ignored: Counter = Counter()
        notes: list[str] = []
        per_collection = []
        collections = self._collections()
        for coll in collections:
            pairs = self._pair(coll, ignored, notes)
            per_collection.append((coll, pairs))
        _count_unread(self.root, collections, ignored)
        stems = Counter(stem for _, pairs in per_collection for stem in pairs)
        prefix = len(per_collection) > 1 and any(n > 1 for n in stems.values())
        if len(per_collection) > 1:
            names = ", ".join(f"{c.name}/" for c, _ in per_collection)
            notes.append(
                f"merged the sub-folders {names}"
                + (" (names prefixed with the folder, as they repeat)" if prefix else "")
            )
        units: list[Unit] = []
        rows = []
        for coll, pairs in per_collection:
            for stem, (image, mask) in pairs.items():
                rows.append((f"{coll.name}-{stem}" if prefix else stem, image, mask))
        rows.sort(key=lambda r: natural_key(r[0]))
        unmatched = 0
        pattern = re.compile(self.spec.source.group_pattern) if self.spec.source.group_pattern else None
        for index, (stem, image, mask) in enumerate(rows):
            group = stem
            if pattern is not None:
                found = pattern.search(stem)
                if found is None:
                    unmatched += 1
                else:
                    group = found.group(1) if found.groups() else found.group(0)
            units.append(Unit(index, stem, image, mask, group))
        if unmatched:
            notes.append(f"{unmatched} name(s) did not match source.group_pattern: each is its own patient")
        return Listing(units, notes, ignored)

    def _pair(self, coll: _Collection, ignored: Counter, notes: list[str]) -> dict[str, tuple[Path, Path]]:
        """stem -> (image, mask) for one collection; raises naming every unpaired file."""
        spec = self.spec
        where = f"{coll.name}/" if coll.name else ""
        same_folder = coll.image_dirs == coll.mask_dirs
        image_files = _scan(coll.image_dirs, ignored)
        mask_files = image_files if same_folder else _scan(coll.mask_dirs, ignored)
        suffix = self._suffix(coll, image_files, mask_files, same_folder, notes)
        low_suffix = suffix.lower()

        masks: dict[str, list[Path]] = {}
        misnamed = []
        for path in mask_files:
            stem = split_ext(path.name)[0]
            if low_suffix and stem.lower().endswith(low_suffix) and len(stem) > len(suffix):
                masks.setdefault(stem[: -len(suffix)], []).append(path)
            elif not same_folder:
                if low_suffix:
                    misnamed.append(path.name)
                else:
                    masks.setdefault(stem, []).append(path)
        images: dict[str, list[Path]] = {}
        for path in image_files:
            stem = split_ext(path.name)[0]
            if same_folder and low_suffix and stem.lower().endswith(low_suffix) and len(stem) > len(suffix):
                continue
            images.setdefault(stem, []).append(path)

        images_dir = coll.image_dirs[0] if coll.image_dirs else self.root
        if not images:
            present = Counter(split_ext(p.name)[1] for p in images_dir.iterdir()) if images_dir.is_dir() else Counter()
            what = (
                "the folder is empty"
                if not present
                else "it holds " + ", ".join(f"{n} .{e or '(no extension)'}" for e, n in present.most_common(5))
            )
            raise DatasetSourceError(
                f"no .{spec.image_ext} images found in {images_dir} for dataset {spec.key!r} ({what}; "
                f"layout '{spec.layout}', masks named like {spec.mask_name('N')})"
            )
        problems: list[str] = []
        chosen_images = {s: self._pick(s, paths, spec.image_ext, ignored, problems) for s, paths in images.items()}
        chosen_masks = {s: self._pick(s, paths, spec.mask_ext, ignored, problems) for s, paths in masks.items()}
        no_mask = sorted((s for s in images if s not in masks), key=natural_key)
        masks_dir = coll.mask_dirs[0] if coll.mask_dirs else self.root
        if no_mask:
            expected = masks_dir / f"<name>{suffix}.{spec.mask_ext}"
            problems.append(
                f"{len(no_mask)} image(s) without a mask (expected {expected}): "
                + listing([where + images[s][0].name for s in no_mask])
            )
        no_image = sorted((s for s in masks if s not in images), key=natural_key)
        if no_image:
            problems.append(
                f"{len(no_image)} extra mask(s) without an image: "
                + listing([where + masks[s][0].name for s in no_image])
            )
        if misnamed:
            problems.append(
                f"{len(misnamed)} file(s) in {masks_dir.name}/ not named like masks (<name>{suffix}.<ext>): "
                + listing([where + n for n in misnamed])
            )
        if problems:
            raise DatasetSourceError(f"dataset {spec.key!r} at {self.root}: " + "; ".join(problems))
        return {s: (chosen_images[s], chosen_masks[s]) for s in images}

    def _suffix(
        self, coll: _Collection, images: list[Path], masks: list[Path], same_folder: bool, notes: list[str]
    ) -> str:
        """The masks' suffix in this download: given, else the entry's, else guessed (and said so)."""
        if self.explicit_suffix is not None:
            return self.explicit_suffix
        suffix = self.spec.mask_suffix
        image_stems = {split_ext(p.name)[0] for p in images}
        mask_stems = image_stems if same_folder else {split_ext(p.name)[0] for p in masks}
        if same_folder:
            paired = sum(
                1
                for s in mask_stems
                if suffix and s.lower().endswith(suffix.lower()) and s[: -len(suffix)] in image_stems
            )
        elif suffix:
            paired = sum(
                1 for s in mask_stems if s.lower().endswith(suffix.lower()) and s[: -len(suffix)] in image_stems
            )
        else:
            paired = len(mask_stems & image_stems)
        if paired:
            return suffix
        guessed, count = guess_mask_suffix(image_stems, mask_stems, same_folder)
        if count and (guessed or not same_folder):
            where = f" in {coll.name}/" if coll.name else ""
            notes.append(
                f"masks{where} are named <name>{guessed}.<ext> in the source (the entry says "
                f"<name>{suffix}.{self.spec.mask_ext}); they are prepared under the entry's names"
            )
            return guessed
        return suffix

    @staticmethod
    def _pick(stem: str, paths: list[Path], preferred: str, ignored: Counter, problems: list[str]) -> Path:
        """One file for a stem: the entry's format first, else identical copies count once."""
        if len(paths) == 1:
            return paths[0]
        best = [p for p in paths if same_format(split_ext(p.name)[1], preferred)]
        if len(best) == 1:
            ignored["other format(s) of an image already read, ignored"] += len(paths) - 1
            return best[0]
        candidates = best or paths
        if len({p.stat().st_size for p in candidates}) == 1:
            ignored["duplicate copies (same name and size in another folder), ignored"] += len(paths) - 1
            return candidates[0]
        problems.append(f"name {stem!r} is ambiguous: " + ", ".join(f"{p.parent.name}/{p.name}" for p in paths))
        return candidates[0]

    # -- reading --

    def read(self, unit: Unit) -> ReadResult:
        """Decode, check and encode one pair; raises SampleProblem naming the file and the reason."""
        spec = self.spec
        image_bytes, image = _load(unit.image)
        mask_bytes, mask_img = _load(unit.mask)
        mask_ext = split_ext(unit.mask.name)[1]
        try:
            arr = mask_pixels(mask_img, unit.mask.name, lossy=mask_ext in LOSSY_EXTS)
        except ColourMaskError:
            raise SampleProblem("colour", unit.mask.name) from None
        if mask_img.size != image.size:
            raise SampleProblem("size", f"{unit.mask.name} {mask_img.size} vs image {image.size}")
        binary = binarize(spec, arr, unit.mask.name, lossy=mask_ext in LOSSY_EXTS)  # checks the values
        source = unit.image.relative_to(self.root).as_posix()
        if not spec.normalize:
            # The pool holds the source's files byte for byte, under their own names.
            image_blob = Blob(unit.image, None, sha256_bytes(image_bytes))
            mask_blob = Blob(unit.mask, None, sha256_bytes(mask_bytes))
            sample = Sample(
                unit.key,
                unit.group,
                (unit.index, 0),
                image_blob,
                mask_blob,
                image.mode,
                (("source", source),),
                *source_names(unit),
            )
            return ReadResult([sample])
        image_ext = split_ext(unit.image.name)[1]
        notes = []
        if same_format(image_ext, spec.image_ext):
            image_blob = Blob(unit.image, None, sha256_bytes(image_bytes))
        else:
            data = encode(image, spec.image_ext)
            image_blob = Blob(None, data, sha256_bytes(data))
            notes.append(f"images converted from .{image_ext} to .{spec.image_ext}")
        if mask_ext in LOSSY_EXTS:
            notes.append(f"masks thresholded from lossy .{mask_ext} and stored as .{spec.mask_ext}")
        elif not same_format(mask_ext, spec.mask_ext):
            notes.append(f"masks converted from .{mask_ext} to .{spec.mask_ext}")
        keep_mask = (
            mask_img.mode == "L"
            and tuple(spec.mask_values) == (0, 255)
            and same_format(mask_ext, spec.mask_ext)
            and mask_ext not in LOSSY_EXTS
        )
        if keep_mask:
            mask_blob = Blob(unit.mask, None, sha256_bytes(mask_bytes))
        else:
            data = encode(binary, spec.mask_ext)
            mask_blob = Blob(None, data, sha256_bytes(data))
        source = unit.image.relative_to(self.root).as_posix()
        sample = Sample(unit.key, unit.group, (unit.index, 0), image_blob, mask_blob, image.mode, (("source", source),))
        return ReadResult([sample], notes=notes)


def pair_naming(image_name: str, mask_name: str) -> tuple[str | None, str, str]:
    """(mask suffix, image extension, mask extension) of an image/mask file pair as named; the suffix is
    None when the mask's name does not start with the image's."""
    image_stem, image_ext = image_name.rpartition(".")[::2]
    mask_stem, mask_ext = mask_name.rpartition(".")[::2]
    suffix = mask_stem[len(image_stem) :] if mask_stem.lower().startswith(image_stem.lower()) else None
    return suffix, image_ext, mask_ext


def source_names(unit: Unit) -> tuple[str, str]:
    """The pool names of a pair kept as it is: the unit's key (prefixed where merged folders repeat a
    name) with the source files' own mask suffix and extensions."""
    suffix, image_ext, mask_ext = pair_naming(unit.image.name, unit.mask.name)
    return f"{unit.key}.{image_ext}", f"{unit.key}{suffix or ''}.{mask_ext}"


def _count_unread(root: Path, collections: list[_Collection], ignored: Counter) -> None:
    """Count what lies beside the folders that were read (metadata files, other folders): nothing unsaid."""
    read = {d for c in collections for d in c.image_dirs + c.mask_dirs}
    parents = {p for p in {root} | {d.parent for d in read} if p == root or root in p.parents}
    for parent in sorted(parents - read):
        for entry in sorted(parent.iterdir()):
            if entry in read or any(entry in d.parents for d in read) or entry.name.startswith("."):
                continue
            where = entry.relative_to(root).as_posix()
            if entry.is_dir():
                ignored[f"folder {where}/, not read"] += 1
            else:
                ext = split_ext(entry.name)[1] or "no extension"
                ignored[f"file(s) beside the image folders (.{ext}), not read"] += 1


def _has_raster(folder: Path) -> bool:
    return any(p.is_file() and split_ext(p.name)[1] in RASTER_EXTS for p in folder.iterdir())


def _load(path: Path) -> tuple[bytes, Image.Image]:
    """The file's bytes and its fully decoded image (read once; both are kept for hashing)."""
    try:
        data = path.read_bytes()
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # Pillow raises many types for broken files
        raise SampleProblem("unreadable", f"{path.name} ({type(exc).__name__}: {exc})") from None
    return data, img


def binarize(spec: DatasetSpec, arr: np.ndarray, name: str, lossy: bool) -> np.ndarray:
    """0/255 mask from the source's [background, foreground] values; lossy masks are thresholded."""
    background, foreground = spec.mask_values
    if lossy:
        # JPEG blurs edges into grey values: take the nearer value, but a mask whose pixels are
        # mostly far from both is not a mask (or uses other values).
        distance = abs(foreground - background)
        work = arr.astype(np.int32)
        far = (np.abs(work - background) > distance / 4) & (np.abs(work - foreground) > distance / 4)
        if far.mean() > 0.05:
            raise SampleProblem(
                "nonbinary",
                f"{name} has values from {int(arr.min())} to {int(arr.max())} with {far.mean():.0%} of "
                f"pixels far from both {background} and {foreground}",
            )
        return np.where(foreground_of(arr, spec.mask_values), 255, 0).astype(np.uint8)
    values = mask_values(arr)
    if any(v not in (background, foreground) for v in values):
        raise SampleProblem("nonbinary", f"{name} has values {values[:12]}" + (" ..." if len(values) > 12 else ""))
    return np.where(arr == foreground, 255, 0).astype(np.uint8)
