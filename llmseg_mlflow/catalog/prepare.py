"""Dataset preparation: read a source through its adapter, check, subset and split it into pool/ and
heldout/ in the catalog entry's layout, with a manifest (sha256 of every file, seed, summary).

Samples stream through one at a time (a few in flight on worker threads): memory does not grow with
the number of images, and each file or volume is read once. Everything is built in a temporary
folder beside the target and renamed into place at the end.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmseg_mlflow.catalog.adapters import open_source
from llmseg_mlflow.catalog.datasets import DatasetSpec
from llmseg_mlflow.catalog.integrity import (
    PreparedDataModifiedError,
    _digest,
    _read_manifest,
    _sha256,
)
from llmseg_mlflow.catalog.prepared import (
    MANIFEST,
    MANIFEST_VERSION,
    PreparedDataset,
    _recorded,
    load_prepared,
    verify_prepared,
)
from llmseg_mlflow.catalog.sources import (
    SHOW,
    Blob,
    DatasetSourceError,
    ReadResult,
    Sample,
    SampleProblem,
    Source,
    Unit,
    listing,
    natural_key,
    pair_naming,
    problem_heading,
)
from llmseg_mlflow.catalog.split import choose_subset, dataset_rng, split_by_group
from llmseg_mlflow.catalog.summary import PrepareSummary, Skipped
from llmseg_mlflow.catalog.synthetic import generate_synthetic
from llmseg_mlflow.catalog.volume_pool import SLICES, place_volumes, volume_layout

__all__ = [
    "MANIFEST",
    "DatasetSourceError",
    "PreparedDataModifiedError",
    "Pair",
    "PreparedDataset",
    "PrepareSummary",
    "pair_files",
    "prepare_dataset",
    "ensure_prepared",
    "load_prepared",
    "verify_prepared",
]

_PROBLEM_ORDER = ("unreadable", "colour", "size", "nonbinary", "shape", "orientation", "labels")


@dataclass(frozen=True)
class Pair:
    """One image and its mask in a source folder (or one image and label volume)."""

    stem: str
    image: Path
    mask: Path


# ---- helpers ---------------------------------------------------------------------------------


def _settings(spec: DatasetSpec) -> dict[str, Any]:
    """The spec fields that decide which files end where; a change means re-preparing."""
    settings: dict[str, Any] = {
        "layout": spec.layout,
        "image_dir": spec.image_dir,
        "mask_dir": spec.mask_dir,
        "mask_suffix": spec.mask_suffix,
        "image_ext": spec.image_ext,
        "mask_ext": spec.mask_ext,
        "mask_values": list(spec.mask_values),
        "normalize": spec.normalize,
        "subset_size": spec.subset_size,
        "heldout_fraction": spec.heldout_fraction,
        "synthetic": None if spec.synthetic is None else spec.synthetic.model_dump(mode="json", exclude_none=True),
        "split_by": spec.split_by,
        "source_format": spec.source.format,
        "group_pattern": spec.source.group_pattern,
    }
    if spec.source.is_volumes:
        settings["slice_axis"] = spec.source.slice_axis
        settings["window"] = list(spec.source.window)
    return settings


def pair_files(spec: DatasetSpec, source: Path, mask_suffix: str | None = None) -> list[Pair]:
    """Pair every image with its mask (or volume with its labels) as the entry's adapter reads them."""
    return [Pair(u.key, u.image, u.mask) for u in open_source(spec, Path(source), mask_suffix).listing.units]


# ---- streaming build -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """One staged sample: where its files lie now and what the manifest keeps about it."""

    stem: str
    group: str
    order: tuple[int, int]
    image: Path
    mask: Path
    image_sha: str
    mask_sha: str
    image_mode: str
    meta: tuple[tuple[str, Any], ...]


_FICLONE = 0x40049409  # ioctl(dst, FICLONE, src): a reflink (btrfs, XFS, bcachefs; not ext4)
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}


class _Copier:
    """Independent copies of source files, never hard links: a tampered prepared file must not change the
    user's original (nor the reverse). A reflink where the filesystem offers one (instant, no extra space
    until either side changes), else an in-kernel copy (shutil.copyfile: sendfile)."""

    def __init__(self) -> None:
        self.reflink = True  # until the filesystem says no once

    def __call__(self, src: Path, dst: Path) -> None:
        if self.reflink:
            try:
                with open(src, "rb") as fin, open(dst, "wb") as fout:
                    fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
                return
            except OSError as exc:
                if exc.errno not in _NO_REFLINK:
                    raise
                self.reflink = False
        shutil.copyfile(src, dst)


def _place(blob: Blob, dst: Path, copy: _Copier) -> None:
    """Copy (or reflink) a source file, or write the encoded bytes."""
    if blob.link is None:
        dst.write_bytes(blob.data or b"")
    else:
        copy(blob.link, dst)


class _Stager:
    """Writes samples into a flat staging folder under the entry's file names."""

    def __init__(self, spec: DatasetSpec, folder: Path) -> None:
        self.spec = spec
        self.images = folder / "images"
        self.masks = folder / "masks"
        self.images.mkdir(parents=True)
        self.masks.mkdir()
        self.copy = _Copier()

    def put(self, sample: Sample) -> _Record:
        image = self.images / (sample.image_name or self.spec.image_name(sample.stem))
        mask = self.masks / (sample.mask_name or self.spec.mask_name(sample.stem))
        if image.exists() or mask.exists():
            raise DatasetSourceError(
                f"dataset {self.spec.key!r}: two samples would both be named {image.name!r}; rename one in the source"
            )
        _place(sample.image, image, self.copy)
        _place(sample.mask, mask, self.copy)
        return _Record(
            sample.stem,
            sample.group,
            sample.order,
            image,
            mask,
            sample.image.sha256,
            sample.mask.sha256,
            sample.image_mode,
            sample.meta,
        )

    def drop(self, record: _Record) -> None:
        record.image.unlink()
        record.mask.unlink()


def _attempt(source: Source, unit: Unit) -> ReadResult | SampleProblem:
    try:
        return source.read(unit)
    except SampleProblem as problem:
        return problem


def _read_all(source: Source, units: list[Unit]) -> Iterator[tuple[Unit, ReadResult | SampleProblem]]:
    """Read units in order on a few threads; only a small window is in flight, so memory stays flat."""
    workers = min(4, os.cpu_count() or 1)
    if workers == 1 or len(units) < 4:
        for unit in units:
            yield unit, _attempt(source, unit)
        return
    window = workers + 1 if source.is_volumes else 4 * workers
    pending: deque = deque()
    remaining = iter(units)
    with ThreadPoolExecutor(workers, thread_name_prefix="prepare") as pool:
        for unit in remaining:
            pending.append((unit, pool.submit(_attempt, source, unit)))
            if len(pending) >= window:
                break
        while pending:
            unit, future = pending.popleft()
            result = future.result()
            nxt = next(remaining, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_attempt, source, nxt)))
            yield unit, result


class _Progress:
    """Reports progress at most every few seconds (long preparations should not look stuck)."""

    def __init__(self, say: Callable[[str], None] | None, total: int, what: str) -> None:
        self.say, self.total, self.what = say, total, what
        self.done = 0
        self.last = time.monotonic()

    def step(self) -> None:
        self.done += 1
        if self.say is not None and time.monotonic() - self.last > 5:
            self.last = time.monotonic()
            self.say(f"read {self.done}/{self.total} {self.what}")


@dataclass
class _Collected:
    records: list[_Record]
    problems: dict[str, list[str]]
    skipped: Counter
    notes: Counter


def _collect(
    spec: DatasetSpec,
    source: Source,
    todo: list[Unit],
    reserve: list[Unit],
    stager: _Stager,
    skip_invalid: bool,
    progress: _Progress,
) -> _Collected:
    """Read and stage every unit; with skip_invalid, unusable ones are replaced from the reserve."""
    out = _Collected([], {}, Counter(), Counter())
    while todo:
        failed = 0
        for _, result in _read_all(source, todo):
            progress.step()
            if isinstance(result, SampleProblem):
                out.problems.setdefault(result.kind, []).append(result.detail)
                failed += 1
                continue
            out.records.extend(stager.put(sample) for sample in result.samples)
            out.skipped.update(result.skipped)
            out.notes.update(result.notes)
        todo = []
        if skip_invalid and failed and reserve:
            # Replacements keep the subset at its size; they come from a seeded order of the rest.
            todo, reserve = reserve[:failed], reserve[failed:]
            progress.total += len(todo)
    return out


def _raise_problems(spec: DatasetSpec, problems: dict[str, list[str]]) -> None:
    parts = [
        f"{len(problems[kind])} {problem_heading(spec, kind)}: {listing(problems[kind])}"
        for kind in sorted(problems, key=lambda k: _PROBLEM_ORDER.index(k) if k in _PROBLEM_ORDER else 99)
    ]
    raise DatasetSourceError(
        f"dataset {spec.key!r}: "
        + "; ".join(parts)
        + ". Fix or remove these files, or pass --skip-invalid (skip_invalid=True) to leave them out; "
        "they are then listed in the summary"
    )


def _build(
    spec: DatasetSpec,
    base: Path,
    source_root: Path,
    seed: int,
    source_label: str,
    skip_invalid: bool,
    mask_suffix: str | None,
    say: Callable[[str], None] | None,
) -> None:
    """Read, check, subset, split and write everything into `base` (a fresh folder)."""
    source = open_source(spec, source_root, mask_suffix)
    units = source.listing.units
    rng = dataset_rng(spec.key, seed)
    skipped: list[Skipped] = []
    chosen = None if source.is_volumes else choose_subset(rng, len(units), spec.subset_size)
    todo, reserve = units, []
    if chosen is not None:
        keep = set(chosen)
        todo = [units[i] for i in chosen]
        rest = [u for i, u in enumerate(units) if i not in keep]
        reserve = [rest[i] for i in dataset_rng(spec.key, seed, stream=1).permutation(len(rest)).tolist()]
    progress = _Progress(say, len(todo), "volumes" if source.is_volumes else "pairs")
    stager = _Stager(spec, base.with_name(base.name + ".staging"))
    got = _collect(spec, source, todo, reserve, stager, skip_invalid, progress)
    if got.problems and not skip_invalid:
        _raise_problems(spec, got.problems)
    for kind, items in sorted(got.problems.items()):
        skipped.append(
            Skipped(
                f"invalid, skipped (--skip-invalid): {problem_heading(spec, kind)}", len(items), tuple(items[:SHOW])
            )
        )
    if chosen is not None:
        used = len(got.records) + sum(len(v) for v in got.problems.values())
        skipped.append(Skipped(f"pair(s) not in the seeded subset of {spec.subset_size}", len(units) - used))
    extra_notes = []
    if chosen is None and spec.subset_size is not None and not source.is_volumes:
        extra_notes.append(
            f"the source has {len(units)} pairs, not more than subset_size {spec.subset_size}: all are used"
        )

    records = sorted(got.records, key=lambda r: r.order)
    candidates = len(records)
    if source.is_volumes:
        if not records:
            reasons = "; ".join(f"{n} {r}" for r, n in got.skipped.items() if n)
            raise DatasetSourceError(
                f"dataset {spec.key!r}: no slice holds label {spec.foreground_value} ({reasons}); check mask_values "
                "(the foreground label) in the catalog entry"
            )
        subset = choose_subset(rng, len(records), spec.subset_size)
        if subset is not None:
            keep = set(subset)
            for i, record in enumerate(records):
                if i not in keep:
                    stager.drop(record)
            skipped.append(
                Skipped(f"slice(s) not in the seeded subset of {spec.subset_size}", len(records) - len(subset))
            )
            records = [records[i] for i in subset]
    if len(records) < 2:
        raise DatasetSourceError(
            f"dataset {spec.key!r} has {len(records)} image/mask pair(s); at least 2 are needed to hold one out"
        )
    keep_volumes = source.is_volumes and not spec.normalize
    # A pool of volumes can only hold out whole volumes: a slice split becomes a split by volume.
    groups = [
        r.group if spec.split_by == "patient" else dict(r.meta)["volume"] if keep_volumes else f"{r.group}\0{r.order}"
        for r in records
    ]
    try:
        held = split_by_group(groups, spec.heldout_fraction, rng)
    except ValueError as exc:
        raise DatasetSourceError(f"dataset {spec.key!r}: {exc}") from None

    if keep_volumes:
        entries, pool_layout, kept = _keep_volumes(spec, base, source, records, held, stager)
        extra_notes.append(kept)
    else:
        entries, pool_layout = _move_into_place(spec, base, records, held), _pool_layout(spec, records)
    shutil.rmtree(stager.images.parent)
    skipped += [Skipped(reason, n) for reason, n in got.skipped.items() if n]
    skipped += [Skipped(what, n) for what, n in sorted(source.listing.ignored.items())]
    per = "volume(s)" if source.is_volumes else "pair(s)"
    notes = list(source.listing.notes) + [f"{note} ({n} {per})" for note, n in got.notes.items()] + extra_notes
    patients_held = len({records[i].group for i in held})
    summary = PrepareSummary(
        source=source_label,
        source_format="nifti" if source.is_volumes else "images",
        units=len(units),
        candidates=candidates,
        prepared=len(records),
        n_pool=len(records) - len(held),
        n_heldout=len(held),
        split_by=spec.split_by,
        patients_pool=len({r.group for i, r in enumerate(records) if i not in held}),
        patients_heldout=patients_held,
        skipped=tuple(skipped),
        notes=tuple(notes),
        image_modes=tuple(sorted(Counter(r.image_mode for r in records).items())),
    )
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "dataset": spec.key,
        "seed": seed,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source_label,
        "layout": spec.layout,
        "split_by": spec.split_by,
        "settings": _settings(spec),
        "counts": {
            "pool": summary.n_pool,
            "heldout": summary.n_heldout,
            "total": len(records),
            "source_pairs": len(units) if not source.is_volumes else candidates,
        },
        "patients": {"pool": summary.patients_pool, "heldout": summary.patients_heldout},
        "summary": summary.as_dict(),
        "pool_layout": pool_layout,
        "digest": _digest(entries),
        "files": entries,
    }
    if keep_volumes:
        for split in ("pool", "heldout"):
            manifest["counts"][f"{split}_volumes"] = sum(e["split"] == split and e["role"] == "image" for e in entries)
    (base / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _keep_volumes(
    spec: DatasetSpec, base: Path, source: Source, records: list[_Record], held: set[int], stager: _Stager
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Copy the volumes as they are into pool/ and heldout/; move the held-out slices (the scored images) to
    heldout_slices/ and drop the pool's. Returns the manifest entries, the pool layout and a note."""
    units = {u.key: u for u in source.listing.units}
    volume = [dict(r.meta)["volume"] for r in records]
    held_keys = sorted({volume[i] for i in held}, key=natural_key)
    pool_keys = sorted({volume[i] for i in range(len(records)) if i not in held} - set(held_keys), key=natural_key)
    slices = spec.model_copy(update={"layout": "folders", "image_dir": "images", "mask_dir": "masks"})
    entries = _move_into_place(slices, base, [records[i] for i in sorted(held)], set(range(len(held))), SLICES)
    for i, record in enumerate(records):
        if i not in held:
            stager.drop(record)
    for split, keys in (("pool", pool_keys), ("heldout", held_keys)):
        (base / split).mkdir(exist_ok=True)
        entries += place_volumes([units[k] for k in keys], source.root, base, split, stager.copy, _sha256)
    entries.sort(key=lambda e: e["path"])
    note = (
        f"the pool keeps {len(pool_keys)} image/label volume pair(s) as the source holds them; "
        f"{len(held_keys)} held-out volume(s) give the {len(held)} scored slice(s) in {SLICES}/"
    )
    layout = volume_layout([units[k] for k in pool_keys or held_keys], source.root)
    return entries, {**layout, "volumes": True}, note


def _pool_layout(spec: DatasetSpec, records: list[_Record]) -> dict[str, str]:
    """What the pool's names look like (most common suffix and extensions), for the prompt and the knobs."""
    suffixes: Counter[str] = Counter()
    image_exts: Counter[str] = Counter()
    mask_exts: Counter[str] = Counter()
    for record in records:
        suffix, image_ext, mask_ext = pair_naming(record.image.name, record.mask.name)
        suffixes[spec.mask_suffix if suffix is None else suffix] += 1
        image_exts[image_ext] += 1
        mask_exts[mask_ext] += 1
    return {
        "mask_suffix": suffixes.most_common(1)[0][0],
        "image_ext": image_exts.most_common(1)[0][0],
        "mask_ext": mask_exts.most_common(1)[0][0],
    }


def _move_into_place(
    spec: DatasetSpec, base: Path, records: list[_Record], held: set[int], heldout: str = "heldout"
) -> list[dict[str, Any]]:
    """Rename staged files into pool/ and heldout/ (or another held-out folder) in the entry's layout;
    return the manifest entries."""
    entries = []
    for split in ("pool", heldout):
        if split == "pool" and len(held) == len(records):
            continue
        target = base / split
        spec.images_dir(target).mkdir(parents=True, exist_ok=True)
        spec.masks_dir(target).mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records):
        split = heldout if i in held else "pool"
        target = base / split
        for role, staged, sha in (("image", record.image, record.image_sha), ("mask", record.mask, record.mask_sha)):
            folder = spec.images_dir(target) if role == "image" else spec.masks_dir(target)
            final = folder / staged.name
            os.replace(staged, final)
            entry = {
                "split": split,
                "role": role,
                "stem": record.stem,
                "path": final.relative_to(base).as_posix(),
                "sha256": sha,
                "group": record.group,
            }
            entry.update(record.meta)
            entries.append(entry)
    entries.sort(key=lambda e: e["path"])
    return entries


# ---- public API ------------------------------------------------------------------------------

# Settings that only decide names and encodings: a change re-prepares the same split, with a message.
_LAYOUT_SETTINGS = (
    "layout",
    "image_dir",
    "mask_dir",
    "mask_suffix",
    "image_ext",
    "mask_ext",
    "mask_values",
    "normalize",
)


def _differences(prepared: PreparedDataset, spec: DatasetSpec, seed: int | None) -> tuple[list[str], list[str]]:
    """(layout differences, split differences) between a preparation and the catalog entry."""
    data = _read_manifest(prepared.manifest)
    recorded = _recorded(data, spec)
    layout: list[str] = []
    split: list[str] = []
    if seed is not None and data.get("seed") != seed:
        split.append(f"seed {data.get('seed')} (asked for {seed})")
    for name, value in _settings(spec).items():
        # Settings added after a manifest was written are not held against it.
        if name in recorded and recorded[name] != value:
            (layout if name in _LAYOUT_SETTINGS else split).append(
                f"{name} {recorded[name]!r} (catalog says {value!r})"
            )
    return layout, split


def layout_changes(prepared: PreparedDataset, spec: DatasetSpec) -> list[str]:
    """How the catalog entry's names and encodings differ from the preparation (empty: none)."""
    return _differences(prepared, spec, None)[0]


def _check_same_request(prepared: PreparedDataset, spec: DatasetSpec, seed: int) -> list[str]:
    """An existing preparation made with other settings must not be silently reused: a changed split is an
    error; changed names or encodings are returned (the caller re-prepares the same split)."""
    layout, split = _differences(prepared, spec, seed)
    if split:
        raise PreparedDataModifiedError(
            f"{prepared.root} was prepared with {', '.join(split + layout)}; delete it or prepare "
            "again with --force (force=True); the held-out split changes, so earlier runs are not comparable"
        )
    return layout


def _recorded_source(prepared: PreparedDataset) -> Path | None:
    """The source folder the preparation was read from, if it is a folder that still exists."""
    label = str(_read_manifest(prepared.manifest).get("source", ""))
    return Path(label) if label.startswith("/") and Path(label).is_dir() else None


def prepare_dataset(
    spec: DatasetSpec,
    root: Path,
    source: Path | None = None,
    seed: int | None = None,
    force: bool = False,
    *,
    skip_invalid: bool = False,
    mask_suffix: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> PreparedDataset:
    """Write root/<key>/{pool,heldout,manifest.json}; reuse a matching earlier preparation.

    source defaults to the entry's source.path; seed to the existing preparation's (else 0); mask_suffix
    overrides how masks are named in the source; skip_invalid leaves out unusable pairs (listed in the
    summary) instead of failing. A preparation whose names or encodings differ from the entry (e.g. one
    made before pools kept the source's files) is made again on the same split, with a message.
    """
    root = Path(root)
    base = root / spec.key
    if force and base.exists():
        shutil.rmtree(base)
    existing = load_prepared(spec, root)
    replacing = False
    if existing is not None:
        if seed is None:
            seed = int(_read_manifest(existing.manifest).get("seed", 0))
        changes = _check_same_request(existing, spec, seed)
        if not changes:
            verify_prepared(existing)
            return existing
        source = (
            source or (Path(spec.source.path).expanduser() if spec.source.path else None) or _recorded_source(existing)
        )
        if source is None and spec.synthetic is None:
            raise PreparedDataModifiedError(
                f"{base} was prepared with {', '.join(changes)}; prepare it again from its source: "
                f"`llmseg datasets prepare {spec.key} --source DIR --force`"
            )
        if progress is not None:
            progress(f"re-preparing {spec.key!r} on the same split: it was prepared with {', '.join(changes)}")
        replacing = True
    elif base.exists():
        raise PreparedDataModifiedError(
            f"{base} exists but has no {MANIFEST} (an interrupted or foreign folder); delete it or "
            "prepare again with --force (force=True)"
        )
    seed = 0 if seed is None else seed
    if source is None and spec.source.path:
        source = Path(spec.source.path).expanduser()
    if source is None and spec.synthetic is None:
        hint = f" (download it from {spec.source_url})" if spec.source_url else ""
        raise DatasetSourceError(
            f"dataset {spec.key!r} is not synthetic: pass the folder holding its images and masks "
            f"as the source (--source DIR){hint}; docs/datasets.md shows the layout each dataset expects"
        )
    root.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename at the end, so a crash never leaves a half-made folder.
    with tempfile.TemporaryDirectory(prefix=f".{spec.key}.", dir=root) as tmp:
        work = Path(tmp)
        if source is None:
            assert spec.synthetic is not None  # a non-synthetic entry without a source was refused above
            source = generate_synthetic(spec, work / "staging")
            label = "synthetic:" + json.dumps(_settings(spec)["synthetic"], sort_keys=True)
        else:
            label = str(Path(source).resolve())
        built = work / "prepared"
        built.mkdir()
        _build(spec, built, Path(source), seed, label, skip_invalid, mask_suffix, progress)
        if replacing:
            os.replace(base, work / "replaced")  # removed with the temporary folder
        try:
            os.replace(built, base)
        except OSError:
            # Another process (a parallel sweep) finished the same dataset first: use theirs.
            if not (base / MANIFEST).is_file():
                raise
    prepared = load_prepared(spec, root)
    assert prepared is not None  # just written
    _check_same_request(prepared, spec, seed)
    return prepared


def ensure_prepared(
    spec: DatasetSpec, data_root: Path, progress: Callable[[str], None] | None = None
) -> PreparedDataset:
    """The prepared dataset; synthetic ones are generated on first use, real ones must be prepared first.
    One prepared with other names or encodings than the entry says is prepared again (same split)."""
    prepared = load_prepared(spec, data_root)
    if prepared is not None:
        if layout_changes(prepared, spec):
            return prepare_dataset(spec, data_root, progress=progress)
        return prepared
    if spec.synthetic is None:
        raise FileNotFoundError(
            f"dataset {spec.key!r} is not prepared under {data_root}; run "
            f"`llmseg datasets prepare {spec.key} --source <download folder> --out {data_root}` first"
        )
    return prepare_dataset(spec, data_root)
