"""Which numbers of a results sheet are the curve: the loss line or the Dice table, chosen by labels and content.

LLMs write the prompt's Excel files in many layouts (epochs across columns or down rows, an index
column, a header of epoch numbers, labels beside the values). Runs inside the bounded child of
`results.py`, on a `workbook.Sheet` already read within caps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from llmseg_mlflow.pipeline.workbook import Sheet, column_letter


class LayoutError(ValueError):
    """The sheet holds numbers, but none that can be the curve asked for."""


@dataclass
class _Table:
    """The numeric block of a sheet, with the text labels that stood beside it."""

    num: list[list[float]]
    row_labels: list[str]
    col_labels: list[str]
    notes: list[str]
    row_ids: list[int] = field(default_factory=list)  # original row number of each line of num
    col_ids: list[int] = field(default_factory=list)  # original column index of each column of num


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
    if (
        len(rows) > 1
        and len(cols) > 1
        and not filled(rows[0], cols[0])
        and all(filled(rows[0], j) for j in cols[1:])
        and all(filled(i, cols[0]) for i in rows[1:])
    ):
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


def loss_from(sheet: Sheet, name: str) -> tuple[list[float], str, str]:
    """Loss per epoch, a note on the layout found, and where the values were read."""
    table = _table(sheet)
    notes = table.notes
    across = _epochs_across(table)
    lines, labels, ids = (
        (table.num, table.row_labels, table.row_ids)
        if across
        else (_transpose(table.num), table.col_labels, table.col_ids)
    )
    firsts = [line[0] for line in lines]
    if len(lines) > 1 and _is_counter(firsts, (0,)) or len(lines) == 1 and len(lines[0]) > 1 and firsts[0] == 0:
        lines = [line[1:] for line in lines]  # pandas index (or header) numbers; a loss is never exactly 0
        notes.append("numbered index removed")
    candidates = [k for k, line in enumerate(lines) if not _is_counter(line)]
    if not candidates:
        raise LayoutError(f"{name}: holds epoch numbers but no loss values")
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


def dice_from(sheet: Sheet) -> tuple[list[list[float]], str, str]:
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
    where = (
        f"{_span(kept, not epochs_in_rows)} (epochs) x {_span(batch_ids, epochs_in_rows)} (batches) of {sheet.where}"
    )
    return [row for row in rows if row], ", ".join(["epochs as rows, batches as columns", *notes]), where
