"""Error counts a source recorded (the paper's text and Fig. 2), next to the platform's for the same models.

Imported chats (`llmseg import-chat`) replay the authors' conversations; whether the platform meets the same
number of errors is a check of the replay, and where it does not, `replay_divergences` says how often the
person had pasted another error than the one the harness sent.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.errors import UsageError

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

REQUIRED = ("model", "errors")
_RANGE = re.compile(r"(?P<low>\d+)(?:\s*-\s*(?P<high>\d+))?")  # "15", or "1-3" where a source gives a range
EXAMPLE = "model,errors,source\ngemini-1.5-pro,15,paper text\nclaude-4-sonnet,0,paper Fig. 2"
COLUMNS = [
    "model",
    "recorded_errors",
    "recorded_low",
    "recorded_high",
    "source",
    "pipelines",
    "platform_errors_mean",
    "platform_errors_min",
    "platform_errors_max",
    "difference",
    "replay_divergences",
    "note",
]


def load_recorded(path: Path) -> pd.DataFrame:
    """The CSV of recorded error counts (model, errors[, source]); UsageError naming the line and the fix."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows, header = list(reader), [h.strip() for h in reader.fieldnames or []]
    except OSError as exc:
        raise UsageError(f"cannot read the recorded error counts {path}: {exc}") from exc
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UsageError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'nothing'}); "
            f"the file needs a header line, e.g.\n{EXAMPLE}"
        )
    records, problems = [], []
    for line, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        model, count = row["model"], row["errors"]
        bounds = _RANGE.fullmatch(count)
        if not model:
            problems.append(f"line {line}: the model is empty")
        elif bounds is None or int(bounds["low"]) > int(bounds["high"] or bounds["low"]):
            problems.append(
                f"line {line} ({model}): errors must be a whole number >= 0 or a range such as 1-3, got {count!r}"
            )
        else:
            low, high = int(bounds["low"]), int(bounds["high"] or bounds["low"])
            records.append(
                {"model": model, "recorded_errors": count, "low": low, "high": high, "source": row.get("source", "")}
            )
    dupes = sorted({r["model"] for r in records if sum(o["model"] == r["model"] for o in records) > 1})
    problems += [f"model {m} is listed more than once" for m in dupes]
    if problems:
        raise UsageError(f"{path}: " + "; ".join(problems))
    if not records:
        raise UsageError(f"{path}: no rows under the header; add one line per model, e.g.\n{EXAMPLE}")
    return pd.DataFrame(records)


def compare_recorded(recorded: pd.DataFrame, study: pd.DataFrame) -> pd.DataFrame:
    """One row per recorded model: the recorded count beside the platform's errors per pipeline."""
    rows = []
    for rec in recorded.itertuples(index=False):
        mine = study[study.model == rec.model]
        row = {
            "model": rec.model,
            "recorded_errors": rec.recorded_errors,
            "recorded_low": rec.low,
            "recorded_high": rec.high,
            "source": rec.source,
        }
        if mine.empty:
            rows.append({**row, "pipelines": 0, "note": "no pipeline of this model in the study"})
            continue
        errors = mine.errors_total.fillna(0)
        compared = mine["replay_compared"].sum() if "replay_compared" in mine else 0
        rows.append(
            {
                **row,
                "pipelines": len(mine),
                "platform_errors_mean": errors.mean(),
                "platform_errors_min": errors.min(),
                "platform_errors_max": errors.max(),
                # 0 inside a recorded range; else the distance to its nearer end, signed like platform - recorded
                "difference": errors.mean() - min(max(errors.mean(), rec.low), rec.high),
                "replay_divergences": mine["replay_divergences"].sum() if compared else None,
                "note": "" if compared else "not a replayed chat: no recorded user turns to compare",
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def section_recorded(c: Context) -> None:
    """The recorded-versus-platform error table and its figure, when `--recorded-errors` gives a CSV."""
    if c.cfg.recorded_errors is None:
        return
    table = compare_recorded(load_recorded(Path(c.cfg.recorded_errors)), c.study)
    c.out.table(
        "recorded_errors",
        "Errors until the code ran: recorded (your CSV) vs this platform",
        "errors",
        table,
        "difference = platform_errors_mean - recorded_errors (0 inside a recorded range such as 1-3, else the distance to its nearer end). replay_divergences: fix replies whose recorded user "
        "turn held another error than the harness sent (tag replay_divergence on the debug runs).",
    )
    shown = table[table.pipelines > 0]
    if not shown.empty:
        c.out.figure(
            "recorded_errors",
            "Errors until the code ran: recorded vs platform (mean per pipeline)",
            "errors",
            fg.bars_figure,
            shown,
            "model",
            ["recorded_low", "recorded_high", "platform_errors_mean"],
            "errors until the code ran",
            ylabel="errors",
        )
