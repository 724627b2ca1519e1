"""Read the Excel files a generated pipeline writes (losses, Dice scores), in whatever layout it chose."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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
_NUMBER = re.compile(
    r"(?:tensor|array|np\.float\d*|float\d*)?\(?\[?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\]?"
    r"(?:\s*,[^)]*)?\)?"
)
NAN = float("nan")


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


@dataclass
class _Table:
    """The numeric block of a sheet, with the text labels that stood beside it."""

    num: list[list[float]]
    row_labels: list[str]
    col_labels: list[str]
    notes: list[str]


def _canonical(filename: str) -> tuple[str, int] | None:
    """(expected basename, 0 for the exact stem else 1) for a file name, or None."""
    name = filename.replace("\\", "/").split("/")[-1].strip().strip("\"'").lower()
    name = re.sub(r"(\s*\.\s*xlsx?)+$", "", name)  # 'x .xlsx', 'x.xlsx.xlsx', or no suffix at all
    stem = re.sub(r"[\s-]+", "_", name.strip(" ._"))
    for expected, stems in _ALIASES.items():
        if stem in stems:
            return expected, stems.index(stem) and 1
    return None


def find_result_files(root: Path) -> dict[str, Path]:
    """Expected Excel files anywhere under root (names matched case-insensitively, also without .xlsx suffix quirks like 'validation_dice_scores .xlsx')."""
    best: dict[str, tuple[tuple[int, float], Path]] = {}
    for folder, dirs, names in os.walk(root):  # symlinked folders (a mounted data pool) are not followed
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in names:
            match = None if name.startswith("~$") else _canonical(name)
            if match is None:
                continue
            path = Path(folder) / name
            rank = (match[1], -path.stat().st_mtime)  # exact name first, then the newest
            if match[0] not in best or rank < best[match[0]][0]:
                best[match[0]] = (rank, path)
    return {name: best[name][1] for name in EXPECTED_FILES if name in best}


def _cell(value: object) -> tuple[float, str]:
    """(number or NaN, text or '') for one spreadsheet cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NAN, ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), ""
    text = str(value).strip()
    m = _NUMBER.fullmatch(text)  # also "tensor(0.41, device='cuda:0')", written by code that forgot .item()
    if m:
        return float(m.group(1)), ""
    return NAN, "" if text.lower() in ("nan", "none") else text


def _read_grid(path: Path) -> tuple[list[list[tuple[float, str]]], list[str]]:
    """The first non-empty sheet of a workbook as cells; ResultsError if it is not readable."""
    notes: list[str] = []
    if path.stat().st_size == 0:
        raise ResultsError(f"{path.name}: the file is empty (0 bytes); the pipeline did not finish writing it")
    try:
        sheets = pd.read_excel(path, header=None, sheet_name=None)
    except Exception as exc:  # pandas raises many types for broken files; all mean the same here
        try:
            sheets = {"csv": pd.read_csv(path, header=None, sep=None, engine="python", encoding="utf-8")}
            notes.append("CSV text with an Excel name")
        except Exception:
            reason = ("its bytes are neither .xlsx nor .xls" if "cannot be determined" in str(exc)
                      else f"{type(exc).__name__}: {exc}")
            raise ResultsError(
                f"{path.name}: not a readable Excel workbook ({reason}); the pipeline must write it with "
                "pandas DataFrame.to_excel or openpyxl"
            ) from exc
    for frame in sheets.values():
        grid = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
        if any(not math.isnan(n) for row in grid for n, _ in row):
            return grid, notes
    raise ResultsError(f"{path.name}: the workbook holds no numbers (empty sheet or only text)")


def _table(grid: list[list[tuple[float, str]]], notes: list[str]) -> _Table:
    """Strip the text, pandas header/index and empty lines around a sheet's numbers."""
    width = max(len(r) for r in grid)
    cells = [r + [(NAN, "")] * (width - len(r)) for r in grid]

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
    rows = [i for i in rows if i not in text_rows]
    text_cols = [j for j in cols if all(math.isnan(cells[i][j][0]) for i in rows)]
    cols = [j for j in cols if j not in text_cols]
    if text_rows or text_cols:
        notes.append(f"{len(text_rows)} text header row(s), {len(text_cols)} label column(s)")
    return _Table(
        num=[[cells[i][j][0] for j in cols] for i in rows],
        row_labels=[" ".join(cells[i][j][1] for j in side + text_cols).strip().lower() for i in rows],
        col_labels=[" ".join(cells[i][j][1] for i in head + text_rows).strip().lower() for j in cols],
        notes=notes,
    )


def _is_counter(line: list[float], starts: tuple[int, ...] = (0, 1)) -> bool:
    """Whether a line is 0,1,2,... or 1,2,3,... (epoch numbers or a pandas index)."""
    if not line or any(math.isnan(v) or v != int(v) for v in line):
        return False
    return int(line[0]) in starts and all(b - a == 1 for a, b in zip(line, line[1:]))


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
    while line and math.isnan(line[-1]):
        line = line[:-1]
    return line


def _read_loss(path: Path) -> tuple[list[float], str]:
    """Loss per epoch and a note on the layout found."""
    grid, notes = _read_grid(path)
    table = _table(grid, notes)
    across = _epochs_across(table)
    lines, labels = (table.num, table.row_labels) if across else (_transpose(table.num), table.col_labels)
    firsts = [line[0] for line in lines]
    if len(lines) > 1 and _is_counter(firsts, (0,)) or len(lines) == 1 and len(lines[0]) > 1 and firsts[0] == 0:
        lines = [line[1:] for line in lines]  # pandas index (or header) numbers; a loss is never exactly 0
        notes.append("numbered index removed")
    values = [(line, label) for line, label in zip(lines, labels) if not _is_counter(line)]
    if not values:
        raise ResultsError(f"{path.name}: holds epoch numbers but no loss values")
    wanted = "val" if "val" in path.name.lower() else "train"
    chosen = next((line for line, label in values if wanted in label), values[0][0])
    if len(values) > 1:
        notes.append(f"{len(values)} value lines, used one")
    layout = "epochs across columns" if across else "epochs down rows"
    return _trim(chosen), ", ".join([layout, *notes])


def read_loss_curve(path: Path) -> list[float]:
    """Per-epoch loss values from a loss workbook, whether epochs run across columns or down rows."""
    return _read_loss(Path(path))[0]


def _read_dice(path: Path) -> tuple[list[list[float]], str]:
    """Dice rows (epochs) of batch values and a note on the layout found."""
    grid, notes = _read_grid(path)
    table = _table(grid, notes)
    num, col_labels = table.num, table.col_labels
    if _enumerates(table.col_labels, "epoch") or _enumerates(table.row_labels, "batch"):
        num, col_labels = _transpose(num), table.row_labels  # epochs across columns despite the prompt
        notes.append("epochs across columns, transposed")
    first_label = col_labels[0] if col_labels else ""
    named_epoch = "epoch" in first_label and not re.search(r"\d", first_label)
    if len(num[0]) > 1 and ((len(num) > 1 and _is_counter([row[0] for row in num])) or named_epoch):
        num = [row[1:] for row in num]
        notes.append("epoch column removed")
    if len(num) > 1 and _is_counter(_trim(num[0])):
        num = num[1:]
        notes.append("numbered header row removed")
    rows = [[v for v in row if not math.isnan(v)] for row in num]
    return [row for row in rows if row], ", ".join(["epochs as rows, batches as columns", *notes])


def read_dice_table(path: Path) -> list[list[float]]:
    """Dice per batch for each epoch (rows = epochs, as the prompt asks); ragged rows keep their length."""
    return _read_dice(Path(path))[0]


def read_results(root: Path) -> Results:
    """Read whatever expected files exist; missing ones are listed, corrupt ones raise ResultsError."""
    files = find_result_files(Path(root))
    missing = [name for name in EXPECTED_FILES if name not in files]
    problems: list[str] = [f"{name}: not written" for name in missing]
    curves: dict[str, list[float]] = {}
    for name in ("train_losses.xlsx", "val_losses.xlsx"):
        if name in files:
            curves[name], note = _read_loss(files[name])
            problems.append(f"{name}: {note}")
    tables: dict[str, list[list[float]]] = {}
    for name in ("validation_dice_scores.xlsx", "test_dice_scores.xlsx"):
        if name in files:
            tables[name], note = _read_dice(files[name])
            problems.append(f"{name}: {note}")
    for name, path in files.items():
        if path.name != name:
            problems.append(f"{name}: found as {path.name!r}")
    train, val = curves.get("train_losses.xlsx", []), curves.get("val_losses.xlsx", [])
    if train and val and len(train) != len(val):
        problems.append(f"train_losses.xlsx has {len(train)} epochs, val_losses.xlsx has {len(val)}")
    val_batches = tables.get("validation_dice_scores.xlsx", [])
    # Test Dice is one row (or one column) of batches; anything bigger is read row by row.
    test = [v for row in tables.get("test_dice_scores.xlsx", []) for v in row]
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
    )
