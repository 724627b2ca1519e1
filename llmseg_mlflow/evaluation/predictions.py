"""Load the masks the evaluation sandbox wrote (out/predictions.npz), checked before any array is built.

The worker runs generated code, so the file is untrusted: it may be a FIFO or a link, hold other names, or
declare 16000x16000 arrays in a few MB of compressed zeros. Everything is checked from the zip directory and
each member's .npy header (shape, dtype, declared size) first; only then are the arrays read, each exactly the
size its held-out image allows.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from llmseg_mlflow.untrusted import UntrustedFileError, open_regular

_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_MAX_HEADER = 10_000  # bytes of a .npy header; numpy's own default limit
_SLACK = 64 * 1024  # zip and .npy headers per member
_SHOWN = 5


class PredictionsError(ValueError):
    """predictions.npz is not what the evaluation worker writes for these held-out images."""


def _names(names: set[str] | list[str]) -> str:
    shown = sorted(names)[:_SHOWN]
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(repr(n[:80]) for n in shown) + more


def _members(
    archive: zipfile.ZipFile, expected: Mapping[str, tuple[int, int]], file: str
) -> dict[str, zipfile.ZipInfo]:
    """Expected name -> its zip member; PredictionsError for missing, extra, duplicate or odd members."""
    infos = archive.infolist()
    if len(infos) > len(expected) + _SHOWN:
        raise PredictionsError(f"{file}: holds {len(infos)} entries for {len(expected)} held-out images")
    by_member: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename in by_member:
            raise PredictionsError(f"{file}: entry {info.filename[:80]!r} appears twice")
        if info.flag_bits & 0x1:
            raise PredictionsError(f"{file}: entry {info.filename[:80]!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise PredictionsError(
                f"{file}: entry {info.filename[:80]!r} uses zip compression "
                f"{info.compress_type}, not what numpy.savez writes"
            )
        by_member[info.filename] = info
    wanted = {f"{name}.npy": name for name in expected}
    missing = {name for member, name in wanted.items() if member not in by_member}
    extra = {member for member in by_member if member not in wanted}
    if missing or extra:
        parts = ([f"no mask for {len(missing)} held-out image(s): {_names(missing)}"] if missing else []) + (
            [f"{len(extra)} entries that are no held-out image: {_names(extra)}"] if extra else []
        )
        raise PredictionsError(f"{file}: " + "; ".join(parts))
    return {name: by_member[member] for member, name in wanted.items()}


def _check_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, shape: tuple[int, int], file: str
) -> None:
    """The member's .npy header must declare `shape`, a plain numeric dtype, and the matching member size."""
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                declared, _, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=_MAX_HEADER)
            elif version == (2, 0):
                declared, _, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=_MAX_HEADER)
            else:
                raise ValueError(f".npy format version {version} is not one numpy.save writes")
        except (ValueError, EOFError, zlib.error, zipfile.BadZipFile, OSError) as exc:
            raise PredictionsError(f"{file}: entry {name[:80]!r} is not a .npy array ({str(exc)[:200]})") from None
        header_bytes = member.tell()
    if tuple(declared) != shape:
        raise PredictionsError(
            f"{file}: entry {name[:80]!r} declares shape {tuple(declared)}, the held-out mask is {shape}"
        )
    if (
        dtype.kind not in _KINDS
        or dtype.hasobject
        or dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.itemsize > 8
    ):
        raise PredictionsError(
            f"{file}: entry {name[:80]!r} has dtype {str(dtype)[:80]}, not bool, an integer or a float"
        )
    size = header_bytes + shape[0] * shape[1] * dtype.itemsize
    if info.file_size != size:
        raise PredictionsError(
            f"{file}: entry {name[:80]!r} declares {info.file_size} bytes uncompressed, its header says {size}"
        )


def _binary(array: np.ndarray) -> np.ndarray:
    """0/1 uint8: nonzero is foreground (as astype(bool) read it before), NaN is not."""
    mask = array != 0
    if array.dtype.kind == "f":
        mask &= ~np.isnan(array)
    return mask.astype(np.uint8)


def load_predictions(path: Path, expected: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """The masks of predictions.npz as 0/1 uint8 arrays, one per expected name with shape expected[name] (H, W).

    Refuses (PredictionsError) a path that is not a regular file (a FIFO never blocks, a link is never
    followed), a file larger than the expected masks can take, a zip with missing or extra names, and any
    entry whose .npy header declares another shape, a non-numeric dtype or another size: all before any
    array is read (allow_pickle=False throughout).
    """
    path = Path(path)
    file = path.name
    shapes = {name: (int(hw[0]), int(hw[1])) for name, hw in expected.items()}
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise PredictionsError(f"{file}: not written") from None
    except UntrustedFileError as exc:
        raise PredictionsError(f"{file}: not read: {exc.reason}") from None
    except OSError as exc:
        raise PredictionsError(f"{file}: not read: {exc.strerror or exc}") from None
    try:
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        size = os.fstat(fh.fileno()).st_size
        # Deflate never grows data by more than a fraction of a percent; 8 bytes per pixel is float64.
        cap = sum(h * w * 8 + _SLACK for h, w in shapes.values()) + _SLACK
        if size > cap:
            raise PredictionsError(
                f"{file}: {size} bytes, more than {len(shapes)} masks of the held-out "
                f"sizes can take ({cap} bytes at most)"
            )
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise PredictionsError(f"{file}: not an .npz (zip) file ({str(exc)[:200]})") from None
        with archive:
            members = _members(archive, shapes, file)
            for name, info in members.items():
                _check_header(archive, info, name, shapes[name], file)
            out: dict[str, np.ndarray] = {}
            for name, info in members.items():
                try:
                    with archive.open(info) as member:
                        array = np.lib.format.read_array(member, allow_pickle=False, max_header_size=_MAX_HEADER)
                except (ValueError, EOFError, zlib.error, zipfile.BadZipFile, OSError) as exc:
                    raise PredictionsError(
                        f"{file}: entry {name[:80]!r} could not be read ({str(exc)[:200]})"
                    ) from None
                if array.shape != shapes[name]:  # the header was checked; this is the array built from it
                    raise PredictionsError(f"{file}: entry {name[:80]!r} read as shape {array.shape}")
                out[name] = _binary(array)
    return out
