"""One model of the whole study (issue #17, item 3): do year and reasoning matter, across every dataset at once?

Table 3 tests each dataset apart; here every pipeline enters one linear mixed model, logit(Dice) ~ year +
reasoning with crossed random intercepts for dataset (some datasets are harder for everyone) and model (a
model's repeats are not independent). A rank-based check that assumes no normal distribution sits beside it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:  # build.py imports this module: the type alone, no import cycle at run time
    from llmseg_mlflow.analysis.build import Context

CLIP = (0.001, 0.999)  # logit of 0 or 1 is infinite; a failed-but-scored 0 Dice becomes logit(0.001) = -6.9
MIN_MODELS = 4  # year and reasoning are properties of models: fewer models cannot separate them from chance
MIN_DATASETS = 2  # a dataset random effect needs more than one level
LEVEL = 0.95
COEF_COLUMNS = ["term", "coef", "ci_low", "ci_high", "p", "scale", "n_pipelines", "n_models", "n_datasets", "note"]
RANK_COLUMNS = ["factor", "group_a", "group_b", "n_a", "n_b", "mean_rank_a", "mean_rank_b", "U", "p", "note"]
TRUST = (
    "When the two disagree, trust the rank check: year and reasoning are properties of models, so the evidence "
    "is the number of models, and with few of them the mixed model's normal random effects and Wald CIs cannot "
    "be checked and tend to be too narrow; the rank check uses only the order of models within each dataset."
)


def logit_dice(dice: np.ndarray) -> np.ndarray:
    """log(d / (1 - d)) of Dice clipped to [0.001, 0.999]: Dice is bounded, its logit is not."""
    d = np.clip(np.asarray(dice, dtype=float), *CLIP)
    return np.log(d / (1 - d))


def _design(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The pipelines with Dice, coded predictors, the terms that vary, and notes on those that do not."""
    f = frame[np.isfinite(frame.heldout_dice_mean.astype(float))].copy()
    f["y"] = logit_dice(f.heldout_dice_mean.astype(float).to_numpy())
    years = pd.to_numeric(f.year, errors="coerce")
    f = f[years.notna()].copy()
    # Years since the earliest: the intercept is the earliest year's non-reasoning level.
    f["year"] = years[years.notna()] - years.min()
    f["reasoning"] = (f.reasoning.astype(str).str.lower() == "true").astype(float)
    terms, notes = [], []
    for term in ("year", "reasoning"):
        if f.groupby("model")[term].first().nunique() > 1:
            terms.append(term)
        else:
            notes.append(f"every model has the same {term}: not estimated")
    return f, terms, notes


def _confounded(f: pd.DataFrame, terms: list[str]) -> bool:
    """Whether the second fixed effect is a copy (or the mirror) of the first, which makes the design singular."""
    if len(terms) < 2:
        return False
    a, b = f[terms[0]].astype(float), f[terms[1]].astype(float)
    return bool(a.nunique() == 2 and b.nunique() == 2 and abs(np.corrcoef(a, b)[0, 1]) > 0.999)


def mixed_model(frame: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Coefficients (logit scale) with Wald CIs of logit(Dice) ~ year + reasoning, random dataset and model."""
    import statsmodels.formula.api as smf  # imported here: only this section needs it, and it is slow to load

    f, terms, notes = _design(frame)
    n_models, n_datasets = f.model.nunique(), f.dataset.nunique()
    base = {"scale": "logit(Dice)", "n_pipelines": len(f), "n_models": n_models, "n_datasets": n_datasets}
    if n_models < MIN_MODELS or n_datasets < MIN_DATASETS or not terms:
        why = (
            f"too few to fit: {n_models} model(s) (need {MIN_MODELS}), {n_datasets} dataset(s) (need "
            f"{MIN_DATASETS})" + (f"; {'; '.join(notes)}" if notes else "")
        )
        return pd.DataFrame([{"term": "(not fitted)", **base, "note": why}], columns=COEF_COLUMNS)
    if _confounded(f, terms):
        notes.append(f"{terms[1]} equals {terms[0]} for every model here (confounded): only {terms[0]} is fitted")
        terms = terms[:1]
    # Crossed random intercepts in statsmodels: one group holding every row, each factor a variance component.
    model = smf.mixedlm(
        "y ~ " + " + ".join(terms),
        f.assign(one=1),
        groups="one",
        re_formula="0",
        vc_formula={"dataset": "0 + C(dataset)", "model": "0 + C(model)"},
    )
    try:
        with warnings.catch_warnings():  # convergence chatter goes to the note, not the console
            warnings.simplefilter("ignore")
            fit = model.fit(reml=True, method=["lbfgs", "powell"])
    except (np.linalg.LinAlgError, ValueError) as exc:  # e.g. a singular design on a tiny study
        why = f"the fit failed ({exc})" + (f"; {'; '.join(notes)}" if notes else "")
        return pd.DataFrame([{"term": "(not fitted)", **base, "note": why}], columns=COEF_COLUMNS)
    ci = fit.conf_int(alpha=1 - level)
    note = "; ".join(notes + ([] if fit.converged else ["did not converge: read with care"]))
    rows = [
        {
            "term": t,
            "coef": float(fit.fe_params[t]),
            "ci_low": float(ci.loc[t, 0]),
            "ci_high": float(ci.loc[t, 1]),
            "p": float(fit.pvalues[t]),
            **base,
            "note": note,
        }
        for t in fit.fe_params.index
    ]
    for name, var in zip(model.exog_vc.names, np.atleast_1d(fit.vcomp)):
        rows.append({"term": f"sd({name})", "coef": float(np.sqrt(max(var, 0))), **base, "note": "random effect SD"})
    rows.append({"term": "sd(residual)", "coef": float(np.sqrt(fit.scale)), **base, "note": "within model x dataset"})
    return pd.DataFrame(rows, columns=COEF_COLUMNS)


def model_rank_scores(frame: pd.DataFrame) -> pd.Series:
    """Per model: its mean over datasets of its within-dataset rank (0 = lowest, 1 = highest), repeats averaged."""
    f = frame[np.isfinite(frame.heldout_dice_mean.astype(float))]
    means = f.groupby(["dataset", "model"]).heldout_dice_mean.mean().astype(float).reset_index()
    ranks = means.groupby("dataset").heldout_dice_mean.rank(method="average")
    size = means.groupby("dataset").model.transform("count")
    # Scaled to [0, 1] so a dataset with more models does not weigh more; a dataset with one model says nothing.
    means["score"] = np.where(size > 1, (ranks - 1) / (size - 1).clip(lower=1), np.nan)
    return means.groupby("model").score.mean().dropna()


def rank_check(frame: pd.DataFrame) -> pd.DataFrame:
    """Two-sided Mann-Whitney U of the models' rank scores between year and reasoning groups (no normality)."""
    f, _, _ = _design(frame)
    scores = model_rank_scores(f)
    meta = f.groupby("model")[["year", "reasoning"]].first().reindex(scores.index)
    rows: list[dict[str, object]] = []
    for factor in ("year", "reasoning"):
        levels = sorted(meta[factor].unique())
        if len(levels) != 2:
            rows.append({"factor": factor, "note": f"{len(levels)} level(s) among the models: no test"})
            continue
        a, b = (scores[meta[factor] == v].to_numpy() for v in levels)
        row: dict[str, object] = {"factor": factor, "group_a": levels[0], "group_b": levels[1]}
        row.update(n_a=len(a), n_b=len(b), mean_rank_a=float(a.mean()), mean_rank_b=float(b.mean()))
        if min(len(a), len(b)) < 2:
            row["note"] = "n too small: a group has fewer than 2 models"
        else:
            res = stats.mannwhitneyu(b, a, alternative="two-sided")
            row.update(U=float(res.statistic), p=float(res.pvalue), note="")
        rows.append(row)
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def verdict(coefs: pd.DataFrame, ranks: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One line per factor: whether the mixed model and the rank check agree on its direction and significance."""
    lines = []
    for r in ranks.itertuples():
        got = coefs[coefs.term == r.factor]
        if got.empty or pd.isna(r.p):
            continue
        mm_sig, rk_sig = bool(got.p.iloc[0] < alpha), bool(r.p < alpha)
        same_sign = np.sign(got.coef.iloc[0]) == np.sign(r.mean_rank_b - r.mean_rank_a)
        agree = mm_sig == rk_sig and (same_sign or not mm_sig)
        lines.append(
            f"{r.factor}: mixed model {'significant' if mm_sig else 'not significant'} (p = {got.p.iloc[0]:.3g}), "
            f"rank check {'significant' if rk_sig else 'not significant'} (p = {r.p:.3g}): "
            + ("they agree." if agree else "they disagree; trust the rank check (see below).")
        )
    return lines


def section_study_model(c: Context) -> None:
    """The report's whole-study model: mixed-model coefficients, the rank check, and which to trust."""
    notes = c.out.section_notes.setdefault("study_model", [])
    coefs = mixed_model(c.study)
    if (coefs.term == "(not fitted)").any():
        notes.append(f"The mixed model was not fitted: {coefs.note.iloc[0]}.")
    ranks = rank_check(c.study)
    notes += verdict(coefs, ranks, c.cfg.alpha) + [TRUST]
    c.out.table(
        "study_model",
        "Mixed model of held-out Dice: logit(Dice) ~ year + reasoning, random dataset and model",
        "study_model",
        coefs,
        f"statsmodels MixedLM (REML), one row per pipeline with Dice; Dice clipped to [{CLIP[0]}, {CLIP[1]}] then "
        f"logit. year: per year after the earliest; reasoning: 1 for reasoning models. {LEVEL:.0%} Wald CIs. "
        "Random intercepts for dataset and model are crossed.",
    )
    c.out.table(
        "study_ranks",
        "Rank check: models' within-dataset ranks compared between years and reasoning",
        "study_model",
        ranks,
        "A model's score is its rank among the models on each dataset (repeats averaged; scaled 0 = lowest to 1 = "
        "highest) averaged over datasets; two-sided Mann-Whitney U (scipy) of group b vs a; n = models.",
    )
