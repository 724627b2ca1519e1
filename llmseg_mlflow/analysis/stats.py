"""Statistics: one-sided Mann-Whitney U, rank-biserial r and Cliff's delta, Bonferroni, Holm and Benjamini-Hochberg,
and the cohort tests (Table 3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from llmseg_mlflow.analysis.config import Cohorts, Comparison, Group

COHORT_TEST_COLUMNS = [
    "dataset",
    "comparison",
    "group_a",
    "group_b",
    "n_a",
    "n_b",
    "median_a",
    "q1_a",
    "q3_a",
    "median_b",
    "q1_b",
    "q3_b",
    "delta_median",
    "U",
    "p",
    "significant",
    "effect_size",
]


@dataclass(frozen=True)
class UTest:
    """A one-sided Mann-Whitney U test of `b > a` (or `b < a`), with its rank-biserial effect size."""

    U: float  # the statistic of sample b
    p: float
    effect_size: float  # rank-biserial r = 2U/(n_a n_b) - 1: +1 when every b beats every a


def u_test(a: np.ndarray, b: np.ndarray, alternative: str = "greater") -> UTest | None:
    """scipy's mannwhitneyu(b, a, alternative) (automatic method); None when either side is empty."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return None
    res = mannwhitneyu(b, a, alternative=alternative)
    return UTest(float(res.statistic), float(res.pvalue), float(2 * res.statistic / (len(a) * len(b)) - 1))


def bonferroni(p: np.ndarray) -> np.ndarray:
    """Bonferroni-adjusted p values over one family of tests (NaN for tests that could not run)."""
    p = np.asarray(p, dtype=float)
    m = int(np.sum(~np.isnan(p)))
    return np.minimum(1.0, p * max(m, 1))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p values over one family (NaN for tests that could not run)."""
    p = np.asarray(p, dtype=float)
    out, ok = np.full(p.shape, np.nan), ~np.isnan(p)
    q = p[ok]
    order = np.argsort(q, kind="stable")
    # k-th smallest times (m - k + 1), made monotone: a larger p never gets a smaller adjusted p
    adj = np.minimum(1.0, np.maximum.accumulate((len(q) - np.arange(len(q))) * q[order]))
    res = np.empty(len(q))
    res[order] = adj
    out[ok] = res
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg (FDR) adjusted p values over one family (NaN for tests that could not run)."""
    p = np.asarray(p, dtype=float)
    out, ok = np.full(p.shape, np.nan), ~np.isnan(p)
    q = p[ok]
    order = np.argsort(q, kind="stable")
    # k-th smallest times m/k, then the running minimum from the largest down (step-up)
    adj = np.minimum(1.0, np.minimum.accumulate((q[order] * len(q) / np.arange(1, len(q) + 1))[::-1])[::-1])
    res = np.empty(len(q))
    res[order] = adj
    out[ok] = res
    return out


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """Cliff's delta of b vs a, P(b > a) - P(b < a) over all pairs: +1 when every b beats every a."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return np.nan
    return float(np.sign(b[:, None] - a[None, :]).mean())


def quartiles(values: np.ndarray) -> tuple[float, float, float]:
    """(median, q1, q3) with numpy's default (linear) quantiles; NaNs when empty."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return (np.nan, np.nan, np.nan)
    q1, med, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return float(med), float(q1), float(q3)


def in_group(frame: pd.DataFrame, comparison: Comparison, group: Group) -> pd.Series:
    """Rows of `frame` that belong to one side of a comparison."""
    mask = pd.Series(False, index=frame.index)
    if group.values and comparison.tag in frame:
        mask |= frame[comparison.tag].astype(str).isin(group.values)
    if group.models:
        mask |= frame.model.isin(group.models)
    return mask


def per_model_dice(pipelines: pd.DataFrame) -> pd.Series:
    """Per-model mean held-out Dice: the mean over the model's pipelines (repeats) that have one."""
    have = pipelines[pipelines.heldout_dice_mean.notna()]
    return have.groupby("model").heldout_dice_mean.mean()


def pooled(dice: Mapping[str, np.ndarray], run_ids) -> np.ndarray:
    """Every per-image score of the given runs."""
    parts = [dice[r] for r in run_ids if r in dice]
    return np.concatenate(parts) if parts else np.array([], dtype=float)


def cohort_tests(
    study: pd.DataFrame, dice: Mapping[str, np.ndarray], cohorts: Cohorts, alpha: float, use_bonferroni: bool
) -> pd.DataFrame:
    """Table 3 for every dataset and comparison: pooled per-image median (IQR), delta, U, p, r.

    The U test compares per-model mean held-out Dice (one value per model); medians and IQRs pool
    every per-image score of the group's pipelines. Pipelines without held-out Dice (never ran) are
    left out and counted in `left_out_a` / `left_out_b`.
    """
    rows = []
    for dataset in sorted(study.dataset.unique()):
        on = study[study.dataset == dataset]
        for comp in cohorts.comparisons:
            sides = {}
            for side, group in (("a", comp.a), ("b", comp.b)):
                members = on[in_group(on, comp, group)]
                scores = pooled(dice, members.run_id)
                if scores.size == 0:  # no per-image series: fall back to the pipelines' means
                    scores = members.heldout_dice_mean.dropna().to_numpy()
                sides[side] = (
                    per_model_dice(members),
                    quartiles(scores),
                    int(members.heldout_dice_mean.isna().sum()),
                    scores.size,
                )
            (ma, qa, la, ia), (mb, qb, lb, ib) = sides["a"], sides["b"]
            test = u_test(ma.to_numpy(), mb.to_numpy())
            rows.append(
                {
                    "dataset": dataset,
                    "comparison": comp.name,
                    "group_a": comp.a.label,
                    "group_b": comp.b.label,
                    "n_a": len(ma),
                    "n_b": len(mb),
                    "median_a": qa[0],
                    "q1_a": qa[1],
                    "q3_a": qa[2],
                    "median_b": qb[0],
                    "q1_b": qb[1],
                    "q3_b": qb[2],
                    "delta_median": qb[0] - qa[0],
                    "U": test.U if test else np.nan,
                    "p": test.p if test else np.nan,
                    "significant": False,
                    "effect_size": test.effect_size if test else np.nan,
                    "p_adjusted": np.nan,
                    "alpha": alpha,
                    "n_images_a": ia,
                    "n_images_b": ib,
                    "left_out_a": la,
                    "left_out_b": lb,
                    "models_a": ",".join(ma.index),
                    "models_b": ",".join(mb.index),
                }
            )
    out = pd.DataFrame(
        rows,
        columns=COHORT_TEST_COLUMNS
        + ["p_adjusted", "alpha", "n_images_a", "n_images_b", "left_out_a", "left_out_b", "models_a", "models_b"],
    )
    if out.empty:
        return out
    out["p_adjusted"] = bonferroni(out.p.to_numpy()) if use_bonferroni else out.p
    out["significant"] = (out.p_adjusted < alpha).astype(bool)
    return out


def variability_test(
    study: pd.DataFrame, val_loss_mean: Mapping[str, float], model_a: str, model_b: str
) -> pd.DataFrame:
    """Run-to-run: per dataset, U tests of model b vs a on per-repeat mean held-out Dice (b higher?) and
    per-repeat mean validation loss over epochs (b lower?), as in the paper's variability section."""
    rows = []
    val = pd.Series(val_loss_mean, dtype=float)
    for dataset in sorted(study.dataset.unique()):
        on = study[study.dataset == dataset]
        a, b = on[on.model == model_a], on[on.model == model_b]
        if len(a) < 2 or len(b) < 2:
            continue
        for what, alt, xa, xb in (
            ("mean held-out Dice", "greater", a.heldout_dice_mean, b.heldout_dice_mean),
            ("mean validation loss", "less", a.run_id.map(val), b.run_id.map(val)),
        ):
            test = u_test(xa.to_numpy(dtype=float), xb.to_numpy(dtype=float), alt)
            rows.append(
                {
                    "dataset": dataset,
                    "measure": what,
                    "model_a": model_a,
                    "model_b": model_b,
                    "alternative": f"{model_b} {'>' if alt == 'greater' else '<'} {model_a}",
                    "n_a": int(xa.notna().sum()),
                    "n_b": int(xb.notna().sum()),
                    "median_a": float(np.nanmedian(xa)) if xa.notna().any() else np.nan,
                    "median_b": float(np.nanmedian(xb)) if xb.notna().any() else np.nan,
                    "U": test.U if test else np.nan,
                    "p": test.p if test else np.nan,
                    "effect_size": test.effect_size if test else np.nan,
                }
            )
    return pd.DataFrame(rows)
