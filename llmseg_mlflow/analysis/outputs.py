"""Writing outputs: each table as CSV + XLSX + Markdown, each figure as a PNG, all listed for the report."""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from llmseg_mlflow.analysis.cache import RunCache, digest_of
from llmseg_mlflow.analysis.figures import STYLE


@dataclass(frozen=True)
class TableOut:
    """A written table."""

    name: str
    title: str
    section: str
    frame: pd.DataFrame
    note: str = ""
    digest: str = ""  # of name, title, note and frame: the key of its rendered .md, .xlsx and HTML


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
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.0f}"
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
    section_notes: dict[str, list[str]] = field(default_factory=dict)  # shown at the top of their section
    pool: ProcessPoolExecutor | None = None  # renders while the analysis goes on (see render_pool)
    published: Callable[[Path], None] | None = None  # told of each file once it is final (Publisher.add)
    _jobs: list = field(default_factory=list)  # (digest, suffix, path, future or render) not stored yet
    recorder: list | None = None  # while a section is recorded (analysis/memo.py): the calls to repeat

    def table(
        self, name: str, title: str, section: str, frame: pd.DataFrame, note: str = "", xlsx: bool = True
    ) -> TableOut | None:
        """Write tables/{name}.csv, .xlsx and .md; an empty frame is skipped (and noted)."""
        if frame is None or frame.empty:
            self.notes.append(f"{title}: nothing to show in this study.")
            return None
        if self.recorder is not None:
            self.recorder.append(("table", (name, title, section, frame, note, xlsx)))
        base = self.folder / "tables"
        base.mkdir(parents=True, exist_ok=True)
        digest = digest_of("table", name, title, note, frame)
        frame.to_csv(base / f"{name}.csv", index=False)
        md = base / f"{name}.md"
        if not self.cache.restore(digest, ".md", md):  # formatting every cell costs seconds at study scale
            md.write_text(to_markdown(frame, title, note))
            self.cache.store(digest, ".md", md)
        self._final(base / f"{name}.csv")
        self._final(md)
        if xlsx:  # openpyxl is the slow part: rendered aside, reused while the table is unchanged
            self._submit(digest, ".xlsx", base / f"{name}.xlsx", functools.partial(_xlsx, frame, title=title))
        out = TableOut(name, title, section, frame, note, digest)
        self.tables.append(out)
        return out

    def top_csv(self, filename: str, frame: pd.DataFrame) -> Path:
        """A CSV at the top of the output folder, for scripts that read one well-known file."""
        if self.recorder is not None:
            self.recorder.append(("top_csv", (filename, frame)))
        path = self.folder / filename
        frame.to_csv(path, index=False)
        self._final(path)
        return path

    def data(self, name: str, build: Callable[[], pd.DataFrame], key: str) -> Path:
        """data/{name}.csv of a long table (curves, per-image scores): CSV only, it is data rather than a table
        to read. Built and written only when `key` (what the table is made from) is new: at study scale
        the CSV costs more than anything else an unchanged study needs."""
        if self.recorder is not None:  # built from a callable: nothing to keep for a replay
            self.recorder.append(("unrecordable", (name,)))
        path = self.folder / "data" / f"{name}.csv"
        digest = digest_of("csv", name, key)
        if not self.cache.restore(digest, ".csv", path):
            path.parent.mkdir(parents=True, exist_ok=True)
            build().to_csv(path, index=False)
            self.cache.store(digest, ".csv", path)
        self._final(path)
        return path

    def figure(
        self, name: str, title: str, section: str, draw: Callable[..., None], *args: Any, note: str = "", **kwargs: Any
    ) -> FigureOut:
        """figures/{name}.png = draw(*args, path, **kwargs), rendered in finish(); reused while the args are unchanged."""
        path = self.folder / "figures" / f"{name}.png"
        digest = digest_of("png", name, getattr(draw, "__module__", ""), draw.__name__, STYLE, args, kwargs)
        if self.recorder is not None:
            self.recorder.append(("figure", (name, title, section, note, digest)))
        self._submit(digest, ".png", path, functools.partial(_call_with_path, draw, args, kwargs))
        out = FigureOut(name, title, section, path, note)
        self.figures.append(out)
        return out

    def reuse_figure(self, name: str, title: str, section: str, note: str, digest: str) -> FigureOut:
        """figures/{name}.png copied from an earlier rendering (the caller checked the cache has it)."""
        path = self.folder / "figures" / f"{name}.png"
        if not self.cache.restore(digest, ".png", path):
            raise FileNotFoundError(f"the rendered figure {name} ({digest}) left the analysis cache")
        self._final(path)
        out = FigureOut(name, title, section, path, note)
        self.figures.append(out)
        return out

    def _final(self, path: Path) -> None:
        if self.published is not None:
            self.published(path)

    def _submit(self, digest: str, suffix: str, dst: Path, render: Callable[[Path], None]) -> None:
        if self.cache.restore(digest, suffix, dst):
            self._final(dst)
            return
        job: Callable[[Path], None] | Future[None]
        if self.pool is None:
            job = render
        else:
            job = self.pool.submit(_render, (dst, render))

            def on_rendered(f: Future[None]) -> None:
                if not f.cancelled() and f.exception() is None:
                    self._final(dst)

            job.add_done_callback(on_rendered)
        self._jobs.append((digest, suffix, dst, job))

    def finish(self) -> None:
        """Wait for (or do) the rendering, and keep each new file in the cache for the next analyze."""
        jobs, self._jobs = self._jobs, []
        for digest, suffix, dst, job in jobs:
            if isinstance(job, Future):
                job.result()
            else:
                _render((dst, job))
                self._final(dst)
            self.cache.store(digest, suffix, dst)


def render_pool() -> ProcessPoolExecutor | None:
    """Worker processes for matplotlib and openpyxl (CPU-bound), forked now, before any thread is started,
    so they inherit the imports; one per core (this process mostly waits on the server), None on one core or
    where fork is unavailable. They run at a lower priority: on a machine that also hosts the tracking
    server, the server is what analyze waits for, and drawing can fill the gaps it leaves."""
    cpus = os.cpu_count() or 1
    if cpus < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    workers = min(4, cpus)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_background)
    pool.submit(int)  # forks every worker now, while this process has no other thread (fork start method)
    return pool


def _background() -> None:
    """A worker's start: lower priority, then a throwaway figure and workbook, so matplotlib's and openpyxl's
    first-use costs (fonts, imports) are paid while the roots are being listed rather than on the first figure."""
    import io

    os.nice(10)
    import matplotlib.pyplot as plt

    from llmseg_mlflow.analysis import figures  # noqa: F401 - the Agg backend and the report's imports

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0.5], label="warm-up")
    ax.set_title("warm-up")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    pd.DataFrame({"a": [1.0]}).to_excel(io.BytesIO(), index=False)


def _call_with_path(draw: Callable[..., None], args: tuple, kwargs: dict, path: Path) -> None:
    draw(*args, path, **kwargs)


def _render(job: tuple[Path, Callable[[Path], None]]) -> None:
    dst, render = job
    dst.parent.mkdir(parents=True, exist_ok=True)
    render(dst)


def _xlsx(frame: pd.DataFrame, dst: Path, title: str) -> None:
    """One table as an Excel sheet."""
    sheet = "".join(ch for ch in title if ch not in "[]:*?/\\")[:31] or "table"
    clean = frame.copy()
    for col in clean.columns:  # Excel has no time zones; keep datetimes as written
        if pd.api.types.is_datetime64_any_dtype(clean[col]):
            clean[col] = clean[col].dt.tz_localize(None) if clean[col].dt.tz is not None else clean[col]
    clean.to_excel(dst, index=False, sheet_name=sheet)
