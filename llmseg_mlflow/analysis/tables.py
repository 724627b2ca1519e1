"""The report's tables as data frames (errors, fix rounds, Tables 1-2, variability, budget, compliance, cost)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from llmseg_mlflow.analysis.stats import quartiles
from llmseg_mlflow.analysis.table import StudyData
from llmseg_mlflow.tracking.schema import HYPERPARAMETERS, Status


def error_columns(frame: pd.DataFrame) -> list[str]:
    """The `errors.{Type}` columns, most frequent type first."""
    cols = [c for c in frame.columns if c.startswith("errors.")]
    return sorted(cols, key=lambda c: (-frame[c].sum(), c))


def cohort_label(row) -> str:
    """`2025 reasoning`, `2024 non-reasoning`, ... (`?` where a tag is empty)."""
    year = row.get("year") or "?"
    r = str(row.get("reasoning") or "")
    return f"{year} {'reasoning' if r == 'true' else 'non-reasoning' if r == 'false' else '?'}"


def errors_by_model(study: pd.DataFrame) -> pd.DataFrame:
    """Errors by type per model, summed over its pipelines (every pipeline counts, also those that never ran)."""
    cols = error_columns(study)
    g = study.groupby("model")
    out = g[cols].sum().rename(columns=lambda c: c.removeprefix("errors."))
    out.insert(0, "pipelines", g.size())
    out.insert(1, "year", g.year.first())
    out.insert(2, "reasoning", g.reasoning.first())
    out["errors_total"] = g.errors_total.sum()
    out["errors_per_pipeline"] = g.errors_total.mean()
    out["never_ran"] = g.heldout_dice_mean.apply(lambda s: int(s.isna().sum()))
    # Supplementary messages after a repeated error: the paper's "additional interactions", beside the errors.
    out["interventions"] = g.interventions.sum() if "interventions" in study else 0
    return out.sort_values(["year", "errors_total"], ascending=[True, False]).reset_index()


def errors_by_cohort(study: pd.DataFrame) -> pd.DataFrame:
    """Errors by type per cohort (year x reasoning)."""
    cols = error_columns(study)
    frame = study.assign(cohort=[cohort_label(r) for r in study[["year", "reasoning"]].to_dict("records")])
    g = frame.groupby("cohort")
    out = g[cols].sum().rename(columns=lambda c: c.removeprefix("errors."))
    out.insert(0, "models", g.model.nunique())
    out.insert(1, "pipelines", g.size())
    out["errors_total"] = g.errors_total.sum()
    out["errors_per_pipeline"] = g.errors_total.mean()
    out["errors_per_pipeline_sd"] = g.errors_total.std(ddof=1)
    return out.reset_index()


def fix_rounds(study: pd.DataFrame) -> pd.DataFrame:
    """Fix rounds (error-feedback requests) per model: how often code ran at once, mean, SD, max."""
    g = study.assign(first_try=(study.errors_total.fillna(0) == 0)).groupby("model")
    out = pd.DataFrame(
        {
            "pipelines": g.size(),
            "ran_first_try": g.first_try.sum(),
            "fix_rounds_mean": g.debug_iterations.mean(),
            "fix_rounds_sd": g.debug_iterations.std(ddof=1),
            "fix_rounds_max": g.debug_iterations.max(),
            "succeeded": g.status.apply(lambda s: int((s == "succeeded").sum())),
            "gave_up": g.status.apply(lambda s: int(s.isin(["gave_up", "no_code"]).sum())),
            "stuck_loop": g.status.apply(lambda s: int((s == "stuck_loop").sum())),
        }
    )
    return out.sort_values("fix_rounds_mean").reset_index()


def _summary_value(values: pd.Series) -> str:
    """The most common value, with how many pipelines agree when they differ."""
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in values.dropna()]
    if not vals:
        return "-"
    counts = Counter(vals).most_common()  # ties: the value seen first
    top, n = counts[0]
    return top if len(counts) == 1 else f"{top} ({n}/{len(vals)}; {len(counts)} values)"


def format_duration(seconds: float, sd: float | None = None) -> str:
    """`H:MM:SS (+/-X.X')` as in the paper's Tables 1-2 (SD in minutes)."""
    if seconds is None or np.isnan(seconds):
        return "-"
    s = int(round(seconds))
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return text if sd is None or np.isnan(sd) else f"{text} (\u00b1{sd / 60:.1f}')"


def training_time(study: pd.DataFrame) -> pd.DataFrame:
    """Training time per model: mean +/- SD across datasets (each dataset's repeats averaged first)."""
    per_ds = study.dropna(subset=["train_time_s"]).groupby(["model", "dataset"]).train_time_s.mean()
    g = per_ds.groupby("model")
    out = pd.DataFrame({"datasets": g.size(), "train_time_mean_s": g.mean(), "train_time_sd_s": g.std(ddof=1)})
    out["training_time"] = [format_duration(m, s) for m, s in zip(out.train_time_mean_s, out.train_time_sd_s)]
    return out.reset_index()


def architecture(study: pd.DataFrame, year: str | None) -> pd.DataFrame:
    """Tables 1-2: what each model chose (rows: features, columns: models), for one year cohort or all."""
    frame = study if year is None else study[study.year == year]
    times = training_time(frame).set_index("model")
    features = [f"param.{k}" for k in HYPERPARAMETERS] + ["params_total"]
    cols = {}
    for model, rows in frame[["model", *(f for f in features if f in frame)]].groupby("model"):
        col = {f.removeprefix("param."): _summary_value(rows[f]) if f in rows else "-" for f in features}
        if "params_total" in rows and rows.params_total.notna().any():
            col["params_total"] = f"{rows.params_total.median() / 1e6:.2f} M"
        col["training_time"] = times.training_time.get(model, "-")
        col["pipelines"] = str(len(rows))
        cols[model] = col
    out = pd.DataFrame(cols)
    out.index.name = "feature"
    return out.reset_index()


def never_ran(study: pd.DataFrame) -> pd.DataFrame:
    """Pipelines whose code never trained to the end: they count in the error tables, not in Dice statistics."""
    cols = ["run_id", "run_name", "model", "dataset", "repeat", "status", "errors_total", "debug_iterations"]
    failed_eval = study.status == Status.EVALUATION_FAILED.value
    return study[study.heldout_dice_mean.isna() & ~failed_eval][cols].reset_index(drop=True)


def evaluation_failed(study: pd.DataFrame) -> pd.DataFrame:
    """Pipelines that trained but whose held-out evaluation failed, with the reason (no Dice, apart from never_ran)."""
    cols = ["run_id", "run_name", "model", "dataset", "repeat", "evaluation_error", "evaluation_run_id"]
    return study[study.status == Status.EVALUATION_FAILED.value][cols].reset_index(drop=True)


def variability_configs(study: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Tables 4-5: each repeat's configuration and outcome for the chosen models."""
    frame = study[study.model.isin(models)]
    cols = (
        ["model", "dataset", "repeat"]
        + [f"param.{k}" for k in HYPERPARAMETERS if f"param.{k}" in frame]
        + [
            c
            for c in ("params_total", "errors_total", "train_time_s", "heldout_dice_mean", "heldout_dice_median")
            if c in frame
        ]
    )
    out = frame[cols].sort_values(["model", "dataset", "repeat"]).reset_index(drop=True)
    return out.rename(columns=lambda c: c.removeprefix("param."))


def variability_spread(study: pd.DataFrame, data: StudyData) -> pd.DataFrame:
    """Run-to-run spread of held-out Dice for every (model, dataset) with several repeats."""
    rows = []
    narrow = study[["model", "dataset", "repeat", "run_id", "heldout_dice_mean"]]  # groups copy every column
    for (model, dataset), on in narrow.groupby(["model", "dataset"]):
        if on.repeat.nunique() < 2:
            continue
        means = on.heldout_dice_mean.dropna()
        med, q1, q3 = _pooled_quartiles(data, on.run_id)
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "repeats": len(on),
                "with_dice": len(means),
                "mean_of_means": means.mean(),
                "sd_of_means": means.std(ddof=1),
                "min_mean": means.min(),
                "max_mean": means.max(),
                "pooled_median": med,
                "pooled_q1": q1,
                "pooled_q3": q3,
            }
        )
    return pd.DataFrame(rows)


def _pooled_quartiles(data: StudyData, run_ids) -> tuple[float, float, float]:
    """(median, q1, q3) of the runs' per-image Dice pooled, NaNs left out."""
    pooled = data.dice(run_ids)
    return quartiles(pooled[~np.isnan(pooled)])


def budget_table(data: StudyData) -> pd.DataFrame:
    """The constant-budget experiment: each rerun beside the pipeline it reran."""
    budget = data.of_role("budget")
    if budget.empty:
        return pd.DataFrame()
    source = data.pipelines.set_index("run_id")
    rows = []
    for _, r in budget.iterrows():
        src = source.loc[r.source_run] if r.source_run in source.index else None
        own = own_epochs(r, src)
        curve = data.curve(r.run_id)
        at_own = curve[1][curve[0] == own] if curve is not None and own else np.array([])
        rows.append(
            {
                "model": r.model,
                "dataset": r.dataset,
                "budget": r.budget,
                "own_epochs": own,
                "val_loss_at_own_epochs": at_own[0] if len(at_own) else np.nan,
                "val_loss_at_budget": curve[1][np.argmax(curve[0])] if curve is not None else np.nan,
                "heldout_dice_budget": r.heldout_dice_mean,
                "heldout_dice_own": src.heldout_dice_mean if src is not None else np.nan,
                "run_id": r.run_id,
                "source_run": r.source_run,
            }
        )
    return pd.DataFrame(rows).sort_values(["dataset", "model"]).reset_index(drop=True)


def own_epochs(run: pd.Series, source: pd.Series | None) -> int | None:
    """The epochs the LLM chose for a budget rerun's pipeline: the source's `epochs` param or epochs trained."""
    candidates = [source.get("param.epochs"), source.get("epochs_trained")] if source is not None else []
    for v in [*candidates, run.get("param.epochs")]:
        if isinstance(v, (int, float)) and not np.isnan(v):
            return int(v)
    return None


def compliance(study: pd.DataFrame) -> pd.DataFrame:
    """Prompt compliance per model: mean score and the share of pipelines meeting each item."""
    cols = ["compliance_score"] + sorted(c for c in study.columns if c.startswith("compliance."))
    cols = [c for c in cols if c in study]
    if not cols or study[cols].isna().all().all():
        return pd.DataFrame()
    g = study.groupby("model")
    out = g[cols].mean().rename(columns=lambda c: c.removeprefix("compliance."))
    out.insert(0, "pipelines_scored", g.compliance_score.count() if "compliance_score" in study else 0)
    return out.sort_values("compliance_score", ascending=False).reset_index()


def cost(study: pd.DataFrame) -> pd.DataFrame:
    """Cost and tokens per model: totals over the study and per pipeline."""
    cols = [c for c in ("tokens_in", "tokens_out", "tokens_reasoning", "llm_calls", "cost_usd") if c in study]
    if not cols:
        return pd.DataFrame()
    g = study.groupby("model")
    out = g[cols].sum().add_suffix("_total")
    for c in cols:
        out[f"{c}_per_pipeline"] = g[c].mean()
    out.insert(0, "pipelines", g.size())
    sort = "cost_usd_total" if "cost_usd_total" in out else out.columns[1]
    return out.sort_values(sort, ascending=False).reset_index()


def dice_per_model(study: pd.DataFrame, data: StudyData) -> pd.DataFrame:
    """Held-out Dice per model and dataset: pooled per-image median (IQR), mean of pipeline means, SD."""
    rows = []
    narrow = study[
        [
            c
            for c in ("dataset", "model", "year", "reasoning", "run_id", "heldout_dice_mean", "own_test_dice_mean")
            if c in study
        ]
    ]  # groups copy every column
    for (dataset, model), on in narrow.groupby(["dataset", "model"]):
        med, q1, q3 = _pooled_quartiles(data, on.run_id)
        means = on.heldout_dice_mean.dropna()
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "year": on.year.iloc[0],
                "reasoning": on.reasoning.iloc[0],
                "pipelines": len(on),
                "with_dice": len(means),
                "median": med,
                "q1": q1,
                "q3": q3,
                "mean": means.mean(),
                "sd_between_repeats": means.std(ddof=1),
                "own_test_dice_mean": on.get("own_test_dice_mean", pd.Series(dtype=float)).mean(),
            }
        )
    return pd.DataFrame(rows).sort_values(["dataset", "median"], ascending=[True, False]).reset_index(drop=True)
