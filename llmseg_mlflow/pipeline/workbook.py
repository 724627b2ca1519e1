"""Read the cells of an untrusted workbook's bytes (.xlsx, or CSV text saved under an Excel name), with caps.

The bytes come from untrusted generated code, so every step is bounded: the zip's declared uncompressed sizes
are checked first (MAX_UNCOMPRESSED_BYTES; zipfile never inflates a member past its declared size), cells are
read sparsely straight from openpyxl's worksheet parser (work grows with the cells present, not with their
coordinates: one cell at XFD1 costs one cell), at most MAX_ROWS rows x MAX_COLS columns and MAX_CELLS filled
cells, each text cut to MAX_TEXT characters before any regex, and every regex is linear (no nested or
overlapping quantifiers). Memory and time are capped around this module, not in it: it runs in a child of
`bounded`'s reader server (`preload` prepares that server).
"""

from __future__ import annotations

import csv
import io
import math
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

NAN = float("nan")

# --- limits -------------------------------------------------------------------------------------------
MAX_UNCOMPRESSED_BYTES = 50 * 1024**2  # the zip members' declared sizes, summed
MAX_ZIP_MEMBERS = 1000
MAX_SHEETS = 16  # sheets looked at for the first one holding numbers
MAX_ROWS = 10_000  # rows scanned per sheet (epochs down rows)
# Columns: the prompt puts epochs across columns and batches across columns, so 64 would cut real curves;
# cells are read sparsely, so a far column costs nothing. This is Excel's own width (XFD).
MAX_COLS = 16_384
MAX_CELLS = 1_000_000  # filled cells kept per sheet, and cells of the block they span once strays are dropped
MAX_TEXT = 64  # characters of a cell's text looked at
_MAX_NUMBER_CHARS = 40  # a float's repr is at most 24; a longer digit string is not read as a number

# Linear: each quantifier is followed by a character it cannot match, so nothing backtracks.
_WRAPPER = re.compile(r"(?:tensor|array|np\.float\d{0,3}|float\d{0,3})?\(?\[?\s{0,8}")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# A stray cell far from the table is dropped when its group of lines holds at most this many cells.
_STRAY_CELLS = 2


class WorkbookError(Exception):
    """The bytes cannot be read as a workbook within the caps; the message names the file and says why."""


@dataclass
class Sheet:
    """The filled cells of one sheet as a dense block, with their original row numbers and column indices."""

    grid: list[list[tuple[float, str]]]
    row_ids: list[int]
    col_ids: list[int]
    where: str  # "sheet 'Sheet1'" or "the CSV text"
    notes: list[str]


def preload() -> None:
    """Import openpyxl once in the bounded reader server, before it forks its children (see `bounded.run`)."""
    import warnings

    warnings.simplefilter("ignore")  # openpyxl warns about styles of odd workbooks
    # openpyxl imports numpy only if it can; reading cells does not need it. None blocks the import (documented).
    sys.modules["numpy"] = None  # type: ignore[assignment]
    import openpyxl  # noqa: F401 - imported once here, shared by every forked child
    import openpyxl.worksheet._reader  # noqa: F401


# --- cells ----------------------------------------------------------------------------------------


def _number(text: str) -> float | None:
    """The number in a cell's text ('0.41', '[0.41]', "tensor(0.41, device='cuda:0')"), or None; linear time."""
    wrapper = _WRAPPER.match(text)
    assert wrapper is not None  # everything in it is optional: it always matches
    start = wrapper.end()
    m = _NUMBER.match(text, start)
    if m is None or m.end() - start > _MAX_NUMBER_CHARS:
        return None
    rest = text[m.end() :].lstrip()
    if rest.startswith("]"):
        rest = rest[1:]
    if rest not in ("", ")"):
        rest = rest.lstrip()
        # ", device='cuda:0', grad_fn=<MeanBackward0>)": anything after a comma, up to one closing parenthesis
        if not rest.startswith(",") or ")" in rest[1:-1]:
            return None
    try:
        return float(m.group())
    except (OverflowError, ValueError):
        return None


def _cell(value: object) -> tuple[float, str]:
    """(number or NaN, text or '') for one spreadsheet cell; text is cut to MAX_TEXT before it is parsed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NAN, ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value), ""
        except OverflowError:  # an int of hundreds of digits
            return NAN, "(huge integer)"
    text = (value if isinstance(value, str) else str(value))[:MAX_TEXT].strip()
    number = _number(text)  # also "tensor(0.41, device='cuda:0')", written by code that forgot .item()
    if number is not None:
        return number, ""
    return NAN, "" if text.lower() in ("nan", "none") else text


def column_letter(index: int) -> str:
    """Excel's letters for a 1-based column index: 1 -> 'A', 28 -> 'AB', 16384 -> 'XFD'."""
    letters = ""
    while index > 0:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


# --- reading a workbook (in the bounded child) ------------------------------------------------------


def _unreadable(name: str, reason: str) -> WorkbookError:
    return WorkbookError(
        f"{name}: not a readable Excel workbook ({reason}); the pipeline must write it with "
        "pandas DataFrame.to_excel or openpyxl"
    )


def _check_zip(data: bytes, name: str) -> None:
    """Refuse a workbook whose zip members declare more than MAX_UNCOMPRESSED_BYTES in all."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise WorkbookError(
                f"{name}: the workbook's zip has {len(infos)} members, over the "
                f"{MAX_ZIP_MEMBERS} a results workbook may have"
            )
        total = sum(info.file_size for info in infos)
        if total > MAX_UNCOMPRESSED_BYTES:
            raise WorkbookError(
                f"{name}: the workbook unpacks to {total / 1024**2:.0f} MB, over the "
                f"{MAX_UNCOMPRESSED_BYTES // 1024**2} MB a results workbook may have (a zip bomb or not a results file)"
            )


def _add(cells: dict[tuple[int, int], tuple[float, str]], row: int, col: int, value: object, name: str) -> None:
    if value is None or row < 1 or col < 1 or row > MAX_ROWS or col > MAX_COLS:
        return
    cell = _cell(value)
    if math.isnan(cell[0]) and not cell[1]:
        return
    cells[(row, col)] = cell
    if len(cells) > MAX_CELLS:
        raise WorkbookError(
            f"{name}: a sheet holds more than {MAX_CELLS:,} filled cells in its first "
            f"{MAX_ROWS:,} rows; a results workbook has a few thousand"
        )


def _xlsx_sheets(data: bytes, name: str):
    """(title, sparse cells) of each worksheet, read straight from openpyxl's parser, bounded."""
    import openpyxl  # only in the child
    from openpyxl.worksheet._reader import WorkSheetParser

    _check_zip(data, name)
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    try:
        for ws in wb.worksheets[:MAX_SHEETS]:
            cells: dict[tuple[int, int], tuple[float, str]] = {}
            # ws.iter_rows would pad every row to its last column (or the sheet's declared dimension):
            # the parser gives the cells present only, so XFD1 costs one cell.
            with ws._get_source() as src:
                parser = WorkSheetParser(
                    src,
                    ws._shared_strings,
                    data_only=True,
                    epoch=wb.epoch,
                    date_formats=wb._date_formats,
                    timedelta_formats=wb._timedelta_formats,
                )
                for row_index, row in parser.parse():
                    if row_index > MAX_ROWS:
                        break
                    for cell in row:
                        _add(cells, cell["row"], cell["column"], cell["value"], name)
            yield str(ws.title)[:31], cells
    finally:
        wb.close()


def _csv_cells(text: str, name: str) -> dict[tuple[int, int], tuple[float, str]]:
    """Sparse cells of CSV-like text (comma, semicolon, tab or whitespace separated)."""
    lines = text.splitlines()[:MAX_ROWS]
    sample = [line for line in lines[:100] if line.strip()]
    delimiter = max(",;\t|", key=lambda d: sum(d in line for line in sample))
    cells: dict[tuple[int, int], tuple[float, str]] = {}
    rows: Iterable[list[str]]
    if any(delimiter in line for line in sample):
        rows = csv.reader(lines, delimiter=delimiter)
    else:
        rows = (line.split() for line in lines)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row[:MAX_COLS], start=1):
            _add(cells, r, c, value[:MAX_TEXT], name)
    return cells


def _drop_strays(cells: dict[tuple[int, int], tuple[float, str]], notes: list[str]) -> None:
    """Drop groups of lines that hold at most _STRAY_CELLS cells, one of them a number, set apart from a bigger
    group by empty lines (a stray value at XFD1 beside the real table), so they are not read as part of it.
    Stray text stays: it may be a label."""
    dropped: list[tuple[int, int]] = []
    for axis in (1, 0):  # columns, then rows
        counts: dict[int, int] = {}
        numbers: dict[int, int] = {}
        for key, (number, _) in cells.items():
            counts[key[axis]] = counts.get(key[axis], 0) + 1
            if not math.isnan(number):
                numbers[key[axis]] = numbers.get(key[axis], 0) + 1
        runs: list[list[int]] = []
        for index in sorted(counts):
            if runs and index == runs[-1][-1] + 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        if len(runs) < 2:
            continue
        sizes = [sum(counts[i] for i in run) for run in runs]
        biggest = max(sizes)
        stray = {
            i
            for run, size in zip(runs, sizes)
            if size <= _STRAY_CELLS and size < biggest and any(i in numbers for i in run)
            for i in run
        }
        for key in [k for k in cells if k[axis] in stray]:
            dropped.append(key)
            del cells[key]
    if dropped:
        shown = ", ".join(f"{column_letter(c)}{r}" for r, c in sorted(dropped)[:3])
        notes.append(f"{len(dropped)} stray cell(s) apart from the table ignored ({shown})")


def _densify(cells: dict[tuple[int, int], tuple[float, str]], where: str, notes: list[str], name: str) -> Sheet:
    _drop_strays(cells, notes)
    row_ids = sorted({r for r, _ in cells})
    col_ids = sorted({c for _, c in cells})
    if len(row_ids) * len(col_ids) > MAX_CELLS:
        raise WorkbookError(
            f"{name}: the values are spread over {len(row_ids):,} rows x {len(col_ids):,} "
            f"columns, over the {MAX_CELLS:,} cells a results table may span"
        )
    row_at = {r: i for i, r in enumerate(row_ids)}
    col_at = {c: j for j, c in enumerate(col_ids)}
    grid = [[(NAN, "")] * len(col_ids) for _ in row_ids]
    for (r, c), cell in cells.items():
        grid[row_at[r]][col_at[c]] = cell
    return Sheet(grid, row_ids, col_ids, where, notes)


def read_sheet(data: bytes, name: str) -> Sheet:
    """The first sheet with numbers of a workbook (or CSV text with an Excel name); WorkbookError if unreadable."""
    notes: list[str] = []
    if data.startswith(b"PK"):
        try:
            for title, cells in _xlsx_sheets(data, name):
                if any(not math.isnan(n) for n, _ in cells.values()):
                    return _densify(cells, f"sheet {title!r}", notes, name)
        except (WorkbookError, MemoryError):
            raise
        except Exception as exc:  # openpyxl and zipfile raise many types for broken files; all mean the same
            raise _unreadable(name, f"{type(exc).__name__}: {str(exc)[:300]}") from None
        raise WorkbookError(f"{name}: the workbook holds no numbers (empty sheet or only text)")
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise _unreadable(name, "an old binary .xls workbook, which is not read here")
    try:
        text = data.decode("utf-8-sig")
        if "\x00" in text:
            raise ValueError("NUL bytes")
    except ValueError:
        raise _unreadable(name, "its bytes are neither .xlsx nor .xls") from None
    try:
        cells = _csv_cells(text, name)
    except csv.Error as exc:
        raise _unreadable(name, f"text that is not CSV either ({str(exc)[:200]})") from None
    if not any(not math.isnan(n) for n, _ in cells.values()):
        raise _unreadable(name, "its bytes are neither .xlsx nor .xls")
    notes.append("CSV text with an Excel name")
    return _densify(cells, "the CSV text", notes, name)
