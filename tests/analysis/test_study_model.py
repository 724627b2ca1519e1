"""The whole-study model: a known year effect recovered by MixedLM, the rank check, and too little data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from llmseg_mlflow.analysis.study_model import logit_dice, mixed_model, model_rank_scores, rank_check, verdict

YEAR_EFFECT, REASONING_EFFECT = 0.8, 0.3  # on the logit scale


def _simulated(n_models: int = 16, n_datasets: int = 5, repeats: int = 3, seed: int = 1) -> pd.DataFrame:
    """logit(Dice) = 0.5 + 0.8 year + 0.3 reasoning + dataset + model + noise, as pipelines."""
    rng = np.random.default_rng(seed)
    rows = []
    model_fx = rng.normal(0, 0.3, n_models)
    data_fx = rng.normal(0, 0.5, n_datasets)
    for m in range(n_models):
        year, reasoning = 2024 + m % 2, (m // 2) % 2
        for d in range(n_datasets):
            for r in range(repeats):
                y = 0.5 + YEAR_EFFECT * (year - 2024) + REASONING_EFFECT * reasoning + model_fx[m] + data_fx[d]
                y += rng.normal(0, 0.2)
                rows.append(
                    {
                        "model": f"m{m}",
                        "dataset": f"d{d}",
                        "repeat": r,
                        "year": str(year),
                        "reasoning": "true" if reasoning else "false",
                        "heldout_dice_mean": 1 / (1 + np.exp(-y)),
                    }
                )
    return pd.DataFrame(rows)


def test_logit_is_clipped():
    assert logit_dice(np.array([0.0, 0.5, 1.0])) == pytest.approx([np.log(0.001 / 0.999), 0.0, np.log(0.999 / 0.001)])


def test_mixed_model_recovers_a_known_year_effect_within_its_ci():
    coefs = mixed_model(_simulated()).set_index("term")
    year = coefs.loc["year"]
    assert year.ci_low < YEAR_EFFECT < year.ci_high
    assert year.p < 0.05 and year.n_models == 16 and year.n_datasets == 5 and year.n_pipelines == 240
    reasoning = coefs.loc["reasoning"]
    assert reasoning.ci_low < REASONING_EFFECT < reasoning.ci_high
    assert {"sd(dataset)", "sd(model)", "sd(residual)"} <= set(coefs.index)
    assert coefs.loc["sd(residual)"].coef == pytest.approx(0.2, abs=0.05)


def test_rank_scores_and_rank_check_equal_a_hand_computation():
    frame = _simulated(n_models=6, n_datasets=3)
    scores = model_rank_scores(frame)
    means = frame.groupby(["dataset", "model"]).heldout_dice_mean.mean().unstack("model")
    by_hand = ((means.rank(axis=1) - 1) / (means.shape[1] - 1)).mean()
    assert scores.sort_index().to_numpy() == pytest.approx(by_hand.sort_index().to_numpy())
    check = rank_check(frame).set_index("factor")
    year = check.loc["year"]
    meta = frame.groupby("model").year.first()
    expected = stats.mannwhitneyu(
        scores[meta[scores.index] == "2025"], scores[meta[scores.index] == "2024"], alternative="two-sided"
    )
    assert year.U == pytest.approx(expected.statistic) and year.p == pytest.approx(expected.pvalue)
    assert year.n_a == 3 and year.n_b == 3


def test_verdict_says_agree_or_disagree():
    coefs = pd.DataFrame([{"term": "year", "coef": 0.8, "p": 0.001}])
    ranks = pd.DataFrame([{"factor": "year", "mean_rank_a": 0.2, "mean_rank_b": 0.8, "p": 0.3}])
    assert "disagree" in verdict(coefs, ranks)[0]
    assert "agree." in verdict(coefs, ranks.assign(p=0.01))[0]


def test_too_few_models_or_datasets_are_not_fitted():
    few = mixed_model(_simulated(n_models=3))
    assert list(few.term) == ["(not fitted)"] and "too few to fit" in few.note.iloc[0]
    one_dataset = mixed_model(_simulated(n_datasets=1))
    assert "1 dataset(s)" in one_dataset.note.iloc[0]
    same_year = _simulated().assign(year="2025")
    coefs = mixed_model(same_year)
    assert "year" not in set(coefs.term) and "every model has the same year" in coefs.note.iloc[0]
    check = rank_check(same_year).set_index("factor")
    assert "no test" in check.loc["year"].note


def test_reasoning_confounded_with_year_fits_year_alone_as_on_the_demo():
    """The demo's four fixtures: the 2025 ones are the reasoning ones, so the design would be singular."""
    frame = _simulated(n_models=4, n_datasets=2, repeats=1)
    frame["reasoning"] = np.where(frame.year == "2025", "true", "false")
    coefs = mixed_model(frame)
    assert "reasoning" not in set(coefs.term) and "year" in set(coefs.term)
    assert "confounded" in coefs.note.iloc[0]
