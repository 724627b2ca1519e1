"""Ranking stability (issue #17, item 5): per dataset, the held-out images are bootstrapped and the models ranked
by median Dice on each resample, so "model A beats model B" comes with how often it does.

Every model is scored on the same resampled images (one draw per dataset): a hard image lowers every model at
once, as it does in the study, and resampling each model's images apart would call rankings less stable than
they are. A model's median pools its repeats' per-image scores, as the Dice figures and dice_per_model do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.analysis.bootstrap import LEVEL, N_BOOT, SEED, cluster_medians, resample_counts
from llmseg_mlflow.analysis.paired import MIN_PAIRS, image_matrix
from llmseg_mlflow.analysis.table import StudyData

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

# As the paired section's minimum: a median resampled from fewer images takes a handful of values at most.
MIN_IMAGES = MIN_PAIRS
COLUMNS = [
    "dataset",
    "model",
    "rank",
    "median_dice",
    "pipelines",
    "n_images",
    "keep_rank",
    "rank_ci_low",
    "rank_ci_high",
    "next_model",
    "above_next",
    "note",
]
PAIR_COLUMNS = ["dataset", "model_a", "model_b", "rank_a", "rank_b", "a_above_b", "tie", "b_above_a"]


def _ranks(medians: np.ndarray) -> np.ndarray:
    """1 = highest median; tied models share the better rank (competition ranking)."""
    return rankdata(-medians, method="min", axis=-1).astype(int)


def _dataset(data: StudyData, on: pd.DataFrame, dataset: str, n_boot: int, seed: int, level: float):
    """The rank rows, the pair rows and the (models x ranks) frequencies of one dataset."""
    index, m = image_matrix(data, list(on.run_id))
    rows_of = {model: g.index.to_numpy() for model, g in on.reset_index(drop=True).groupby("model")}
    rows_of = {k: v for k, v in rows_of.items() if (~np.isnan(m[v])).any()}  # never ran: no row, as in paired
    if not rows_of:
        return [], [], None
    scored = np.array([(~np.isnan(m[v])).any(axis=0) for v in rows_of.values()])
    common = np.nonzero(scored.all(axis=0))[0]  # images scored by every model: all ranked on the same images
    models = list(rows_of)
    # Per model, its repeats' scores on each common image: the units a resample draws (an image drawn twice
    # counts twice for every model).
    units = [[col[~np.isnan(col)] for col in m[v][:, common].T] for v in rows_of.values()]
    observed = np.array([np.median(np.concatenate(u)) if u else np.nan for u in units])
    rank = _ranks(np.nan_to_num(observed, nan=-np.inf))
    order = sorted(range(len(models)), key=lambda i: (rank[i], models[i]))
    note = ""
    if len(models) < 2:
        note = f"n too small: one model with held-out Dice on {dataset}, nothing to rank"
    elif len(common) < MIN_IMAGES:
        note = (
            f"n too small: {len(common)} image(s) scored by every model ({len(index)} held-out in all); "
            f"no bootstrap below {MIN_IMAGES} images"
        )
    base = {"dataset": dataset, "n_images": len(common), "note": note}
    rows = [
        {
            **base,
            "model": models[i],
            "rank": int(rank[i]),
            "median_dice": observed[i],
            "pipelines": len(rows_of[models[i]]),
        }
        for i in order
    ]
    if note:
        return rows, [], None
    counts = resample_counts(np.random.default_rng(seed), len(common), n_boot)  # shared by every model
    medians = np.column_stack([cluster_medians(u, counts) for u in units])  # (resamples, models)
    ranks = _ranks(medians)
    freq = (ranks[:, :, None] == np.arange(1, len(models) + 1)).mean(axis=0)  # (models, ranks)
    tail = (1 - level) / 2 * 100
    ci = np.percentile(ranks, [tail, 100 - tail], axis=0, method="inverted_cdf")  # ranks, not between ranks
    above = (medians[:, :, None] > medians[:, None, :]).mean(axis=0)
    tie = (medians[:, :, None] == medians[:, None, :]).mean(axis=0)
    for k, (row, i) in enumerate(zip(rows, order)):
        nxt = order[k + 1] if k + 1 < len(order) else None
        row.update(
            keep_rank=float(freq[i, rank[i] - 1]),
            rank_ci_low=int(ci[0, i]),
            rank_ci_high=int(ci[1, i]),
            next_model=models[nxt] if nxt is not None else "",
            above_next=float(above[i, nxt]) if nxt is not None else np.nan,
            **{f"rank_{r + 1}": float(freq[i, r]) for r in range(len(models))},
        )
    pairs = [
        {
            "dataset": dataset,
            "model_a": models[i],
            "model_b": models[j],
            "rank_a": int(rank[i]),
            "rank_b": int(rank[j]),
            "a_above_b": float(above[i, j]),
            "tie": float(tie[i, j]),
            "b_above_a": float(above[j, i]),
        }
        for k, i in enumerate(order)
        for j in order[k + 1 :]
    ]
    return rows, pairs, ([models[i] for i in order], freq[order], rank[order])


def rank_stability(
    data: StudyData, n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[list[str], np.ndarray, np.ndarray]]]:
    """Per dataset: each model's rank row, every pair of models, and the frequencies the figure draws."""
    study = data.study()
    rows: list[dict] = []
    pairs: list[dict] = []
    freqs = {}
    for dataset in sorted(study.dataset.unique()):
        r, p, f = _dataset(data, study[study.dataset == dataset], dataset, n_boot, seed, level)
        rows += r
        pairs += p
        if f is not None:
            freqs[dataset] = f
    most = max((len(f[0]) for f in freqs.values()), default=0)
    table = pd.DataFrame(rows).reindex(columns=COLUMNS + [f"rank_{k + 1}" for k in range(most)])
    return table, pd.DataFrame(pairs, columns=PAIR_COLUMNS), freqs


def rank_figure(models: list[str], freq: np.ndarray, ranks: np.ndarray, title: str, path: Path) -> None:
    """Models (observed order, top) x ranks: how often each model is at each rank, its observed rank framed."""
    n = len(models)
    # Margins in inches (model names left, colour bar right), so they keep their room for any number of models.
    left, right, top, bottom = 1.5, 0.9, 0.45, 0.55
    width, height = left + right + max(2.6, 0.32 * n), top + bottom + max(1.1, 0.26 * n)
    fig, ax = fg.plt.subplots(figsize=(width, height))
    im = ax.imshow(freq, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, r in enumerate(ranks):
        ax.add_patch(fg.plt.Rectangle((r - 1.5, i - 0.5), 1, 1, fill=False, ec=fg.RED, lw=1.2))
    for i, j in zip(*np.nonzero(freq >= 0.1)):  # only shares worth reading: a label per cell costs time and ink
        colour = "white" if freq[i, j] > 0.6 else "black"
        ax.text(j, i, f"{freq[i, j]:.0%}", ha="center", va="center", fontsize=6, color=colour)
    ax.set_xticks(range(n), [str(k + 1) for k in range(n)], fontsize=7)
    ax.set_yticks(range(n), models, fontsize=7)
    ax.set_xlabel("rank on a resample (1 = highest median Dice)", fontsize=8)
    bar = fig.add_axes((1 - (right - 0.15) / width, bottom / height, 0.12 / width, 1 - (top + bottom) / height))
    fig.colorbar(im, cax=bar).ax.tick_params(labelsize=7)
    fg._title(ax, title, fontsize=9)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    fg._save(fig, path)


def section_ranking(c: Context) -> None:
    """The report's ranking-stability section: the rank table, every pair, one heatmap per dataset."""
    n_boot = c.cfg.bootstrap_resamples
    table, pairs, freqs = rank_stability(c.data, n_boot)
    if table.empty:
        return
    how = (
        f"{n_boot} bootstrap resamples (seeded) of the held-out images a dataset's models all scored, the same "
        "images for every model; on each, a model's median Dice pools its repeats' scores on the drawn images and "
        "the models are ranked (1 = highest; ties share the better rank)."
    )
    small = int(table.note.fillna("").str.startswith("n too small").sum())
    c.out.table(
        "ranking_stability",
        "Ranking stability: each model's rank over bootstrap resamples of the held-out images",
        "ranking",
        table,
        f"{how} rank: on all those images. keep_rank: share of resamples at that rank; rank_ci: {LEVEL:.0%} "
        "percentile interval of the rank; above_next: share of resamples where the model's median is higher "
        f"than next_model's (the next one down); rank_k: share at rank k. {small} row(s) too small (note).",
    )
    c.out.table(
        "ranking_pairs",
        "Ranking stability: how often one model's median Dice is above another's",
        "ranking",
        pairs,
        f"{how} model_a is ranked above model_b on all images; a_above_b, tie, b_above_a: shares of resamples.",
    )
    for dataset, (models, freq, ranks) in freqs.items():
        c.out.figure(
            f"ranking_{dataset}",
            f"Rank frequencies over bootstrap resamples of the held-out images, {dataset}",
            "ranking",
            rank_figure,
            models,
            freq,
            ranks,
            f"{dataset}: rank per resample ({n_boot} resamples)",
            note="Rows: models in their rank on all images (framed). Each row sums to 1; shares under 10% unlabelled.",
        )
