"""Prepared data stay what the manifest says: sha256 checks cached by stat, copies instead of old hard links,
and the blinded held-out folder (images, blank masks) that evaluation sandboxes see instead of heldout/."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from PIL import Image

from llmseg_mlflow.catalog.sources import listing
from llmseg_mlflow.catalog.volume_pool import blank_label_volume, scored_slices

if TYPE_CHECKING:
    from llmseg_mlflow.catalog.prepared import PreparedDataset

VERIFIED = ".verified.json"  # beside the manifest: stat keys of files that last matched their sha256
BLIND = "heldout_blind"  # beside heldout/: its images and blank masks, what an evaluation sandbox sees
_BLIND_STATE = ".heldout_blind.json"
_BLIND_LOCK = ".heldout_blind.lock"
# A file written within the clock's granularity of its hashing could keep its size and times: such recent
# files are not remembered as verified (git's "racy clean" rule), so they are hashed again next time.
_SETTLED_NS = 2_000_000_000


class PreparedDataModifiedError(RuntimeError):
    """A prepared folder that no longer matches its manifest or the requested settings."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(entries: list[dict[str, Any]]) -> str:
    """sha256 over 'split<TAB>path<TAB>sha256' lines of all files, sorted by path."""
    lines = sorted(f"{e['split']}\t{e['path']}\t{e['sha256']}\n" for e in entries)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


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


def _reprepare(prepared: PreparedDataset) -> str:
    return (
        f"prepare it again: `llmseg datasets prepare {prepared.spec.key} --force --out {prepared.root.parent}` "
        "(with --source DIR unless the catalog entry records the source)"
    )


def _stat_key(st: os.stat_result) -> list[int]:
    """What a write to a file changes: size, mtime, ctime (which cannot be set back) and inode."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (parallel evaluations may write the same file); best effort."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", dir=path.parent)
    except OSError:
        return  # a read-only data folder: the files are hashed again next time
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def _verify_split(prepared: PreparedDataset, split: str) -> None:
    """Every file of one split against the manifest's sha256, hashing only what changed since it last matched."""
    data = _read_manifest(prepared.manifest)
    if data.get("digest") != prepared.digest or _digest(data["files"]) != prepared.digest:
        raise PreparedDataModifiedError(
            f"{prepared.manifest} no longer matches the digest {prepared.digest[:16]} the dataset was loaded "
            f"with; {_reprepare(prepared)}"
        )
    cache = _read_json(prepared.root / VERIFIED)
    known: dict[str, Any] = cache.get("files", {}) if cache.get("digest") == prepared.digest else {}
    checked: dict[str, list[int]] = {}
    changed, missing = [], []
    settled = time.time_ns() - _SETTLED_NS
    for entry in data["files"]:
        if entry["split"] != split:
            continue
        rel, path = entry["path"], prepared.root / entry["path"]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            missing.append(rel)
            continue
        key = _stat_key(st)
        if known.get(rel) != key and (not stat.S_ISREG(st.st_mode) or _sha256(path) != entry["sha256"]):
            changed.append(rel)
            continue
        if max(st.st_mtime_ns, st.st_ctime_ns) < settled:
            checked[rel] = key
    prefix = f"{split}/"
    fresh = {k: v for k, v in known.items() if not k.startswith(prefix)} | checked
    if fresh != known:
        _write_json(prepared.root / VERIFIED, {"digest": prepared.digest, "files": fresh})
    if changed or missing:
        found = "; ".join(
            f"{label}: {listing(items)}" for label, items in (("changed", changed), ("missing", missing)) if items
        )
        raise PreparedDataModifiedError(
            f"the {split} split of dataset {prepared.spec.key!r} in {prepared.root} no longer matches its "
            f"manifest ({found}); scores on it would not be comparable with earlier runs; {_reprepare(prepared)}"
        )


def _copy_hard_links(prepared: PreparedDataset, files: list[dict[str, Any]]) -> None:
    """Older versions hard-linked the user's files into pool/ and heldout/: replace those with copies, so
    that a write to either side no longer changes the other."""
    linked = []
    for entry in files:
        try:
            st = os.lstat(prepared.root / entry["path"])
        except OSError:
            continue  # missing: the verification says so
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            linked.append((entry, stat.S_IMODE(st.st_mode)))
    if not linked:
        return
    print(
        f"llmseg: {len(linked)} file(s) of the prepared dataset {prepared.spec.key!r} in {prepared.root} are "
        "hard links shared with another folder (older versions linked the source's files); replacing them "
        "with copies",
        file=sys.stderr,
    )
    changed = []
    for entry, mode in linked:
        path = prepared.root / entry["path"]
        try:
            blob = path.read_bytes()
            if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
                changed.append(entry["path"])
                continue
            fd, tmp = tempfile.mkstemp(prefix=".copy.", dir=prepared.root)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            raise PreparedDataModifiedError(
                f"{path} is a hard link shared with another folder and could not be replaced by a copy ({exc}); "
                f"{_reprepare(prepared)}"
            ) from exc
    if changed:
        raise PreparedDataModifiedError(
            f"the prepared dataset {prepared.spec.key!r} in {prepared.root} holds files hard-linked to the source "
            f"that no longer match the manifest (the source was edited): {listing(changed)}; {_reprepare(prepared)}"
        )


def _tree_keys(folder: Path) -> dict[str, list[int]]:
    """Stat keys of everything under folder but its directories (links included, not followed)."""
    keys = {}
    for top, dirs, names in os.walk(folder):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            path = os.path.join(top, name)
            keys[os.path.relpath(path, folder)] = _stat_key(os.lstat(path))
    return keys


def _blank_like(real: Path, dst: Path) -> None:
    """An all-zero image of the real mask's size, mode and format (only its header is read)."""
    with Image.open(real) as img:
        size, mode, fmt = img.size, img.mode, img.format
    Image.new(mode if mode in ("1", "L", "I", "I;16", "F") else "L", size, 0).save(dst, format=fmt)


def _fill_blind(
    prepared: PreparedDataset, rows: list[dict[str, Any]], folder: Path, slices: dict[str, list[int]]
) -> None:
    """heldout/'s images copied into folder, its masks blanked (label volumes: see blank_label_volume)."""
    spec = prepared.spec
    spec.images_dir(folder).mkdir(parents=True, exist_ok=True)
    spec.masks_dir(folder).mkdir(parents=True, exist_ok=True)
    changed = []
    for entry in rows:
        src = prepared.root / entry["path"]
        dst = folder / PurePosixPath(entry["path"]).relative_to("heldout")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if entry["role"] == "mask" and prepared.volumes:
            blank_label_volume(src, dst, slices.get(entry["volume"], []), spec.source.slice_axis, spec.foreground_value)
            continue
        if entry["role"] == "mask":
            _blank_like(src, dst)
            continue
        blob = src.read_bytes()  # the bytes hashed are the bytes copied
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            changed.append(entry["path"])
        dst.write_bytes(blob)
    if changed:
        raise PreparedDataModifiedError(
            f"the heldout split of dataset {spec.key!r} in {prepared.root} no longer matches its manifest "
            f"(changed: {listing(changed)}); {_reprepare(prepared)}"
        )


def _blind_heldout(prepared: PreparedDataset) -> Path:
    target = prepared.root / BLIND
    state = prepared.root / _BLIND_STATE
    files = _read_manifest(prepared.manifest)["files"]
    rows = [e for e in files if e["split"] == "heldout"]
    with open(prepared.root / _BLIND_LOCK, "a") as lock:  # parallel evaluations: one builds, the rest wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        recorded = _read_json(state)
        if (
            recorded.get("digest") == prepared.digest
            and target.is_dir()
            and not target.is_symlink()
            and recorded.get("files") == _tree_keys(target)
        ):
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{BLIND}.", dir=prepared.root))
        try:
            built = work / BLIND
            _fill_blind(prepared, rows, built, scored_slices(files) if prepared.volumes else {})
            if target.exists() or target.is_symlink():
                os.rename(target, work / "old")
            os.rename(built, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _write_json(state, {"digest": prepared.digest, "files": _tree_keys(target)})
    return target
