"""Statistics and cohort definitions, against scipy computed here on the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from llmseg_mlflow.analysis.config import COHORTS_EXAMPLE, AnalyzeConfig, load_cohorts
from llmseg_mlflow.analysis.stats import bonferroni, cohort_tests, u_test
from llmseg_mlflow.config import ConfigError
from llmseg_mlflow.errors import UsageError


def test_u_test_is_scipys_one_sided_test_of_b_greater_with_rank_biserial_r():
    a, b = np.array([0.61, 0.70, 0.74, 0.80]), np.array([0.78, 0.85, 0.88, 0.90, 0.91])
    got = u_test(a, b)
    ref = mannwhitneyu(b, a, alternative="greater")
    assert got.U == pytest.approx(ref.statistic) and got.p == pytest.approx(ref.pvalue)
    # r from the pairs directly: P(b > a) - P(b < a)
    pairs = np.sign(b[:, None] - a[None, :])
    assert got.effect_size == pytest.approx(pairs.mean())
    assert u_test(np.array([]), b) is None


def test_bonferroni_multiplies_by_the_tests_that_ran_and_caps_at_one():
    p = bonferroni(np.array([0.01, 0.2, np.nan, 0.5]))
    assert p[0] == pytest.approx(0.03) and p[1] == pytest.approx(0.6) and np.isnan(p[2]) and p[3] == 1.0


def test_cohort_tests_use_per_model_means_and_pool_images_for_medians():
    study = pd.DataFrame(
        {
            "run_id": ["r1", "r2", "r3", "r4", "r5", "r6"],
            "dataset": "d",
            "model": ["m1", "m1", "m2", "m3", "m4", "m5"],
            "year": ["2024", "2024", "2024", "2025", "2025", "2025"],
            "reasoning": ["false"] * 3 + ["true"] * 3,
            "heldout_dice_mean": [0.5, 0.7, 0.65, 0.8, 0.9, np.nan],
        }
    )
    images = pd.DataFrame(
        {
            "run_id": ["r1", "r1", "r2", "r3", "r4", "r5"],
            "index": [0, 1, 0, 0, 0, 0],
            "dice": [0.4, 0.6, 0.7, 0.65, 0.8, 0.9],
        }
    )
    dice = {r: g.dice.to_numpy() for r, g in images.groupby("run_id")}
    tests = cohort_tests(study, dice, load_cohorts(None), 0.05, False).set_index("comparison")
    year = tests.loc["year"]
    ref = mannwhitneyu([0.8, 0.9], [0.6, 0.65], alternative="greater")  # m1's repeats averaged: 0.6
    assert (year.n_a, year.n_b) == (2, 2) and year.left_out_b == 1
    assert year.U == pytest.approx(ref.statistic) and year.p == pytest.approx(ref.pvalue)
    assert year.median_a == pytest.approx(np.median([0.4, 0.6, 0.7, 0.65]))
    assert year.delta_median == pytest.approx(0.85 - np.median([0.4, 0.6, 0.7, 0.65]))


def test_cohorts_yaml_groups_by_values_or_models_and_rejects_bad_files(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "comparisons:\n  fam: {a: {label: gpt, models: [m1]}, b: {label: claude, models: [m2]}}\n"
        "  year: {tag: year, a: '2024', b: ['2025', '2026']}\nmodels:\n  m9: {year: 2025}\n"
    )
    c = load_cohorts(f)
    assert [x.name for x in c.comparisons] == ["fam", "year"]
    assert c.comparisons[0].b.models == ("m2",) and c.comparisons[1].b.values == ("2025", "2026")
    assert c.overrides == {"m9": {"year": "2025"}}
    f.write_text("comparisons:\n  year: {a: '2024'}\n")
    with pytest.raises(UsageError, match=r"c\.yaml has 1 problem\(s\):\n  comparisons\.year\.b: missing"):
        load_cohorts(f)
    with pytest.raises(ConfigError, match="alpha: expected a number between 0 and 1"):
        AnalyzeConfig(alpha=2)
    with pytest.raises(ConfigError, match="variability_models: expected two model keys"):
        AnalyzeConfig(variability_models=("m1",))
    cfg = AnalyzeConfig(output="out", cohorts_file=str(f), datasets=["d1"])  # text paths, a list of keys
    assert cfg.output == Path("out") and cfg.cohorts_file == f and cfg.datasets == ("d1",)


def test_a_bad_cohorts_group_is_named_with_the_forms_a_group_takes_and_the_example(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("comparisons:\n  fam: {a: {label: gpt, model: [m1]}, b: 1.5}\n  year: {a: [], b: '2025'}\n")
    with pytest.raises(UsageError) as info:
        load_cohorts(f)
    text = str(info.value)
    assert f"cohorts file {f} has 3 problem(s):" in text
    assert "comparisons.fam.a.model: unknown field (did you mean models?)" in text
    assert (
        "comparisons.fam.b: a group is a tag value, a list of values, or {label, values} / {label, models}; got 1.5"
        in text
    )
    assert "comparisons.year.a: a group is a tag value" in text and "names no values and no models" in text
    assert text.endswith(COHORTS_EXAMPLE)
