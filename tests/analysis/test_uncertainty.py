"""Uncertainty on the cohort tests and ranking stability (issue #17, items 2 and 5), each statistic against scipy
or a slow, obvious computation on data with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control, mannwhitneyu

from llmseg_mlflow.analysis import bootstrap, cohort_ci, ranking
from llmseg_mlflow.analysis.build import Context
from llmseg_mlflow.analysis.cache import RunCache
from llmseg_mlflow.analysis.config import AnalyzeConfig, load_cohorts
from llmseg_mlflow.analysis.outputs import Outputs
from llmseg_mlflow.analysis.report import write_report
from llmseg_mlflow.analysis.stats import benjamini_hochberg, cliffs_delta, cohort_tests, holm, u_test
from llmseg_mlflow.analysis.table import IMAGE_DICE, StudyData

SHIFT = 0.1


def test_holm_matches_a_hand_computation_and_bh_matches_scipy():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): x4, x3, x2, x1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    got = holm(p)
    assert got[[4, 0, 2, 1]] == pytest.approx([0.02, 0.03, 0.06, 0.06]) and np.isnan(got[3])
    assert holm(np.array([0.5, 0.6]))[1] == 1.0  # capped at 1
    ok = ~np.isnan(p)
    assert benjamini_hochberg(p)[ok] == pytest.approx(false_discovery_control(p[ok], method="bh"))
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 0.2, 30)
    assert benjamini_hochberg(q) == pytest.approx(false_discovery_control(q, method="bh"))
    assert holm(np.array([])).size == 0 and benjamini_hochberg(np.array([np.nan])).tolist() == [
        pytest.approx(np.nan, nan_ok=True)
    ]


def test_cliffs_delta_by_hand_equals_the_rank_biserial_r_of_the_u_test():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0])
    # b=2: +1 (vs 1), 0 (vs 2), -1 (vs 3); b=4: +1 three times -> 3/6
    assert cliffs_delta(a, b) == 0.5
    u_b = mannwhitneyu(b, a).statistic  # 4 wins + half a tie = 4.5
    u_a = len(a) * len(b) - u_b
    assert 1 - 2 * u_a / (len(a) * len(b)) == pytest.approx(0.5)  # the convention stated: + when b is higher
    assert u_test(a, b).effect_size == pytest.approx(cliffs_delta(a, b))
    assert np.isnan(cliffs_delta(np.array([]), b))


def test_cluster_medians_equal_the_median_of_each_resample_drawn_the_slow_way():
    rng = np.random.default_rng(4)
    units = [rng.uniform(0, 1, k) for k in (5, 8, 3, 8, 1)]
    units[3][:2] = units[0][:2]  # ties across units
    counts = bootstrap.resample_counts(np.random.default_rng(9), len(units), 300)
    idx = np.random.default_rng(9).integers(0, len(units), size=(300, len(units)))
    slow = [np.median(np.concatenate([units[i] for i in row])) for row in idx]
    assert bootstrap.cluster_medians(units, counts) == pytest.approx(slow)
    values = rng.uniform(0, 1, (3, 11))  # 3 repeats x 11 images (the units), one missing score
    values[1, 4] = np.nan
    images = [col[~np.isnan(col)] for col in values.T]
    counts = bootstrap.resample_counts(np.random.default_rng(2), 11, 200)
    idx = np.random.default_rng(2).integers(0, 11, size=(200, 11))
    slow = [np.nanmedian(values[:, row]) for row in idx]
    assert bootstrap.cluster_medians(images, counts) == pytest.approx(slow)


def _cohort_study(n_a: int = 8, n_b: int = 8, n_img: int = 30, small: int = 2):
    """Dataset d: 2024 models around 0.7, 2025 models the same plus SHIFT; `small` reasoning models only."""
    rng = np.random.default_rng(7)
    rows, dice = [], {}
    for k in range(n_a + n_b):
        year = "2024" if k < n_a else "2025"
        quality = rng.normal(0.7, 0.03) + (SHIFT if year == "2025" else 0)
        for rep in (1, 2):
            run = f"m{k}-{rep}"
            dice[run] = np.clip(quality + rng.normal(0, 0.05, n_img), 0, 1)
            reasoning = "true" if k >= n_a + n_b - small else "false"
            rows.append({"run_id": run, "dataset": "d", "model": f"m{k}", "year": year, "reasoning": reasoning})
    study = pd.DataFrame(rows)
    study["heldout_dice_mean"] = study.run_id.map(lambda r: float(np.mean(dice[r])))
    return study, dice


def test_cohort_ci_keeps_table_3_adds_columns_and_covers_a_known_shift():
    study, dice = _cohort_study()
    cohorts = load_cohorts(None)
    table = cohort_ci.cohort_table(study, dice, cohorts, 0.05, True, n_boot=1000)
    plain = cohort_tests(study, dice, cohorts, 0.05, True)
    pd.testing.assert_frame_equal(table[plain.columns], plain)  # Table 3's columns untouched, Bonferroni too
    assert list(table.columns) == [*plain.columns, *cohort_ci.CI_COLUMNS]
    year = table.set_index("comparison").loc["year"]
    assert year.note == "" and year.delta_ci_low < SHIFT < year.delta_ci_high and year.delta_ci_low > 0
    assert year.median_a_ci_low < year.median_a < year.median_a_ci_high
    assert year.median_b_ci_low < year.median_b < year.median_b_ci_high
    assert year.cliffs_delta == pytest.approx(year.effect_size) and year.effect_ci_low > 0
    assert year.effect_ci_low <= year.effect_size <= year.effect_ci_high <= 1
    assert table.p_holm.tolist() == pytest.approx(holm(table.p.to_numpy()).tolist())
    assert table.p_bh.tolist() == pytest.approx(false_discovery_control(table.p.to_numpy(), method="bh").tolist())
    again = cohort_ci.cohort_table(study, dice, cohorts, 0.05, True, n_boot=1000)
    pd.testing.assert_frame_equal(table, again)  # seeded


def test_a_cohort_too_small_for_a_bootstrap_says_so_and_gets_no_ci():
    study, dice = _cohort_study(small=2)  # 2 reasoning models
    reasoning = cohort_ci.cohort_table(study, dice, load_cohorts(None), 0.05, False).set_index("comparison")
    row = reasoning.loc["reasoning"]
    assert row.note == "n too small: reasoning has 2 model(s) with held-out Dice, no CI below 3"
    assert np.isnan([row.median_b_ci_low, row.delta_ci_low, row.effect_ci_low]).all()
    assert not np.isnan(row.median_a_ci_low) and not np.isnan(row.p)  # the test itself runs as before
    study.loc[study.year == "2025", "heldout_dice_mean"] = np.nan  # group b never ran
    gone = {r for r in study[study.year == "2025"].run_id}
    table = cohort_ci.cohort_table(
        study, {k: v for k, v in dice.items() if k not in gone}, load_cohorts(None), 0.05, False
    )
    year = table.set_index("comparison").loc["year"]
    assert year.note.startswith("n too small: no model of 2025 has held-out Dice, no test") and np.isnan(year.p)
    one = study[study.model.isin(["m0", "m15"])]  # one model a side
    row = cohort_ci.cohort_table(one, dice, load_cohorts(None), 0.05, False).iloc[0]
    assert "2024 has 1 model(s)" in row.note and np.isnan(row.median_a_ci_low)


def _rank_study(n_img: int = 40, extra: dict | None = None) -> StudyData:
    """Dataset d: `top` is far above the rest; `x` and `y` are the same model twice (ties in quality)."""
    rng = np.random.default_rng(3)
    hard = rng.uniform(-0.2, 0.0, n_img)  # image difficulty shared by every model
    quality = {"top": 0.95, "x": 0.7, "y": 0.7, "low": 0.5, **(extra or {})}
    rows, series = [], {}
    for model, q in quality.items():
        for rep in (1, 2):
            run = f"{model}-{rep}"
            v = q + hard + rng.normal(0, 0.03, n_img)
            series[run] = {IMAGE_DICE: (np.arange(n_img), v)}
            rows.append({"run_id": run, "role": "pipeline", "model": model, "repeat": rep, "dataset": "d"})
    rows.append({"run_id": "solo", "role": "pipeline", "model": "top", "repeat": 1, "dataset": "e"})
    series["solo"] = {IMAGE_DICE: (np.arange(n_img), np.full(n_img, 0.9))}
    rows.append({"run_id": "few", "role": "pipeline", "model": "top", "repeat": 1, "dataset": "f"})
    rows.append({"run_id": "few2", "role": "pipeline", "model": "x", "repeat": 1, "dataset": "f"})
    series["few"] = {IMAGE_DICE: (np.arange(4), np.full(4, 0.9))}
    series["few2"] = {IMAGE_DICE: (np.arange(9), np.full(9, 0.5))}  # 9 images, but only 4 scored by both
    rows.append({"run_id": "never", "role": "pipeline", "model": "gone", "repeat": 1, "dataset": "d"})
    frame = pd.DataFrame(rows).assign(is_baseline=False, year="2025", reasoning="true", heldout_dice_mean=0.7)
    return StudyData(frame, pd.DataFrame(), series)


def test_a_dominant_model_keeps_rank_one_and_twins_share_their_ranks():
    data = _rank_study()
    table, pairs, freqs = ranking.rank_stability(data, n_boot=1000)
    d = table[table.dataset == "d"].set_index("model")
    assert list(d.index) == ["top", *sorted(["x", "y"], key=lambda m: d.loc[m, "rank"]), "low"]  # never ran: no row
    assert d.loc["top", "rank"] == 1 and d.loc["top", "keep_rank"] >= 0.99 and d.loc["top", "rank_1"] >= 0.99
    assert d.loc["low", "keep_rank"] >= 0.99 and d.loc["top", "above_next"] >= 0.99
    assert 0.1 < d.loc["x", "rank_2"] < 0.9 and 0.1 < d.loc["y", "rank_2"] < 0.9  # twins swap
    assert d[[f"rank_{k}" for k in range(1, 5)]].sum(axis=1).tolist() == pytest.approx([1.0] * 4)
    assert (d.rank_ci_low <= d["rank"]).all() and (d["rank"] <= d.rank_ci_high).all()
    values = {m: np.concatenate([data.series[f"{m}-{r}"][IMAGE_DICE][1] for r in (1, 2)]) for m in d.index}
    assert d.median_dice.to_dict() == pytest.approx({m: np.median(v) for m, v in values.items()})
    pair = pairs[(pairs.model_a == "top") & (pairs.model_b == "low")].iloc[0]
    assert pair.a_above_b == 1.0 and pair.tie == 0 and pair.b_above_a == 0
    assert (pairs.a_above_b + pairs.tie + pairs.b_above_a).tolist() == pytest.approx([1.0] * len(pairs))
    assert list(freqs) == ["d"] and freqs["d"][1].shape == (4, 4)


def test_rank_frequencies_equal_ranking_each_resample_the_slow_way():
    data = _rank_study(n_img=12)
    table, _, _ = ranking.rank_stability(data, n_boot=200, seed=5)
    d = table[table.dataset == "d"].set_index("model")
    models = list(d.index)
    idx = np.random.default_rng(5).integers(0, 12, size=(200, 12))
    scores = {m: np.vstack([data.series[f"{m}-{r}"][IMAGE_DICE][1] for r in (1, 2)]) for m in models}
    med = np.array([[np.median(scores[m][:, row]) for m in models] for row in idx])
    rank = np.array([[1 + int((r > r[i]).sum()) for i in range(len(models))] for r in med])
    for i, m in enumerate(models):
        assert d.loc[m, "keep_rank"] == pytest.approx(np.mean(rank[:, i] == d.loc[m, "rank"]))


def test_a_dataset_too_small_to_rank_says_why():
    table, pairs, freqs = ranking.rank_stability(_rank_study(), n_boot=200)
    e = table[table.dataset == "e"].iloc[0]
    assert e.note == "n too small: one model with held-out Dice on e, nothing to rank" and np.isnan(e.keep_rank)
    f = table[table.dataset == "f"]
    assert len(f) == 2 and f.note.str.startswith("n too small: 4 image(s) scored by every model (9 held-out").all()
    assert f.keep_rank.isna().all() and set(pairs.dataset) == {"d"} and "f" not in freqs


def _context(tmp_path: Path, data: StudyData) -> Context:
    (tmp_path / "out").mkdir()
    out = Outputs(tmp_path / "out", RunCache(tmp_path / "cache"))
    cfg = AnalyzeConfig(output=tmp_path / "out", bootstrap_resamples=300)
    return Context(data, cfg, load_cohorts(None), out, None, RunCache(tmp_path / "cache"), tmp_path, lambda m: None)  # type: ignore[arg-type]


def test_the_report_has_the_ranking_section_and_the_new_cohort_columns_and_family(tmp_path):
    study, dice = _cohort_study()
    rows = study.assign(role="pipeline", is_baseline=False, repeat=study.run_id.str[-1].astype(int))
    data = StudyData(rows, pd.DataFrame(), {r: {IMAGE_DICE: (np.arange(len(v)), v)} for r, v in dice.items()})
    c = _context(tmp_path, data)
    ranking.section_ranking(c)
    cohort_ci.section_cohorts(c)
    c.out.finish()
    assert (c.out.folder / "figures" / "ranking_d.png").is_file()
    for name in ("ranking_stability", "ranking_pairs", "cohort_tests"):
        assert (c.out.folder / "tables" / f"{name}.xlsx").is_file()
    csv = pd.read_csv(c.out.folder / "cohort_tests.csv")
    assert list(csv.columns[-len(cohort_ci.CI_COLUMNS) :]) == cohort_ci.CI_COLUMNS
    html = write_report(c.out, "t", [], [], c.out.folder / "index.html").read_text()
    section = html.split('<section id="ranking">')[1].split("</section>")[0]
    assert 'id="table-ranking_stability"' in section and 'id="figure-ranking_d"' in section
    assert 'id="table-ranking_pairs"' in section
    cohorts = html.split('<section id="cohorts">')[1].split("</section>")[0]
    for col in ("delta_ci_low", "cliffs_delta", "effect_ci_high", "p_holm", "p_bh", "note"):
        assert f"<th>{col}</th>" in cohorts
    assert (
        "the family is this table&#x27;s 2 U test(s) that ran (1 dataset(s) x comparisons year, reasoning)" in cohorts
    )
    assert "n too small: reasoning has 2 model(s)" in cohorts
