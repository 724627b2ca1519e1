"""Writing outputs: each table as CSV + XLSX + Markdown, each figure as a PNG, all listed for the report."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from llmseg_mlflow.analysis.cache import RunCache, digest_of


@dataclass(frozen=True)
class TableOut:
    """A written table."""

    name: str
    title: str
    section: str
    frame: pd.DataFrame
    note: str = ""


@dataclass(frozen=True)
class FigureOut:
    """A written figure."""

    name: str
    title: str
    section: str
    path: Path
    note: str = ""


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(frame: pd.DataFrame, title: str = "", note: str = "") -> str:
    """A GitHub Markdown table (floats to 4 decimals), with the title as a heading and the note below."""
    head = [f"## {title}", ""] if title else []
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(head + lines + ([""] + [note] if note else [])) + "\n"


@dataclass
class Outputs:
    """The output folder: tables/ and figures/, rendered files reused from the cache when inputs are unchanged."""

    folder: Path
    cache: RunCache
    tables: list[TableOut] = field(default_factory=list)
    figures: list[FigureOut] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, name: str, title: str, section: str, frame: pd.DataFrame, note: str = "",
              xlsx: bool = True) -> TableOut | None:
        """Write tables/{name}.csv, .xlsx and .md; an empty frame is skipped (and noted)."""
        if frame is None or frame.empty:
            self.notes.append(f"{title}: nothing to show in this study.")
            return None
        base = self.folder / "tables"
        base.mkdir(parents=True, exist_ok=True)
        frame.to_csv(base / f"{name}.csv", index=False)
        (base / f"{name}.md").write_text(to_markdown(frame, title, note))
        if xlsx:  # openpyxl is the slow part: reuse the workbook while the table is unchanged
            self.cache.rendered(digest_of("xlsx", name, frame), ".xlsx", base / f"{name}.xlsx",
                                lambda dst: _xlsx(frame, dst, title))
        out = TableOut(name, title, section, frame, note)
        self.tables.append(out)
        return out

    def data(self, name: str, frame: pd.DataFrame) -> Path:
        """A long data table (curves, per-image scores): CSV only, it is data rather than a table to read."""
        base = self.folder / "data"
        base.mkdir(parents=True, exist_ok=True)
        frame.to_csv(base / f"{name}.csv", index=False)
        return base / f"{name}.csv"

    def figure(self, name: str, title: str, section: str, inputs: tuple, draw: Callable[[Path], None],
               note: str = "") -> FigureOut:
        """figures/{name}.png drawn by `draw`, or reused when `inputs` are unchanged since the last analyze."""
        path = self.cache.rendered(digest_of("png", name, title, *inputs), ".png",
                                   self.folder / "figures" / f"{name}.png", draw)
        out = FigureOut(name, title, section, path, note)
        self.figures.append(out)
        return out


def _xlsx(frame: pd.DataFrame, dst: Path, title: str) -> None:
    sheet = "".join(ch for ch in title if ch not in "[]:*?/\\")[:31] or "table"
    clean = frame.copy()
    for col in clean.columns:  # Excel has no time zones; keep datetimes as written
        if pd.api.types.is_datetime64_any_dtype(clean[col]):
            clean[col] = clean[col].dt.tz_localize(None) if clean[col].dt.tz is not None else clean[col]
    clean.to_excel(dst, index=False, sheet_name=sheet)
