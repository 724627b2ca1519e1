"""Cost and time as results (issue #17, item 6): Dice per dollar and per training minute, Pareto fronts, pass@k.

A model that reaches nnU-Net's Dice at ten times the API bill is a different result from one that reaches it
cheaply, and a model that needs three tries to run once is different again; these tables put numbers on both.
"""

from __future__ import annotations

from math import comb
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.analysis.table import BASELINE, StudyData
from llmseg_mlflow.tracking.schema import Status

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

BASELINE_LABEL = "nnU-Net v2 (baseline)"
NO_COST = "no API cost logged (0 or missing): Dice per dollar not defined"
NO_BASELINE = "no nnU-Net baseline with held-out Dice on this dataset: 'beats nnU-Net' not defined"
EFFICIENCY_COLUMNS = [
    "model",
    "dataset",
    "pipelines",
    "with_dice",
    "dice_mean",
    "dice_median",
    "cost_usd_total",
    "cost_usd_median",
    "train_min_median",
    "dice_per_usd",
    "dice_per_train_min",
    "pareto",
    "note",
]
PASS_COLUMNS = ["model", "dataset", "criterion", "n", "c", "k", "pass_at_k", "note"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k): the chance that k of n tries, drawn without replacement, hold a success."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n; got n={n}, c={c}, k={k}")
    # Exact integers (math.comb) rather than the product form: n is a number of repeats, small.
    return 1.0 - comb(n - c, k) / comb(n, k)


def pareto_front(cost: np.ndarray, dice: np.ndarray) -> np.ndarray:
    """Which points no other point dominates (costs no more and scores no less, better in one of the two)."""
    cost, dice = np.asarray(cost, dtype=float), np.asarray(dice, dtype=float)
    ok = np.isfinite(cost) & np.isfinite(dice)
    # All pairs at once: a dataset has tens of models, so the n x n comparison is cheap and has no sort ties.
    no_worse = (cost[None, :] <= cost[:, None]) & (dice[None, :] >= dice[:, None]) & ok[None, :]
    better = (cost[None, :] < cost[:, None]) | (dice[None, :] > dice[:, None])
    return ok & ~(no_worse & better).any(axis=1)


def _baseline_dice(data: StudyData) -> pd.Series:
    """Per dataset, nnU-Net's mean held-out Dice (several baseline roots averaged)."""
    p = data.pipelines
    base = p[(p.role == BASELINE) & p.is_baseline]
    return base.groupby("dataset").heldout_dice_mean.mean().dropna().astype(float)


def _row(model: str, dataset: str, rows: pd.DataFrame) -> dict[str, object]:
    dice = rows.heldout_dice_mean.astype(float).to_numpy()
    cost = rows.cost_usd.astype(float).to_numpy()
    minutes = rows.train_time_s.astype(float).to_numpy() / 60
    have = np.isfinite(dice)
    # Per dollar spent: every pipeline's bill counts, a pipeline that never ran adds cost and no Dice (0), so
    # the ratio is the Dice a dollar buys, failures included. Per training minute: only pipelines that trained
    # and were scored, as a failure's training time is not known.
    total_cost = float(np.nansum(cost)) if np.isfinite(cost).any() else np.nan
    timed = have & np.isfinite(minutes) & (minutes > 0)
    notes = []
    if not total_cost > 0:
        notes.append(NO_COST)
    if not timed.any():
        notes.append("no training time with held-out Dice: Dice per training minute not defined")
    return {
        "model": model,
        "dataset": dataset,
        "pipelines": len(rows),
        "with_dice": int(have.sum()),
        "dice_mean": float(dice[have].mean()) if have.any() else np.nan,
        "dice_median": float(np.median(dice[have])) if have.any() else np.nan,
        "cost_usd_total": total_cost,
        "cost_usd_median": float(np.nanmedian(cost)) if np.isfinite(cost).any() else np.nan,
        "train_min_median": float(np.median(minutes[timed])) if timed.any() else np.nan,
        "dice_per_usd": float(np.nansum(dice)) / total_cost if total_cost > 0 else np.nan,
        "dice_per_train_min": float(dice[timed].sum() / minutes[timed].sum()) if timed.any() else np.nan,
        "note": "; ".join(notes),
    }


def efficiency_table(data: StudyData) -> pd.DataFrame:
    """Per model and dataset (nnU-Net too): Dice per dollar, per training minute, and Pareto-front membership."""
    p = data.pipelines
    study = data.study()
    rows = [_row(str(m), str(d), g) for (m, d), g in study.groupby(["model", "dataset"])]
    base = p[(p.role == BASELINE) & p.is_baseline]
    for dataset, g in base.groupby("dataset"):
        row = _row(BASELINE_LABEL, str(dataset), g)
        # nnU-Net calls no API: its row has no Dice per dollar by design, not for want of data.
        row.update(cost_usd_total=np.nan, cost_usd_median=np.nan, dice_per_usd=np.nan)
        timing = [n for n in str(row["note"]).split("; ") if n and n != NO_COST]
        row["note"] = "; ".join(["no API cost (GPU time only)", *timing])
        rows.append(row)
    table = pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)
    table["pareto"] = False
    for _, idx in table.groupby("dataset").groups.items():
        on = table.loc[idx]
        # The front is over the LLMs' median cost per pipeline vs median Dice; nnU-Net has no API cost.
        priced = on[(on.model != BASELINE_LABEL) & (on.cost_usd_median > 0)]
        table.loc[priced.index, "pareto"] = pareto_front(priced.cost_usd_median, priced.dice_median)
    return table.sort_values(["dataset", "model"], kind="stable").reset_index(drop=True)


def pass_table(data: StudyData) -> pd.DataFrame:
    """pass@k for k = 1..n repeats, per model and dataset: 'runs' (status succeeded) and 'beats_nnunet'."""
    base = _baseline_dice(data)
    rows: list[dict[str, object]] = []
    for (model, dataset), g in data.study().groupby(["model", "dataset"]):
        n = len(g)
        runs = int((g.status == Status.SUCCEEDED.value).sum())
        ref = base.get(dataset)
        # A pipeline without Dice cannot beat the baseline: NaN > ref is False, as it should be.
        beats = int((g.heldout_dice_mean.astype(float) > ref).sum()) if ref is not None else None
        for criterion, c in (("runs", runs), ("beats_nnunet", beats)):
            for k in range(1, n + 1):
                rows.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "criterion": criterion,
                        "n": n,
                        "c": c if c is not None else np.nan,
                        "k": k,
                        "pass_at_k": pass_at_k(n, c, k) if c is not None else np.nan,
                        "note": "" if c is not None else NO_BASELINE,
                    }
                )
    return pd.DataFrame(rows, columns=PASS_COLUMNS)


def pareto_figure(points: pd.DataFrame, table: pd.DataFrame, colours: dict[str, str], title: str, path: Path) -> None:
    """One dataset: each pipeline's API cost vs held-out Dice, each model's median, the front, nnU-Net annotated."""
    fig, ax = fg.plt.subplots(figsize=(7.5, 5))
    for model, g in points.groupby("model"):
        ax.scatter(g.cost_usd, g.heldout_dice_mean, s=12, alpha=0.35, color=colours.get(str(model), fg.GRAY))
    llm = table[(table.model != BASELINE_LABEL) & (table.cost_usd_median > 0)]
    for r in llm.itertuples():
        ax.scatter([r.cost_usd_median], [r.dice_median], s=60, color=colours.get(r.model, fg.GRAY), edgecolor="k")
        ax.annotate(r.model, (r.cost_usd_median, r.dice_median), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = llm[llm.pareto].sort_values("cost_usd_median")
    if len(front):
        ax.step(front.cost_usd_median, front.dice_median, where="post", color="k", lw=1, ls=":", label="Pareto front")
    base = table[table.model == BASELINE_LABEL]
    for r in base.itertuples():
        # No API cost to place it on the x axis: a line at its Dice, its GPU time written on it.
        minutes = f"{r.train_min_median:.1f} GPU-min" if np.isfinite(r.train_min_median) else "GPU time unknown"
        ax.axhline(r.dice_median, color=fg.BASE, ls="--", lw=1)
        ax.annotate(
            f"nnU-Net v2: Dice {r.dice_median:.3f}, no API cost, {minutes}",
            (0.01, r.dice_median),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("API cost per pipeline (USD)")
    ax.set_ylabel("held-out Dice (pipeline mean)")
    ax.grid(alpha=0.3)
    if len(front):
        ax.legend(fontsize=7, loc="lower right")
    fg._title(ax, title, fontsize=9)
    fg._save(fig, path)


def section_efficiency(c: Context) -> None:
    """The cost section: Dice per dollar and minute, a Pareto figure per dataset, pass@k from repeats."""
    table = efficiency_table(c.data)
    notes = c.out.section_notes.setdefault("cost", [])
    unpriced = sorted(set(table[(table.model != BASELINE_LABEL) & table.note.str.contains(NO_COST, regex=False)].model))
    if unpriced:
        notes.append(f"No API cost logged for: {', '.join(unpriced)} (replays log 0); their Dice per dollar is blank.")
    c.out.table(
        "efficiency",
        "Dice per dollar and per training minute, per model and dataset",
        "cost",
        table,
        "dice_per_usd = sum of held-out Dice (a pipeline without Dice counts 0) / sum of API cost over all the "
        "model's pipelines; dice_per_train_min = sum of Dice / sum of training minutes over the pipelines that "
        "trained and were scored. pareto: on the front of median cost per pipeline vs median Dice (no model "
        "costs less and scores more). nnU-Net has no API cost: time only.",
    )
    meta = c.study.groupby("model").year.first()
    colours = {str(m): fg.colour_for(y) for m, y in meta.items()}
    for dataset in sorted(table.dataset.unique()):
        on = table[table.dataset == dataset]
        if not ((on.model != BASELINE_LABEL) & (on.cost_usd_median > 0)).any():
            notes.append(f"No Pareto figure for {dataset}: no model with an API cost there.")
            continue
        pts = c.study[(c.study.dataset == dataset) & (c.study.cost_usd.astype(float) > 0)]
        c.out.figure(
            f"pareto_{dataset}",
            f"API cost vs held-out Dice, {dataset}",
            "cost",
            pareto_figure,
            pts[["model", "cost_usd", "heldout_dice_mean"]].reset_index(drop=True),
            on.reset_index(drop=True),
            colours,
            f"{dataset}: API cost vs held-out Dice (small: pipelines; large: model medians)",
            note="Dotted: the Pareto front of model medians. Dashed: nnU-Net's Dice (no API cost; its GPU time "
            "is written on the line). 2024 blue, 2025 red.",
        )
    passes = pass_table(c.data)
    if passes.note.str.len().gt(0).any():
        missing = sorted(set(passes[passes.note != ""].dataset))
        notes.append(f"No nnU-Net baseline with held-out Dice on: {', '.join(missing)}; 'beats nnU-Net' is blank.")
    c.out.table(
        "pass_at_k",
        "pass@k from repeats: runs at all, beats nnU-Net",
        "cost",
        passes,
        "pass@k = 1 - C(n-c, k)/C(n, k) (unbiased; n repeats, c successes): the chance that at least one of k "
        "repeats succeeds. runs: status succeeded; beats_nnunet: held-out Dice above nnU-Net's mean on the dataset.",
    )
