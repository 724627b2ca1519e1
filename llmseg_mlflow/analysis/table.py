"""The tidy study: one row per pipeline root, plus long tables of per-epoch curves and per-image Dice."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmseg_mlflow.analysis.cache import RunSeries
from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.tracking.schema import CURVES, HYPERPARAMETERS

IMAGE_DICE = "heldout_image_dice"
SERIES_KEYS = (*CURVES, IMAGE_DICE)

# Roles of a root: the study proper, the nnU-Net reference, forced-budget reruns (Fig. 4 only), seeded
# retrainings of the same code (the variance between trainings only).
PIPELINE, BASELINE, BUDGET, SEED = "pipeline", "baseline", "budget", "seed"

ID_COLUMNS = [
    "run_id",
    "run_name",
    "role",
    "is_baseline",
    "model",
    "year",
    "reasoning",
    "dataset",
    "repeat",
    "provider",
    "status",
    "run_status",
    "budget",
    "seed",
    "source_run",
    "evaluation_run_id",
    "evaluation_error",
    "experiment_id",
    "artifact_uri",
]


@dataclass
class StudyData:
    """Everything the outputs are computed from."""

    pipelines: pd.DataFrame  # one row per root (every role), the tidy table
    superseded: pd.DataFrame  # roots a sweep retried (ignored), listed for the record
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)  # run -> key -> (x, y)
    versions: dict[str, str] = field(default_factory=dict)  # run -> fingerprint of what its series came from
    _study: pd.DataFrame | None = field(default=None, init=False, repr=False)

    def series_digest(self) -> str:
        """A key that changes whenever any run's series may have (for outputs built from the series alone)."""
        return hashlib.sha1(repr(sorted(self.versions.items())).encode()).hexdigest()

    @property
    def curves(self) -> pd.DataFrame:
        """Long table of the per-epoch curves: run_id, metric, epoch, value."""
        parts = [(r, k, x, y) for r, s in self.series.items() for k, (x, y) in s.items() if k != IMAGE_DICE]
        return pd.DataFrame(
            {
                "run_id": _cat([np.full(len(x), r, dtype=object) for r, _, x, _ in parts], object),
                "metric": _cat([np.full(len(x), k, dtype=object) for _, k, x, _ in parts], object),
                "epoch": _cat([np.asarray(x, dtype=int) for *_, x, _ in parts], int),
                "value": _cat([np.asarray(y, dtype=float) for *_, y in parts], float),
            }
        )

    @property
    def images(self) -> pd.DataFrame:
        """Long table of per-image held-out Dice: run_id, index, dice."""
        parts = [(r, *s[IMAGE_DICE]) for r, s in self.series.items() if IMAGE_DICE in s]
        return pd.DataFrame(
            {
                "run_id": _cat([np.full(len(x), r, dtype=object) for r, x, _ in parts], object),
                "index": _cat([np.asarray(x, dtype=int) for _, x, _ in parts], int),
                "dice": _cat([np.asarray(y, dtype=float) for *_, y in parts], float),
            }
        )

    @property
    def dice_by_run(self) -> dict[str, np.ndarray]:
        """Per-image held-out Dice of each run (for pooling without scanning the long table)."""
        return {r: s[IMAGE_DICE][1] for r, s in self.series.items() if IMAGE_DICE in s}

    def dice(self, run_ids) -> np.ndarray:
        """Every per-image Dice of the given runs, pooled."""
        parts = [self.series[r][IMAGE_DICE][1] for r in run_ids if IMAGE_DICE in self.series.get(r, {})]
        return np.concatenate(parts) if parts else np.array([], dtype=float)

    def dice_table(self, run_ids) -> pd.DataFrame:
        """run_id, index, dice of the given runs (a few runs: for the qualitative grid)."""
        parts = [
            pd.DataFrame(
                {"run_id": r, "index": self.series[r][IMAGE_DICE][0].astype(int), "dice": self.series[r][IMAGE_DICE][1]}
            )
            for r in run_ids
            if IMAGE_DICE in self.series.get(r, {})
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run_id", "index", "dice"])

    def curve(self, run_id: str, metric: str = "val_loss") -> tuple[np.ndarray, np.ndarray] | None:
        """One run's curve (epochs, values), or None."""
        got = self.series.get(run_id, {}).get(metric)
        return got if got is not None and len(got[0]) else None

    def mean_curve(
        self, run_ids, metric: str = "val_loss", max_epoch: int | None = None, min_share: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray] | None:
        """Mean and SD (ddof=1; 0 where one run) over runs at each epoch, how many runs had a curve, and how
        many had a value at each epoch; epochs where fewer than min_share of the runs have one are left out
        (a mean over the few long runs would jump where the others stop)."""
        curves = [c for c in (self.curve(r, metric) for r in run_ids) if c is not None]
        if not curves:
            return None
        x = np.concatenate([c[0] for c in curves]).astype(int)
        y = np.concatenate([c[1] for c in curves]).astype(float)
        if max_epoch is not None:
            keep = x <= max_epoch
            x, y = x[keep], y[keep]
        if not len(x):
            return None
        base = int(x.min())
        x = x - base
        n = np.bincount(x)
        s1, s2 = np.bincount(x, y), np.bincount(x, y * y)
        have = (n > 0) & (n >= min_share * len(curves))
        mean = s1[have] / n[have]
        var = np.where(n[have] > 1, (s2[have] - n[have] * mean**2) / np.maximum(n[have] - 1, 1), 0.0)
        return np.nonzero(have)[0] + base, mean, np.sqrt(np.maximum(var, 0)), len(curves), n[have]

    def study(self) -> pd.DataFrame:
        """The pipelines proper: no baseline, no budget reruns, no seeded retrainings."""
        # Asked for by every section (~70 times an analyze): filtered once; a shallow copy each time, so a
        # section that adds a column adds it to its own frame (pandas copies on write).
        if self._study is None:
            self._study = self.pipelines[self.pipelines.role == PIPELINE]
        return self._study.copy(deep=False)

    def of_role(self, role: str) -> pd.DataFrame:
        """Roots of one role."""
        return self.pipelines[self.pipelines.role == role]


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.array([], dtype=dtype)


def _role(tags: dict[str, str]) -> str:
    if tags.get("seed"):
        return SEED
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


def summaries_need_series(roots: list[Root]) -> bool:
    """Whether some root's held-out Dice summary will come from its per-image series (it logged no mean)."""
    return any(IMAGE_DICE in r.metrics and not np.isfinite(r.metrics.get("heldout_dice_mean", np.nan)) for r in roots)


def build_study(
    roots: list[Root], series: dict[str, RunSeries], overrides: dict[str, dict[str, str]] | None = None
) -> StudyData:
    """The tidy tables from the root runs (tags, params, latest metrics) and their fetched series."""
    rows: list[dict[str, object]] = []
    superseded: list[dict[str, object]] = []
    for run in roots:
        tags = run.tags
        row = {
            "run_id": run.run_id,
            "run_name": run.run_name,
            "role": _role(tags),
            "is_baseline": tags.get("baseline", "").lower() == "true",
            **{k: tags.get(k, "") for k in ("model", "year", "reasoning", "dataset", "provider", "status")},
            "repeat": int(float(tags["repeat"])) if tags.get("repeat", "").strip() else 0,
            "run_status": run.status,
            "budget": _number(tags.get("budget")),
            "seed": _number(tags.get("seed")),
            "source_run": tags.get("source_run", ""),
            "evaluation_run_id": tags.get("evaluation_run_id", ""),
            "evaluation_error": tags.get("evaluation_error", ""),
            "experiment_id": run.experiment_id,
            "artifact_uri": run.artifact_uri,
            "start_time": pd.to_datetime(run.start_time, unit="ms") if run.start_time else pd.NaT,
        }
        row.update((overrides or {}).get(row["model"], {}))
        if not row["status"]:
            row["status"] = "running" if run.status == "RUNNING" else "harness_error" if run.status == "FAILED" else ""
        for key in HYPERPARAMETERS:
            row[f"param.{key}"] = _number(run.params.get(key))
        row.update({k: v for k, v in run.metrics.items() if k not in SERIES_KEYS})
        (superseded if tags.get("superseded_by") else rows).append(row)
    pipelines = pd.DataFrame(rows)
    if pipelines.empty:
        pipelines = pd.DataFrame(columns=[*ID_COLUMNS, "start_time"])
    for col in ("errors_total", "debug_iterations", "heldout_dice_mean", "train_time_s", "epochs_trained", "cost_usd"):
        if col not in pipelines:
            pipelines[col] = np.nan
    pipelines = pipelines.sort_values(
        ["role", "dataset", "model", "repeat", "start_time", "run_id"], kind="stable"
    ).reset_index(drop=True)
    error_cols = sorted(c for c in pipelines.columns if c.startswith("errors."))
    pipelines[error_cols] = pipelines[error_cols].fillna(0)
    front = ID_COLUMNS + ["start_time"]
    # Metric columns in name order, not in the order runs happened to list them: a study reads the same
    # from every store (PostgreSQL and sqlite list runs with equal start times differently).
    metric_cols = sorted({k for run in roots for k in run.metrics if k not in SERIES_KEYS} - set(front))
    fixed = [c for c in pipelines.columns if c not in front and c not in metric_cols]
    pipelines = pipelines[front + fixed + [c for c in metric_cols if c in pipelines.columns]]
    # Plain Python strings, not pandas' Arrow-backed default: the sections group, index and iterate these
    # columns thousands of times, and each Arrow access costs a conversion (a third of a warm analyze).
    text = [c for c in pipelines.columns if isinstance(pipelines[c].dtype, pd.StringDtype)]
    pipelines = pipelines.astype(dict.fromkeys(text, object))

    kept = set(pipelines.run_id)
    data = StudyData(
        pipelines,
        pd.DataFrame(superseded),
        {r: s.series for r, s in series.items() if r in kept},
        {r: s.fingerprint for r, s in series.items() if r in kept},
    )
    # A pipeline that logged per-image scores but no summary (or the reverse) still gets its mean.
    means = pd.Series({r: float(np.mean(v)) for r, v in data.dice_by_run.items() if len(v)}, dtype=float)
    missing = pipelines.heldout_dice_mean.isna() & pipelines.run_id.isin(means.index)
    if missing.any():
        pipelines.loc[missing, "heldout_dice_mean"] = pipelines.loc[missing, "run_id"].map(means).astype(float)
    return data
