"""Refinement rounds (`llmseg refine`, issue #18): how far each LLM gets when it sees its own results.

Each refined root logs per-round series with step = round (0: the pipeline as generated): held-out and
validation Dice, tokens, dollars, and whether the round made things worse. They are read in bulk here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.analysis.fetch import HistoryFetcher
from llmseg_mlflow.analysis.table import BASELINE
from llmseg_mlflow.analysis.tables import cohort_label

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

SERIES = {
    "refine.heldout_dice": "heldout_dice",
    "refine.val_dice": "val_dice",
    "refine.tokens": "tokens",
    "refine.cost_usd": "cost_usd",
    "refine.worse": "worse",
}


def fetch_rounds(refined: pd.DataFrame) -> pd.DataFrame:
    """One row per (pipeline, round) of the refined roots, with the SERIES columns."""
    if refined.empty:
        return pd.DataFrame(columns=["run_id", "round", *SERIES.values()])
    rounds = int(refined.refine_rounds.max()) + 1
    points = HistoryFetcher().fetch({key: (list(refined.run_id), rounds) for key in SERIES})
    frames = []
    for key, column in SERIES.items():
        p = points[key]
        frame = pd.DataFrame({"run_id": p.run_id, "round": p.step, "ts": p.timestamp, column: p.value})
        frames.append(frame.sort_values("ts").drop_duplicates(["run_id", "round"], keep="last").drop(columns="ts"))
    out = frames[0]
    for frame in frames[1:]:
        out = out.merge(frame, on=["run_id", "round"], how="outer")
    return out.sort_values(["run_id", "round"]).reset_index(drop=True)


def round_table(rounds: pd.DataFrame, refined: pd.DataFrame, baseline: dict[str, float], by: str) -> pd.DataFrame:
    """Per (`by` = model or cohort, dataset, round): held-out Dice, gain over round 0, nnU-Net's gap closed,
    tokens and dollars per pipeline, and how often the round made things worse."""
    meta = refined[["run_id", "model", "dataset"]].assign(cohort=refined.apply(cohort_label, axis=1))
    frame = rounds.merge(meta, on="run_id")
    start = frame[frame["round"] == 0].set_index("run_id").heldout_dice
    frame["gain"] = frame.heldout_dice - frame.run_id.map(start)
    base = frame.dataset.map(baseline)
    gap = base - frame.run_id.map(start)
    # The share of the distance to nnU-Net's held-out Dice that the round covered (only where there was one).
    frame["gap_closed"] = np.where(gap > 0, frame.gain / gap, np.nan)
    g = frame.groupby([by, "dataset", "round"])
    table = g.agg(
        pipelines=("run_id", "nunique"),
        heldout_dice_mean=("heldout_dice", "mean"),
        heldout_dice_median=("heldout_dice", "median"),
        gain_mean=("gain", "mean"),
        gap_closed_mean=("gap_closed", "mean"),
        tokens_mean=("tokens", "mean"),
        cost_usd_mean=("cost_usd", "mean"),
        worse_share=("worse", "mean"),
    ).reset_index()
    table["nnunet_heldout_dice"] = table.dataset.map(baseline)
    return table


def section_refinement(c: Context) -> None:
    """Held-out Dice per round per model and cohort, when the study has refined pipelines."""
    study = c.study
    if "refine_rounds" not in study or not study.refine_rounds.notna().any():
        return
    refined = study[study.refine_rounds.notna()]
    rounds = fetch_rounds(refined)
    base = c.data.of_role(BASELINE)
    baseline = base.groupby("dataset").heldout_dice_mean.mean().to_dict() if "heldout_dice_mean" in base else {}
    note = (
        "Round 0 is the pipeline as generated. gain: held-out Dice minus round 0's (per pipeline, then averaged); "
        "gap_closed: gain / (nnU-Net's held-out Dice - round 0's), where nnU-Net was ahead; worse_share: rounds "
        "whose code did not run or whose validation Dice fell below the best before them. The best round is "
        "chosen by validation Dice; held-out Dice never reaches the LLM (docs/refine.md)."
    )
    by_model = round_table(rounds, refined, baseline, "model")
    c.out.table("refine_rounds", "Refinement: held-out Dice per round and model", "refine", by_model, note)
    c.out.table(
        "refine_cohorts",
        "Refinement: held-out Dice per round and cohort",
        "refine",
        round_table(rounds, refined, baseline, "cohort"),
    )
    for dataset in sorted(by_model.dataset.unique()):
        part = by_model[by_model.dataset == dataset]
        c.out.figure(
            f"refine_{dataset}",
            f"{dataset}: held-out Dice per refinement round (mean over pipelines)",
            "refine",
            fg.rounds_figure,
            part,
            baseline.get(dataset),
            dataset,
        )
