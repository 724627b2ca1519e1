"""The tidy study: one row per pipeline root, plus long tables of per-epoch curves and per-image Dice."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.entities import Run

from llmseg_mlflow.analysis.cache import RunSeries
from llmseg_mlflow.tracking.schema import CURVES, HYPERPARAMETERS

IMAGE_DICE = "heldout_image_dice"
SERIES_KEYS = (*CURVES, IMAGE_DICE)

# Roles of a root: the study proper, the nnU-Net reference, forced-budget reruns (Fig. 4 only).
PIPELINE, BASELINE, BUDGET = "pipeline", "baseline", "budget"

ID_COLUMNS = ["run_id", "run_name", "role", "is_baseline", "model", "year", "reasoning", "dataset", "repeat", "provider", "status",
              "run_status", "budget", "source_run", "evaluation_run_id", "experiment_id"]


@dataclass
class StudyData:
    """Everything the outputs are computed from."""

    pipelines: pd.DataFrame  # one row per root (every role), the tidy table
    curves: pd.DataFrame  # run_id, metric, epoch, value
    images: pd.DataFrame  # run_id, index, dice (latest value per held-out index)
    superseded: pd.DataFrame  # roots a sweep retried (ignored), listed for the record

    def study(self) -> pd.DataFrame:
        """The pipelines proper: no baseline, no budget reruns."""
        return self.pipelines[self.pipelines.role == PIPELINE]

    def of_role(self, role: str) -> pd.DataFrame:
        """Roots of one role."""
        return self.pipelines[self.pipelines.role == role]


def latest_per_step(steps: np.ndarray, values: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One value per step, the one logged last (a re-evaluation overwrites the earlier scores)."""
    order = np.lexsort((np.arange(len(steps)), timestamps, steps))
    steps, values = steps[order], values[order]
    last = np.r_[steps[1:] != steps[:-1], True] if len(steps) else np.array([], dtype=bool)
    return steps[last], values[last]


def _role(tags: dict[str, str]) -> str:
    if tags.get("budget"):
        return BUDGET
    if tags.get("baseline", "").lower() == "true":
        return BASELINE
    return PIPELINE


def _number(value: str | None) -> float | str | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def build_study(roots: list[Run], series: dict[str, RunSeries],
                overrides: dict[str, dict[str, str]] | None = None) -> StudyData:
    """The tidy tables from the root runs (tags, params, latest metrics) and their fetched series."""
    rows, superseded = [], []
    for run in roots:
        tags, info = run.data.tags, run.info
        row = {
            "run_id": info.run_id, "run_name": info.run_name, "role": _role(tags),
            "is_baseline": tags.get("baseline", "").lower() == "true",
            **{k: tags.get(k, "") for k in ("model", "year", "reasoning", "dataset", "provider", "status")},
            "repeat": int(float(tags["repeat"])) if tags.get("repeat", "").strip() else 0,
            "run_status": info.status, "budget": _number(tags.get("budget")), "source_run": tags.get("source_run", ""),
            "evaluation_run_id": tags.get("evaluation_run_id", ""), "experiment_id": info.experiment_id,
            "start_time": pd.to_datetime(info.start_time, unit="ms") if info.start_time else pd.NaT,
        }
        row.update((overrides or {}).get(row["model"], {}))
        if not row["status"]:
            row["status"] = "running" if info.status == "RUNNING" else "harness_error" if info.status == "FAILED" else ""
        for key in HYPERPARAMETERS:
            row[f"param.{key}"] = _number(run.data.params.get(key))
        row.update({k: v for k, v in run.data.metrics.items() if k not in SERIES_KEYS})
        (superseded if tags.get("superseded_by") else rows).append(row)
    pipelines = pd.DataFrame(rows)
    if pipelines.empty:
        pipelines = pd.DataFrame(columns=ID_COLUMNS)
    for col in ("errors_total", "debug_iterations", "heldout_dice_mean", "train_time_s", "epochs_trained", "cost_usd"):
        if col not in pipelines:
            pipelines[col] = np.nan
    pipelines = pipelines.sort_values(["role", "dataset", "model", "repeat"], kind="stable").reset_index(drop=True)
    error_cols = sorted(c for c in pipelines.columns if c.startswith("errors."))
    pipelines[error_cols] = pipelines[error_cols].fillna(0)
    front = ID_COLUMNS + ["start_time"]
    pipelines = pipelines[front + [c for c in pipelines.columns if c not in front]]

    curve_parts, image_parts = [], []
    for run_id in pipelines.run_id:
        got = series.get(run_id)
        if got is None:
            continue
        for key, (steps, values) in got.series.items():
            if key == IMAGE_DICE:
                image_parts.append(pd.DataFrame({"run_id": run_id, "index": steps.astype(int), "dice": values}))
            else:
                curve_parts.append(pd.DataFrame({"run_id": run_id, "metric": key, "epoch": steps.astype(int),
                                                 "value": values}))
    curves = pd.concat(curve_parts, ignore_index=True) if curve_parts else pd.DataFrame(
        columns=["run_id", "metric", "epoch", "value"])
    images = pd.concat(image_parts, ignore_index=True) if image_parts else pd.DataFrame(
        columns=["run_id", "index", "dice"])
    # A pipeline that logged per-image scores but no summary (or the reverse) still gets its mean.
    if not images.empty:
        means = images.groupby("run_id").dice.mean()
        missing = pipelines.heldout_dice_mean.isna() & pipelines.run_id.isin(means.index)
        pipelines.loc[missing, "heldout_dice_mean"] = pipelines.loc[missing, "run_id"].map(means)
    return StudyData(pipelines, curves, images, pd.DataFrame(superseded))
