"""One self-contained `index.html`: every table and figure, images inline as base64, opens offline."""

from __future__ import annotations

import base64
import html
import math
from functools import partial
from pathlib import Path

import pandas as pd

from llmseg_mlflow.analysis.outputs import FigureOut, Outputs, TableOut

SECTIONS = (
    ("overview", "Overview"),
    ("errors", "Errors and fix rounds (Fig. 2)"),
    ("curves", "Validation loss per epoch (Figs. 3, 8a/b, 11, 12)"),
    ("dice", "Held-out Dice (Figs. 5, 13)"),
    ("ranking", "Ranking stability over bootstrap resamples of the held-out images"),
    ("paired", "Paired comparison with nnU-Net on the same images"),
    ("qualitative", "Qualitative comparison (Figs. 6, 7)"),
    ("architecture", "Architecture and hyperparameters (Tables 1, 2)"),
    ("cohorts", "Cohort tests (Table 3)"),
    ("variability", "Run-to-run variability (Tables 4, 5; Figs. 9, 10)"),
    ("budget", "Constant budget (Fig. 4)"),
    ("beyond", "Beyond the paper: compliance, cost, tokens"),
    ("cost", "Cost and time as results: Dice per dollar and minute, Pareto, pass@k"),
    ("study_model", "A model of the whole study: year and reasoning across datasets"),
    ("refine", "Refinement rounds: the pipeline's own results fed back (llmseg refine)"),
    ("data", "Data"),
    ("rules", "Rules"),
)
MAX_HTML_ROWS = 2000  # longer tables are shown in part (the CSV/XLSX hold all rows)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 1.2em;
color:#222}
h1{margin-top:.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}h3{margin-bottom:.3em}
nav a{margin-right:1em}table{border-collapse:collapse;font-size:12px;margin:.4em 0 1em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto;max-height:600px;overflow-y:auto}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:13px}.files{font-size:12px;color:#666}
tr.sig td{font-weight:bold}
"""


def _cell(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return html.escape(str(v))


def _table_html(t: TableOut) -> str:
    frame = t.frame
    shown = frame.head(MAX_HTML_ROWS)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    sig = "significant" in shown.columns
    body = []
    for row in shown.itertuples(index=False):
        cls = ' class="sig"' if sig and bool(row.significant) else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
    more = (
        f'<p class="note">First {MAX_HTML_ROWS} of {len(frame)} rows; all rows in the CSV/XLSX.</p>'
        if len(frame) > MAX_HTML_ROWS
        else ""
    )
    files = " ".join(f"tables/{t.name}.{ext}" for ext in ("csv", "xlsx", "md"))
    note = f'<p class="note">{html.escape(t.note)}</p>' if t.note else ""
    return (
        f'<div class="output table-output" id="table-{t.name}" data-name="{t.name}" data-rows="{len(shown)}">'
        f'<h3>{html.escape(t.title)}</h3>{note}<div class="scroll"><table class="llmseg-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{more}"
        f'<p class="files">{files}</p></div>'
    )


def _figure_html(f: FigureOut) -> str:
    data = base64.b64encode(f.path.read_bytes()).decode()
    note = f'<p class="note">{html.escape(f.note)}</p>' if f.note else ""
    return (
        f'<div class="output figure-output" id="figure-{f.name}" data-name="{f.name}">'
        f"<h3>{html.escape(f.title)}</h3>{note}"
        f'<img class="llmseg-figure" alt="{html.escape(f.title)}" data-name="{f.name}" '
        f'src="data:image/png;base64,{data}"><p class="files">figures/{f.name}.png</p></div>'
    )


def write_report(out: Outputs, title: str, intro: list[str], rules: list[str], path: Path) -> Path:
    """index.html with a section per part of the study, in the order of SECTIONS."""
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    parts.append(
        "<nav>"
        + "".join(f'<a href="#{key}">{html.escape(name.split(" (")[0])}</a>' for key, name in SECTIONS)
        + "</nav>"
    )
    for key, name in SECTIONS:
        tables = [t for t in out.tables if t.section == key]
        figures = [f for f in out.figures if f.section == key]
        parts.append(f'<section id="{key}"><h2>{html.escape(name)}</h2>')
        if key == "overview":
            parts += [f"<p>{html.escape(line)}</p>" for line in intro]
        if key == "rules":
            parts.append("<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in rules) + "</ul>")
            if out.notes:
                parts.append(
                    "<h3>Notes from this analysis</h3><ul>"
                    + "".join(f"<li>{html.escape(n)}</li>" for n in out.notes)
                    + "</ul>"
                )
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in out.section_notes.get(key, [])]
        parts += [_figure_html(f) for f in figures]
        parts += [
            out.cache.text(t.digest, ".html", partial(_table_html, t)) if t.digest else _table_html(t) for t in tables
        ]
        if not tables and not figures and not out.section_notes.get(key) and key not in ("overview", "rules"):
            parts.append('<p class="note">Nothing in this study for this part.</p>')
        parts.append("</section>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def frame_summary(frame: pd.DataFrame) -> str:
    """`N rows x M columns`."""
    return f"{len(frame)} rows x {len(frame.columns)} columns"
