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

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from llmseg_mlflow.pipeline import bounded, untrusted
from llmseg_mlflow.pipeline.workbook import MAX_CELLS, Sheet, WorkbookError, column_letter, preload, read_sheet
# Read through this module by tests and older callers.
from llmseg_mlflow.pipeline.workbook import MAX_TEXT, _cell  # noqa: F401

EXPECTED_FILES: tuple[str, ...] = (
    "train_losses.xlsx", "val_losses.xlsx", "validation_dice_scores.xlsx", "test_dice_scores.xlsx",
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


@dataclass
class _Table:
    """The numeric block of a sheet, with the text labels that stood beside it."""

    num: list[list[float]]
    row_labels: list[str]
    col_labels: list[str]
    notes: list[str]
    row_ids: list[int] = field(default_factory=list)  # original row number of each line of num
    col_ids: list[int] = field(default_factory=list)  # original column index of each column of num


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


# --- choosing the values in a sheet (in the bounded child) ---------------------------------------------

def _table(sheet: Sheet) -> _Table:
    """Strip the text, pandas header/index and empty lines around a sheet's numbers."""
    cells = sheet.grid
    notes = sheet.notes
    width = max(len(r) for r in cells)

    def filled(i: int, j: int) -> bool:
        return not math.isnan(cells[i][j][0]) or bool(cells[i][j][1])

    rows = [i for i in range(len(cells)) if any(filled(i, j) for j in range(width))]
    cols = [j for j in range(width) if any(filled(i, j) for i in rows)]
    head, side = [], []
    if (len(rows) > 1 and len(cols) > 1 and not filled(rows[0], cols[0])
            and all(filled(rows[0], j) for j in cols[1:]) and all(filled(i, cols[0]) for i in rows[1:])):
        head, side, rows, cols = [rows[0]], [cols[0]], rows[1:], cols[1:]
        notes.append("pandas header row and index column")
    text_rows = [i for i in rows if all(math.isnan(cells[i][j][0]) for j in cols)]
    dropped_rows = set(text_rows)
    rows = [i for i in rows if i not in dropped_rows]
    text_cols = [j for j in cols if all(math.isnan(cells[i][j][0]) for i in rows)]
    dropped_cols = set(text_cols)
    cols = [j for j in cols if j not in dropped_cols]
    if text_rows or text_cols:
        notes.append(f"{len(text_rows)} text header row(s), {len(text_cols)} label column(s)")
    return _Table(
        num=[[cells[i][j][0] for j in cols] for i in rows],
        row_labels=[" ".join(cells[i][j][1] for j in side + text_cols).strip().lower()[:1000] for i in rows],
        col_labels=[" ".join(cells[i][j][1] for i in head + text_rows).strip().lower()[:1000] for j in cols],
        notes=notes,
        row_ids=[sheet.row_ids[i] for i in rows],
        col_ids=[sheet.col_ids[j] for j in cols],
    )


def _is_counter(line: list[float], starts: tuple[int, ...] = (0, 1)) -> bool:
    """Whether a line is 0,1,2,... or 1,2,3,... (epoch numbers or a pandas index)."""
    if not line or any(math.isnan(v) or math.isinf(v) or v != int(v) for v in line):
        return False
    return int(line[0]) in starts and all(b - a == 1 for a, b in zip(line, line[1:]))


def _fractional(line: list[float]) -> bool:
    """Whether a line holds a value that is not a whole number: losses do, epoch numbers never."""
    return any(not math.isnan(v) and (math.isinf(v) or v != int(v)) for v in line)


def _transpose(num: list[list[float]]) -> list[list[float]]:
    return [list(col) for col in zip(*num)]


def _enumerates(labels: list[str], word: str) -> bool:
    return any(re.search(rf"{word}\D{{0,3}}\d", label) for label in labels)


def _names_fields(labels: list[str]) -> bool:
    return any(re.search(r"epoch|loss|dice|score", label) for label in labels if not re.search(r"\d", label))


def _epochs_across(table: _Table) -> bool:
    """Whether epochs run across columns: by the text around the numbers, then by structure."""
    # Field names over columns ("Epoch", "Train Loss") mean one field per column, epochs down rows;
    # numbered labels ("Epoch 3") enumerate the epochs themselves.
    across_votes = _enumerates(table.col_labels, "epoch") + _names_fields(table.row_labels)
    down_votes = _enumerates(table.row_labels, "epoch") + _names_fields(table.col_labels)
    if across_votes != down_votes:
        return across_votes > down_votes

    def key(lines: list[list[float]]) -> tuple[float, bool]:
        values = sum(not _is_counter(line) for line in lines)
        return (values or math.inf, values == len(lines))  # fewest value lines; an epoch line helps

    across, down = key(table.num), key(_transpose(table.num))
    return across <= down  # a tie keeps the prompt's layout: epochs across columns


def _trim(line: list[float]) -> list[float]:
    """Drop trailing empty cells (NaN padding), keep inner gaps in place."""
    end = len(line)
    while end and math.isnan(line[end - 1]):
        end -= 1
    return line[:end]


def _span(ids: list[int], letters: bool) -> str:
    """'row 2', 'rows 2-4', 'column B' or 'columns B-D' (first to last of the original lines read)."""
    word, show = ("column", column_letter) if letters else ("row", str)
    if len(ids) <= 1:
        return f"{word} {show(ids[0]) if ids else 'none'}"
    return f"{word}s {show(ids[0])}-{show(ids[-1])}"


def _loss_from(sheet: Sheet, name: str) -> tuple[list[float], str, str]:
    """Loss per epoch, a note on the layout found, and where the values were read."""
    table = _table(sheet)
    notes = table.notes
    across = _epochs_across(table)
    lines, labels, ids = ((table.num, table.row_labels, table.row_ids) if across
                          else (_transpose(table.num), table.col_labels, table.col_ids))
    firsts = [line[0] for line in lines]
    if len(lines) > 1 and _is_counter(firsts, (0,)) or len(lines) == 1 and len(lines[0]) > 1 and firsts[0] == 0:
        lines = [line[1:] for line in lines]  # pandas index (or header) numbers; a loss is never exactly 0
        notes.append("numbered index removed")
    candidates = [k for k, line in enumerate(lines) if not _is_counter(line)]
    if not candidates:
        raise ResultsError(f"{name}: holds epoch numbers but no loss values")
    wanted = "val" if "val" in name.lower() else "train"
    pool = [k for k in candidates if wanted in labels[k]] or candidates
    # By content: a loss line has fractional values; an epoch index (1, 2, 3, ... even with a stray or a gap
    # that keeps it from being an exact counter) has whole numbers only.
    chosen = next((k for k in pool if _fractional(lines[k])), pool[0])
    if len(candidates) > 1:
        notes.append(f"{len(candidates)} value lines, used one")
    if not _fractional(lines[chosen]) and len(lines[chosen]) > 1:
        notes.append("no line holds fractional values")
    layout = "epochs across columns" if across else "epochs down rows"
    where = (f"row {ids[chosen]}" if across else f"column {column_letter(ids[chosen])}") + f" of {sheet.where}"
    return _trim(lines[chosen]), ", ".join([layout, *notes]), where


def _dice_from(sheet: Sheet) -> tuple[list[list[float]], str, str]:
    """Dice rows (epochs) of batch values, a note on the layout found, and where they were read."""
    table = _table(sheet)
    notes = table.notes
    num, col_labels = table.num, table.col_labels
    epoch_ids, batch_ids, epochs_in_rows = table.row_ids, table.col_ids, True
    if _enumerates(table.col_labels, "epoch") or _enumerates(table.row_labels, "batch"):
        num, col_labels = _transpose(num), table.row_labels  # epochs across columns despite the prompt
        epoch_ids, batch_ids, epochs_in_rows = table.col_ids, table.row_ids, False
        notes.append("epochs across columns, transposed")
    first_label = col_labels[0] if col_labels else ""
    named_epoch = "epoch" in first_label and not re.search(r"\d", first_label)
    if len(num[0]) > 1 and ((len(num) > 1 and _is_counter([row[0] for row in num])) or named_epoch):
        num = [row[1:] for row in num]
        batch_ids = batch_ids[1:]
        notes.append("epoch column removed")
    if len(num) > 1 and _is_counter(_trim(num[0])):
        num = num[1:]
        epoch_ids = epoch_ids[1:]
        notes.append("numbered header row removed")
    rows = [[v for v in row if not math.isnan(v)] for row in num]
    kept = [i for i, row in zip(epoch_ids, rows) if row]
    where = (f"{_span(kept, not epochs_in_rows)} (epochs) x {_span(batch_ids, epochs_in_rows)} (batches) "
             f"of {sheet.where}")
    return [row for row in rows if row], ", ".join(["epochs as rows, batches as columns", *notes]), where


def _parse(name: str, data: bytes, kind: str) -> dict:
    """One file's values as a JSON-able dict (runs in the bounded child); bounded.Refused if it cannot be read."""
    try:
        sheet = read_sheet(data, name)
        if kind == "loss":
            values, note, where = _loss_from(sheet, name)
        else:
            values, note, where = _dice_from(sheet)
    except (ResultsError, WorkbookError) as exc:
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
        raise ResultsError(answer.refused[:bounded.MAX_MESSAGE])
    bad = ResultsError(f"{name}: the results reader returned malformed output")
    if not isinstance(result, dict):
        raise bad
    note, layout = result.get("note"), result.get("layout")
    if not isinstance(note, str) or not isinstance(layout, str):
        raise bad
    if kind == "loss":
        values = _floats(result.get("values"), MAX_CELLS)
    else:
        rows = result.get("values")
        if not isinstance(rows, list) or len(rows) > MAX_CELLS:
            raise bad
        values = [_floats(row, MAX_CELLS) for row in rows]
        if any(row is None for row in values) or sum(len(row) for row in values) > MAX_CELLS:
            raise bad
    if values is None:
        raise bad
    return {"values": values, "note": note[:bounded.MAX_MESSAGE], "layout": layout[:200]}


def _error(failure: bounded.Failure) -> ResultsError:
    """The ResultsError for a parse that stopped short: the child died, or the reader server did not answer."""
    name = failure.job
    if failure.kind in bounded.DIED:
        return ResultsError(
            f"{name}: reading it {failure.how}; a results workbook is parsed in a child process limited to "
            f"{bounded.size_text(CHILD_MEMORY_BYTES)} of memory and {CHILD_TIMEOUT_S:g} s")
    if failure.kind == "unavailable":
        return ResultsError(f"{name}: the results reader process could not be started")
    if failure.kind == "stopped":
        return ResultsError(f"{name}: the results reader process stopped answering")
    return ResultsError(f"{name}: the results reader returned malformed output")


def _parse_in_child(jobs: list[tuple[str, str, bytes]]) -> list[dict]:
    """Parse (name, kind, bytes) jobs in one limited child process; ResultsError for the first file that fails."""
    # The limits are read at each call: tests (and callers) may change them.
    outcome = bounded.run(_parse, [(name, {"kind": kind}, data) for name, kind, data in jobs],
                          memory_bytes=CHILD_MEMORY_BYTES, timeout_s=CHILD_TIMEOUT_S, prepare=preload)
    out = [_validated(answer, kind) for answer, (_, kind, _) in zip(outcome.answers, jobs)]
    if outcome.failure is not None:
        raise _error(outcome.failure)
    return out


def _load(path: Path, name: str) -> bytes:
    """A results file's bytes (regular file, no link followed, capped); ResultsError otherwise."""
    try:
        data = untrusted.read_bytes(path, MAX_FILE_BYTES)
    except untrusted.UntrustedFileError as exc:
        why = (f"{exc.reason} (a results workbook may have {MAX_FILE_BYTES // 1024**2} MB)"
               if "max_bytes" in exc.reason else exc.reason)
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


def read_results(root: Path) -> Results:
    """Read whatever expected files exist; missing ones are listed, corrupt ones raise ResultsError."""
    files, skipped = _find(Path(root))
    missing = [name for name in EXPECTED_FILES if name not in files]
    problems: list[str] = [f"{name}: not written" for name in missing] + skipped
    kinds = {"train_losses.xlsx": "loss", "val_losses.xlsx": "loss",
             "validation_dice_scores.xlsx": "dice", "test_dice_scores.xlsx": "dice"}
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

