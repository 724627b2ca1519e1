"""What a generated pipeline reported: find its results files (losses, Dice scores) and read their values,
in whatever layout it chose.

The files come from untrusted generated code, so reading them is bounded everywhere:
- the walk (`untrusted.walk`) never follows a link and skips FIFOs, sockets and devices; each file is read
  through `untrusted.read_bytes` (O_NOFOLLOW|O_NONBLOCK, regular files only) up to MAX_FILE_BYTES;
- the bytes are parsed (`_parse`: `workbook.read_sheet`, then the loss line or Dice table is chosen here) in a
  child process limited to CHILD_MEMORY_BYTES of memory and CHILD_TIMEOUT_S (`bounded.run`); it sends back a
  small JSON result (lists of floats, bounded) that is validated here;
- the caps on the workbook itself (zip sizes, rows, columns, cells, text) are `workbook`'s.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from llmseg_mlflow import untrusted
from llmseg_mlflow.pipeline import bounded, layout
from llmseg_mlflow.pipeline.layout import LayoutError
from llmseg_mlflow.pipeline.workbook import MAX_CELLS, WorkbookError, preload, read_sheet

EXPECTED_FILES: tuple[str, ...] = (
    "train_losses.xlsx",
    "val_losses.xlsx",
    "validation_dice_scores.xlsx",
    "test_dice_scores.xlsx",
)
# Stems LLMs really use for the same files; the prompt's exact name is listed first and preferred.
_ALIASES: dict[str, tuple[str, ...]] = {
    "train_losses.xlsx": ("train_losses", "train_loss", "training_losses", "training_loss"),
    "val_losses.xlsx": ("val_losses", "val_loss", "validation_losses", "validation_loss"),
    "validation_dice_scores.xlsx": ("validation_dice_scores", "val_dice_scores", "validation_dice", "val_dice"),
    "test_dice_scores.xlsx": ("test_dice_scores", "test_dice_score", "test_dice"),
}

# --- limits -------------------------------------------------------------------------------------------
MAX_FILE_BYTES = 20 * 1024**2  # on disk; a real results workbook is a few KB
CHILD_TIMEOUT_S = 60.0
CHILD_MEMORY_BYTES = 2 * 1024**3


class ResultsError(Exception):
    """An expected results file exists but cannot be read as numbers."""


@dataclass(frozen=True)
class Results:
    """What a generated pipeline reported about its own training and testing."""

    train_loss: list[float]
    val_loss: list[float]
    val_dice: list[float]
    val_dice_batches: list[list[float]]
    test_dice_batches: list[float]
    own_test_dice_mean: float | None
    files: dict[str, Path]
    missing: list[str]
    problems: list[str]
    # Expected file name -> where in it the values were read, e.g. "row 2 of sheet 'Sheet1'" or
    # "rows 2-4 (epochs) x columns B-D (batches) of sheet 'Dice'".
    layouts: dict[str, str] = field(default_factory=dict)


# --- finding the files ----------------------------------------------------------------------------


def _canonical(filename: str) -> tuple[str, int] | None:
    """(expected basename, 0 for the exact stem else 1) for a file name, or None."""
    # A file name is at most NAME_MAX (255) bytes, which bounds these regexes.
    name = filename[:255].replace("\\", "/").split("/")[-1].strip().strip("\"'").lower()
    name = re.sub(r"(\s*\.\s*xlsx?)+$", "", name)  # 'x .xlsx', 'x.xlsx.xlsx', or no suffix at all
    stem = re.sub(r"[\s-]+", "_", name.strip(" ._"))
    for expected, stems in _ALIASES.items():
        if stem in stems:
            return expected, stems.index(stem) and 1
    return None


# The walk only lists names: sizes are capped when a file is read, so a big checkpoint beside the results
# does not push them out. Entries of any kind are bounded by the walk (2 * max_files).
_WALK_CAPS = untrusted.Caps(max_file_bytes=1 << 62, max_total_bytes=1 << 62, max_files=50_000)


def _find(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Expected files under root (regular files only, links never followed) and notes on what was skipped."""
    listing = untrusted.walk(root, _WALK_CAPS)
    base = Path(os.path.abspath(root))
    best: dict[str, tuple[tuple[int, float], Path]] = {}
    for path in listing.files:
        rel = path.relative_to(base)
        if any(p.startswith(".") or p == "__pycache__" for p in rel.parts[:-1]):
            continue
        match = None if path.name.startswith("~$") else _canonical(path.name)
        if match is None:
            continue
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        rank = (match[1], -st.st_mtime)  # exact name first, then the newest
        if match[0] not in best or rank < best[match[0]][0]:
            best[match[0]] = (rank, Path(root) / rel)
    notes = []
    for skipped in listing.skipped:
        match = _canonical(skipped.path.rsplit("/", 1)[-1])
        if match is not None:
            notes.append(f"{match[0]}: skipped {skipped.path[:200]!r} ({skipped.reason})")
        elif skipped.reason.startswith("walk stopped"):
            notes.append(f"results search: {skipped.reason} in {skipped.path[:200]!r}")
    return {name: best[name][1] for name in EXPECTED_FILES if name in best}, notes


def find_result_files(root: Path) -> dict[str, Path]:
    """Expected Excel files anywhere under root (names matched case-insensitively, also without .xlsx suffix
    quirks like 'validation_dice_scores .xlsx'); symlinks, FIFOs and other non-regular files are skipped."""
    return _find(Path(root))[0]


def _parse(name: str, data: bytes, kind: str) -> dict:
    """One file's values as a JSON-able dict (runs in the bounded child); bounded.Refused if it cannot be read."""
    values: list[float] | list[list[float]]
    try:
        sheet = read_sheet(data, name)
        if kind == "loss":
            values, note, where = layout.loss_from(sheet, name)
        elif kind == "rows":  # the filled block as it stands (text cells as NaN), for the compliance check
            values, note, where = [[number for number, _ in row] for row in sheet.grid], "", sheet.where
        else:
            values, note, where = layout.dice_from(sheet)
    except (LayoutError, WorkbookError) as exc:
        raise bounded.Refused(str(exc)) from None
    return {"values": values, "note": note, "layout": where}


# --- the parent's side -----------------------------------------------------------------------------


def _floats(value: object, limit: int) -> list[float] | None:
    if not isinstance(value, list) or len(value) > limit:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    return [float(v) for v in value]


def _validated(answer: bounded.Answer, kind: str) -> dict:
    """The child's answer for one file, checked to be what _parse makes (types, bounded sizes)."""
    name, result = answer.name, answer.value
    if answer.refused is not None:
        raise ResultsError(answer.refused[: bounded.MAX_MESSAGE])
    bad = ResultsError(f"{name}: the results reader returned malformed output")
    if not isinstance(result, dict):
        raise bad
    note, layout = result.get("note"), result.get("layout")
    if not isinstance(note, str) or not isinstance(layout, str):
        raise bad
    values: list[float] | list[list[float]] | None
    if kind == "loss":
        values = _floats(result.get("values"), MAX_CELLS)
    else:
        rows = result.get("values")
        if not isinstance(rows, list) or len(rows) > MAX_CELLS:
            raise bad
        parsed = [_floats(row, MAX_CELLS) for row in rows]
        values = [row for row in parsed if row is not None]
        if len(values) < len(parsed) or sum(len(row) for row in values) > MAX_CELLS:
            raise bad
    if values is None:
        raise bad
    return {"values": values, "note": note[: bounded.MAX_MESSAGE], "layout": layout[:200]}


def _error(failure: bounded.Failure) -> ResultsError:
    """The ResultsError for a parse that stopped short: the child died, or the reader server did not answer."""
    name = failure.job
    if failure.kind in bounded.DIED:
        return ResultsError(
            f"{name}: reading it {failure.how}; a results workbook is parsed in a child process limited to "
            f"{bounded.size_text(CHILD_MEMORY_BYTES)} of memory and {CHILD_TIMEOUT_S:g} s"
        )
    if failure.kind == "unavailable":
        return ResultsError(f"{name}: the results reader process could not be started")
    if failure.kind == "stopped":
        return ResultsError(f"{name}: the results reader process stopped answering")
    return ResultsError(f"{name}: the results reader returned malformed output")


def _parse_in_child(jobs: list[tuple[str, str, bytes]]) -> list[dict]:
    """Parse (name, kind, bytes) jobs in one limited child process; ResultsError for the first file that fails."""
    # The limits are read at each call: tests (and callers) may change them.
    outcome = bounded.run(
        _parse,
        [(name, {"kind": kind}, data) for name, kind, data in jobs],
        memory_bytes=CHILD_MEMORY_BYTES,
        timeout_s=CHILD_TIMEOUT_S,
        prepare=preload,
    )
    out = [_validated(answer, kind) for answer, (_, kind, _) in zip(outcome.answers, jobs)]
    if outcome.failure is not None:
        raise _error(outcome.failure)
    return out


def _load(path: Path, name: str) -> bytes:
    """A results file's bytes (regular file, no link followed, capped); ResultsError otherwise."""
    try:
        data = untrusted.read_bytes(path, MAX_FILE_BYTES)
    except untrusted.UntrustedFileError as exc:
        why = (
            f"{exc.reason} (a results workbook may have {MAX_FILE_BYTES // 1024**2} MB)"
            if "max_bytes" in exc.reason
            else exc.reason
        )
        raise ResultsError(f"{name}: not read: {why}") from None
    except OSError as exc:
        raise ResultsError(f"{name}: not read: {exc.strerror or exc}") from None
    if not data:
        raise ResultsError(f"{name}: the file is empty (0 bytes); the pipeline did not finish writing it")
    return data


def _read_files(jobs: list[tuple[str, str, Path]]) -> list[dict]:
    """Read and parse (name, kind, path) in order; the first failure (in that order) raises ResultsError."""
    loaded: list[tuple[str, str, bytes]] = []
    first_error: ResultsError | None = None
    for name, kind, path in jobs:
        try:
            loaded.append((name, kind, _load(path, name)))
        except ResultsError as exc:
            first_error = exc  # the files before it are still parsed: one of them may fail first
            break
    out = _parse_in_child(loaded) if loaded else []
    if first_error is not None:
        raise first_error
    return out


def read_loss_curve(path: Path) -> list[float]:
    """Per-epoch loss values from a loss workbook, whether epochs run across columns or down rows."""
    path = Path(path)
    return _read_files([(path.name, "loss", path)])[0]["values"]


def read_dice_table(path: Path) -> list[list[float]]:
    """Dice per batch for each epoch (rows = epochs, as the prompt asks); ragged rows keep their length."""
    path = Path(path)
    return _read_files([(path.name, "dice", path)])[0]["values"]


def read_rows(path: Path) -> list[list[float]]:
    """The filled rows of a workbook's first sheet with numbers, as they stand (text cells as NaN)."""
    path = Path(path)
    return _read_files([(path.name, "rows", path)])[0]["values"]


def read_results(root: Path) -> Results:
    """Read whatever expected files exist; missing ones are listed, corrupt ones raise ResultsError."""
    files, skipped = _find(Path(root))
    missing = [name for name in EXPECTED_FILES if name not in files]
    problems: list[str] = [f"{name}: not written" for name in missing] + skipped
    kinds = {
        "train_losses.xlsx": "loss",
        "val_losses.xlsx": "loss",
        "validation_dice_scores.xlsx": "dice",
        "test_dice_scores.xlsx": "dice",
    }
    jobs = [(name, kinds[name], files[name]) for name in EXPECTED_FILES if name in files]
    parsed = dict(zip([name for name, _, _ in jobs], _read_files(jobs)))
    layouts = {name: got["layout"] for name, got in parsed.items()}
    problems += [f"{name}: {got['note']}" for name, got in parsed.items()]
    for name, path in files.items():
        if path.name != name:
            problems.append(f"{name}: found as {path.name!r}")
    train = parsed.get("train_losses.xlsx", {}).get("values", [])
    val = parsed.get("val_losses.xlsx", {}).get("values", [])
    if train and val and len(train) != len(val):
        problems.append(f"train_losses.xlsx has {len(train)} epochs, val_losses.xlsx has {len(val)}")
    val_batches = parsed.get("validation_dice_scores.xlsx", {}).get("values", [])
    # Test Dice is one row (or one column) of batches; anything bigger is read row by row.
    test = [v for row in parsed.get("test_dice_scores.xlsx", {}).get("values", []) for v in row]
    return Results(
        train_loss=train,
        val_loss=val,
        val_dice=[sum(row) / len(row) for row in val_batches],
        val_dice_batches=val_batches,
        test_dice_batches=test,
        own_test_dice_mean=sum(test) / len(test) if test else None,
        files=files,
        missing=missing,
        problems=problems,
        layouts=layouts,
    )
