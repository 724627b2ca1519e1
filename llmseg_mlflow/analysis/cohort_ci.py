"""Uncertainty on the cohort tests (Table 3; issue #17, item 2): bootstrap CIs of the cohort medians, of their
delta and of the effect size, and Holm and Benjamini-Hochberg adjusted p over the table's tests.

The columns of stats.cohort_tests (the paper's Table 3) are left as they are; these are added after them.
The bootstrap resamples a group's models, the unit of the U test: a model's images are not independent draws
of its cohort, and resampling them would give intervals as narrow as the image count is large.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from llmseg_mlflow.analysis.bootstrap import LEVEL, N_BOOT, SEED, cluster_medians, percentile_ci, resample_counts
from llmseg_mlflow.analysis.config import Cohorts
from llmseg_mlflow.analysis.stats import (
    COHORT_TEST_COLUMNS,
    benjamini_hochberg,
    cliffs_delta,
    cohort_tests,
    holm,
    in_group,
    per_model_dice,
    pooled,
)

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

# Models per group for a bootstrap CI: 2 models allow only 3 distinct resamples (and 1 model a single one),
# whose spread is no interval.
MIN_UNITS = 3
CI_COLUMNS = [
    "median_a_ci_low",
    "median_a_ci_high",
    "median_b_ci_low",
    "median_b_ci_high",
    "delta_ci_low",
    "delta_ci_high",
    "cliffs_delta",
    "effect_ci_low",
    "effect_ci_high",
    "p_holm",
    "p_bh",
    "note",
]


def _units(members: pd.DataFrame, dice: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """A group's per-model mean Dice (what the U test compares) and each model's pooled per-image scores (what
    its median pools), as in stats.cohort_tests; without any per-image series, the pipelines' means."""
    means = per_model_dice(members).to_numpy(dtype=float)
    units = [u for u in (pooled(dice, g.run_id) for _, g in members.groupby("model")) if len(u)]
    if not units:
        units = [u for u in (g.heldout_dice_mean.dropna().to_numpy() for _, g in members.groupby("model")) if len(u)]
    return means, units


def _intervals(
    sides: list[tuple[str, np.ndarray, list[np.ndarray]]], n_boot: int, seed: int, level: float
) -> dict[str, float | str]:
    """One row's CIs and note; each resampled quantity has its own seeded stream, so a row's numbers do not
    depend on which of the others could be computed."""
    (la, ma, ua), (lb, mb, ub) = sides
    row: dict[str, float | str] = dict.fromkeys(CI_COLUMNS[:-3], np.nan)
    row["cliffs_delta"] = cliffs_delta(ma, mb)
    reasons = []
    for label, means, units in sides:
        if not len(means):
            reasons.append(f"no model of {label} has held-out Dice, no test")
        elif min(len(means), len(units)) < MIN_UNITS:
            reasons.append(f"{label} has {len(means)} model(s) with held-out Dice, no CI below {MIN_UNITS}")
    row["note"] = f"n too small: {'; '.join(reasons)}" if reasons else ""
    medians = {}
    for side, units, stream in (("a", ua, 0), ("b", ub, 1)):
        if len(units) >= MIN_UNITS:
            counts = resample_counts(np.random.default_rng([seed, stream]), len(units), n_boot)
            medians[side] = cluster_medians(units, counts)
            row[f"median_{side}_ci_low"], row[f"median_{side}_ci_high"] = percentile_ci(medians[side], level)
    if len(medians) == 2:  # the groups drawn independently of each other
        row["delta_ci_low"], row["delta_ci_high"] = percentile_ci(medians["b"] - medians["a"], level)
    if min(len(ma), len(mb)) >= MIN_UNITS:
        ca = resample_counts(np.random.default_rng([seed, 2]), len(ma), n_boot)
        cb = resample_counts(np.random.default_rng([seed, 3]), len(mb), n_boot)
        # Cliff's delta of each resample from the pairs' signs: drawn b model i and a model j weigh cb_i * ca_j.
        signs = np.sign(mb[:, None] - ma[None, :])
        deltas = np.einsum("ri,ij,rj->r", cb, signs, ca) / (len(ma) * len(mb))
        row["effect_ci_low"], row["effect_ci_high"] = percentile_ci(deltas, level)
    return {k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()}


def cohort_table(
    study: pd.DataFrame,
    dice: Mapping[str, np.ndarray],
    cohorts: Cohorts,
    alpha: float,
    use_bonferroni: bool,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> pd.DataFrame:
    """stats.cohort_tests (Table 3, unchanged) with CI_COLUMNS after its own columns."""
    tests = cohort_tests(study, dice, cohorts, alpha, use_bonferroni)
    if tests.empty:
        return tests.reindex(columns=[*tests.columns, *CI_COLUMNS])
    extra = []
    for dataset in sorted(study.dataset.unique()):  # the order of cohort_tests' rows
        on = study[study.dataset == dataset]
        for comp in cohorts.comparisons:
            sides = [(g.label, *_units(on[in_group(on, comp, g)], dice)) for g in (comp.a, comp.b)]
            extra.append({"dataset": dataset, "comparison": comp.name, **_intervals(sides, n_boot, seed, level)})
    out = tests.merge(pd.DataFrame(extra), on=["dataset", "comparison"], how="left", validate="one_to_one")
    # The family is every test of this table that ran (NaN p: a group without models, not a test).
    out["p_holm"], out["p_bh"] = holm(out.p.to_numpy()), benjamini_hochberg(out.p.to_numpy())
    return out[[*tests.columns, *CI_COLUMNS]]


def family_text(tests: pd.DataFrame) -> str:
    """The report's statement of which tests the adjusted p values are adjusted over."""
    ran = tests[tests.p.notna()]
    comparisons = ", ".join(dict.fromkeys(ran.comparison)) or "none"
    return (
        f"Multiple comparisons: the family is this table's {len(ran)} U test(s) that ran "
        f"({ran.dataset.nunique()} dataset(s) x comparisons {comparisons}). p_holm (Holm, family-wise error) and "
        "p_bh (Benjamini-Hochberg, false discovery rate) are adjusted over it, as Bonferroni's p_adjusted is with "
        "--bonferroni. Not in it: the paired Wilcoxon rows and the run-to-run U tests, whose p values are per row."
    )


def section_cohorts(c: Context) -> pd.DataFrame:
    """The report's Table 3: the U tests, their CIs and effect sizes, and the adjusted p values."""
    n_boot = c.cfg.bootstrap_resamples
    tests = cohort_table(c.study, c.data.dice_by_run, c.cohorts, c.cfg.alpha, c.cfg.bonferroni, n_boot)
    how = "Bonferroni-adjusted p (p_adjusted)" if c.cfg.bonferroni else "raw p"
    c.out.table(
        "cohort_tests",
        "Cohort comparisons per dataset (Table 3)",
        "cohorts",
        tests,
        f"One-sided Mann-Whitney U (b > a) on per-model mean held-out Dice; significant: {how} < "
        f"{c.cfg.alpha}. Bold rows are significant. effect_size: rank-biserial r = 1 - 2U_a/(n_a n_b) = "
        "2U/(n_a n_b) - 1 (U: group b's statistic; +1 when every b model beats every a model), equal by identity "
        "to Cliff's delta P(b > a) - P(b < a) (cliffs_delta, from the pairs: a tie counts half in U, zero in the "
        f"delta). CIs: {LEVEL:.0%} percentile bootstrap, {n_boot} resamples, seeded, of the group's models (the "
        "test's unit) drawn with replacement: median_*_ci pools the drawn models' per-image scores, delta_ci "
        "draws both groups independently, effect_ci is Cliff's delta (= r) of the drawn models' mean Dice. No CI "
        f"for a group of fewer than {MIN_UNITS} models (note). " + (family_text(tests) if not tests.empty else ""),
    )
    if not tests.empty:
        columns = [*COHORT_TEST_COLUMNS, "p_adjusted", "left_out_a", "left_out_b", *CI_COLUMNS]
        c.out.top_csv("cohort_tests.csv", tests[[col for col in columns if col in tests.columns]])
        for t in tests.itertuples():
            c.say(
                f"{t.dataset} {t.comparison}: {t.group_a} (n={t.n_a}) vs {t.group_b} (n={t.n_b}): "
                f"U={t.U:.4f} p={t.p:.4f} r={t.effect_size:.4f}" + (" significant" if t.significant else "")
            )
    return tests
