"""Paired comparison with the nnU-Net baseline on the same held-out images (issue #17, item 1).

Per dataset, every pipeline, model (repeats averaged per image) and cohort group (models averaged per image)
is paired with nnU-Net image by image (held-out index); the per-image Dice difference (LLM - nnU-Net) gets
a two-sided Wilcoxon signed-rank test, a seeded bootstrap 95% CI of its median, and the share of images won.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.analysis.bootstrap import LEVEL, N_BOOT, SEED, bootstrap_median_cis
from llmseg_mlflow.analysis.stats import in_group
from llmseg_mlflow.analysis.table import BASELINE, IMAGE_DICE, StudyData

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

# With 5 pairs the smallest exact two-sided Wilcoxon p is 2/2^5 = 0.0625: fewer pairs can never reach 0.05,
# so such rows get no test at all rather than a p that only looks like one.
MIN_PAIRS = 6
BASELINE_LABEL = "nnU-Net v2 (baseline)"
COLUMNS = [
    "dataset",
    "level",
    "comparison",
    "group",
    "model",
    "repeat",
    "run_id",
    "pipelines",
    "n_pairs",
    "n_images",
    "n_images_baseline",
    "median_llm",
    "median_baseline",
    "median_diff",
    "ci_low",
    "ci_high",
    "W",
    "p",
    "win_fraction",
    "note",
]


def _mean_rows(m: np.ndarray) -> np.ndarray:
    """Column means over the rows that have a value (NaN where none has): nanmean without its warning."""
    have = ~np.isnan(m)
    n = have.sum(axis=0)
    return np.where(n > 0, np.where(have, m, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def image_matrix(data: StudyData, run_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(held-out indices, matrix): one row of per-image Dice per run, NaN where a run has no score for an image.

    One dense array per dataset: averaging repeats and models per image is then a column mean, where a
    pandas Series per run and an index join per row cost seconds at study scale."""
    got = [data.series[r][IMAGE_DICE] if IMAGE_DICE in data.series.get(r, {}) else None for r in run_ids]
    xs = [np.asarray(g[0], dtype=int) for g in got if g is not None]
    index = np.unique(np.concatenate(xs)) if xs else np.array([], dtype=int)
    m = np.full((len(run_ids), len(index)), np.nan)
    for i, g in enumerate(got):
        if g is not None:
            m[i, np.searchsorted(index, np.asarray(g[0], dtype=int))] = g[1]
    return index, m


def wilcoxon_tests(diffs: list[np.ndarray]) -> list[tuple[float, float]]:
    """(W, p) of scipy's two-sided wilcoxon(d) for each array, several arrays per scipy call where that gives
    the same answer: scipy picks the exact or the normal method for a whole batch at once, so only arrays of
    one length without ties or zeros (exact) or all longer than 50 (normal) are batched, the rest one by one."""
    out: list[tuple[float, float]] = [(np.nan, np.nan)] * len(diffs)
    batches: dict[int, list[int]] = {}
    for i, d in enumerate(diffs):
        if not np.any(d):  # no difference on any image: nothing to rank, p = 1 (scipy would warn)
            out[i] = (0.0, 1.0)
        elif len(d) > 50 or (np.all(d != 0) and len(np.unique(np.abs(d))) == len(d)):
            batches.setdefault(len(d), []).append(i)
        else:
            res = wilcoxon(d)
            out[i] = (float(res.statistic), float(res.pvalue))
    for idx in batches.values():
        with warnings.catch_warnings():  # one zero difference in a normal-method batch: harmless, scipy warns
            warnings.simplefilter("ignore", RuntimeWarning)
            res = wilcoxon(np.vstack([diffs[i] for i in idx]), axis=1)
        for i, w, p in zip(idx, np.atleast_1d(res.statistic), np.atleast_1d(res.pvalue)):
            out[i] = (float(w), float(p))
    return out


def paired_table(
    data: StudyData, cohorts, n_boot: int = N_BOOT, seed: int = SEED, min_pairs: int = MIN_PAIRS
) -> tuple[pd.DataFrame, list[str]]:
    """The paired rows of every dataset with a baseline, and the datasets without nnU-Net per-image scores."""
    study, p = data.study(), data.pipelines
    rows: list[dict] = []
    diffs: list[np.ndarray] = []
    missing: list[str] = []
    for dataset in sorted(p.dataset.unique()):
        on = study[study.dataset == dataset].reset_index(drop=True)
        base_ids = list(p[(p.role == BASELINE) & (p.dataset == dataset)].run_id)
        index, m = image_matrix(data, base_ids + list(on.run_id))
        base, m = _mean_rows(m[: len(base_ids)]), m[len(base_ids) :]  # several baseline roots: averaged
        if not (~np.isnan(base)).any():
            missing.append(dataset)
            continue
        by_model = {model: _mean_rows(m[g.index.to_numpy()]) for model, g in on.groupby("model")}
        scored = ~np.isnan(m).all(axis=1)  # pipelines with held-out scores
        entries: list[tuple[dict, np.ndarray, int]] = [
            ({"level": "pipeline", "model": r.model, "repeat": r.repeat, "run_id": r.run_id}, m[i], 1)
            for i, r in enumerate(on.itertuples())
        ]
        for model, g in on.groupby("model"):
            entries.append(({"level": "model", "model": model}, by_model[model], int(scored[g.index].sum())))
        for comp in cohorts.comparisons:
            for group in (comp.a, comp.b):
                members = on[in_group(on, comp, group)]
                names = sorted(set(members.model))
                v = _mean_rows(np.array([by_model[n] for n in names])) if names else np.full(len(index), np.nan)
                key = {"level": "cohort", "comparison": comp.name, "group": group.label}
                entries.append((key, v, int(scored[members.index].sum())))
        n_base = int((~np.isnan(base)).sum())
        for key, v, pipelines in entries:
            n_llm = int((~np.isnan(v)).sum())
            if not n_llm:  # never ran or not evaluated (listed in never_ran / evaluation_failed), or no members
                continue
            both = ~np.isnan(v) & ~np.isnan(base)
            d = v[both] - base[both]
            row = {
                "dataset": dataset,
                "comparison": "",
                "group": "",
                "model": "",
                "repeat": np.nan,
                "run_id": "",
                **key,
                "pipelines": pipelines,
                "n_pairs": len(d),
                "n_images": n_llm,
                "n_images_baseline": n_base,
                "median_llm": float(np.median(v[both])) if len(d) else np.nan,
                "median_baseline": float(np.median(base[both])) if len(d) else np.nan,
                "median_diff": float(np.median(d)) if len(d) else np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "W": np.nan,
                "p": np.nan,
                "win_fraction": float(np.mean(d > 0)) if len(d) else np.nan,
                "note": "",
            }
            if len(d) < min_pairs:
                row["note"] = (
                    f"n too small: {len(d)} image(s) scored by both ({n_llm} by the pipeline(s), {n_base} by "
                    f"nnU-Net); no test or CI below {min_pairs} pairs (a two-sided Wilcoxon p cannot reach 0.05)"
                )
            else:
                diffs.append(d)
            rows.append(row)
    tested = [r for r in rows if not r["note"]]
    for row, (w, pv), (lo, hi) in zip(tested, wilcoxon_tests(diffs), bootstrap_median_cis(diffs, n_boot, seed)):
        row["W"], row["p"], row["ci_low"], row["ci_high"] = w, pv, lo, hi
    return pd.DataFrame(rows, columns=COLUMNS), missing


def paired_figure(frame: pd.DataFrame, colours: dict[str, str], title: str, path: Path) -> None:
    """Per dataset, each model's median Dice difference to nnU-Net with its bootstrap CI; zero marked."""
    datasets = sorted(frame.dataset.unique()) or ["(none)"]
    # Grouped by colour, then by name: blue (2024, "#1f..."), gray, red (2025, "#d6...") from top to bottom.
    models = sorted(frame.model.unique(), key=lambda m: (colours.get(m, ""), m))
    cols = min(3, len(datasets))
    rows = int(np.ceil(len(datasets) / cols))
    # Margins in inches, so the title and axis labels keep their room however many models and datasets.
    panel, gap, top, bottom = 0.28 * max(1, len(models)) + 0.3, 0.9, 0.8 + 0.2 * title.count("\n"), 0.55
    height = rows * panel + (rows - 1) * gap + top + bottom
    fig, axes = fg.plt.subplots(rows, cols, figsize=(4.2 * cols + 1.5, height), squeeze=False)
    ys = {m: i for i, m in enumerate(reversed(models))}
    for k, ax in enumerate(axes.flat):
        if k >= len(datasets):
            ax.set_visible(False)
            continue
        on = frame[frame.dataset == datasets[k]]
        for r in on.itertuples():
            colour = colours.get(r.model, fg.GRAY)
            if np.isnan(r.ci_low):  # too few pairs: the median alone, hollow
                ax.plot([r.median_diff], [ys[r.model]], "o", mfc="none", mec=colour, ms=5)
            else:
                ax.errorbar(
                    [r.median_diff],
                    [ys[r.model]],
                    xerr=[[r.median_diff - r.ci_low], [r.ci_high - r.median_diff]],
                    fmt="o",
                    color=colour,
                    ms=4,
                    capsize=2,
                )
        ax.axvline(0, color=fg.BASE, lw=1, ls="--")
        ax.set_yticks(list(ys.values()), list(ys) if k % cols == 0 else [""] * len(ys), fontsize=7)
        ax.set_ylim(-0.6, len(ys) - 0.4)
        ax.set_xlabel("median Dice difference (LLM - nnU-Net)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        fg._title(ax, datasets[k], fontsize=9)
    fig.suptitle(title, fontsize=10, y=1 - 0.15 / height, va="top")
    fig.subplots_adjust(
        left=1.4 / (4.2 * cols + 1.5), right=0.98, top=1 - top / height, bottom=bottom / height, hspace=gap / panel
    )
    fg._save(fig, path)


def section_paired(c: Context) -> None:
    """The report's paired section: the table of every row, one figure of the per-model medians and CIs."""
    n_boot = c.cfg.bootstrap_resamples
    table, missing = paired_table(c.data, c.cohorts, n_boot=n_boot)
    notes = c.out.section_notes.setdefault("paired", [])
    if missing:
        notes.append(
            f"No nnU-Net baseline (tag baseline=true) with per-image held-out Dice on: {', '.join(missing)}; "
            "no paired comparison there."
        )
    if table.empty:
        return
    small = int(table.note.str.startswith("n too small").sum())
    c.out.table(
        "paired_baseline",
        "Paired per-image Dice difference to nnU-Net v2 on the same held-out images",
        "paired",
        table,
        f"Difference = LLM - nnU-Net per held-out image (pairs matched by index). W, p: two-sided Wilcoxon "
        f"signed-rank (scipy.stats.wilcoxon). CI: {LEVEL:.0%} percentile bootstrap of the median difference "
        f"({n_boot} resamples, seed {SEED}). win_fraction: share of images where the LLM scores higher. "
        f"Model rows average repeats per image, cohort rows average models per image. {small} row(s) with "
        f"fewer than {MIN_PAIRS} pairs: no test (see note).",
    )
    per_model = table[table.level == "model"]
    if per_model.empty:
        return
    meta = c.study.groupby("model").year.first()
    c.out.figure(
        "paired_baseline",
        "Median per-image Dice difference to nnU-Net per model (paired, same images)",
        "paired",
        paired_figure,
        per_model[["dataset", "model", "median_diff", "ci_low", "ci_high"]].reset_index(drop=True),
        {m: fg.colour_for(y) for m, y in meta.items()},
        f"median paired Dice difference to nnU-Net, {LEVEL:.0%} bootstrap CI\n(hollow: too few pairs, no CI)",
        note="Left of the dashed line: nnU-Net better on the typical image. 2024 blue, 2025 red.",
    )
