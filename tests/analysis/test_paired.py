"""Paired comparison with nnU-Net (against scipy on data with a known answer) and the validation-loss figure's
baseline (issue #17, items 1 and 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from llmseg_mlflow.analysis import bootstrap, paired
from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.analysis.build import Context
from llmseg_mlflow.analysis.cache import RunCache
from llmseg_mlflow.analysis.config import AnalyzeConfig, load_cohorts
from llmseg_mlflow.analysis.outputs import Outputs
from llmseg_mlflow.analysis.report import write_report
from llmseg_mlflow.analysis.table import IMAGE_DICE, StudyData

N = 40
SHIFT = 0.05


def _study(n_base: int = N, baseline: bool = True, small: int = 3) -> StudyData:
    """Dataset d: `up` scores SHIFT above nnU-Net on every image (2 repeats), `same` is nnU-Net plus noise
    symmetric about 0, `few` has only `small` held-out images."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 0.9, N)
    noise = rng.normal(0, 0.05, N // 2)
    runs = {
        "up1": ("up", 1, "2025", "true", base + SHIFT + rng.normal(0, 0.01, N)),
        "up2": ("up", 2, "2025", "true", base + SHIFT + rng.normal(0, 0.01, N)),
        "same1": ("same", 1, "2024", "false", base + np.r_[noise, -noise]),  # no shift: differences symmetric
        "few1": ("few", 1, "2024", "false", base[:small] + 0.1),
    }
    rows = [
        {"run_id": r, "role": "pipeline", "is_baseline": False, "model": m, "repeat": k, "year": y, "reasoning": z}
        for r, (m, k, y, z, _) in runs.items()
    ]
    series = {r: {IMAGE_DICE: (np.arange(len(v)), v)} for r, (*_, v) in runs.items()}
    if baseline:
        rows.append({"run_id": "nn", "role": "baseline", "is_baseline": True, "model": "nnunet-v2", "repeat": 1})
        series["nn"] = {IMAGE_DICE: (np.arange(n_base), base[:n_base])}
    pipelines = pd.DataFrame(rows).assign(dataset="d", heldout_dice_mean=0.7)
    return StudyData(pipelines.fillna({"year": "", "reasoning": ""}), pd.DataFrame(), series)


def test_a_known_shift_is_found_with_scipys_wilcoxon_and_a_covering_ci_and_no_shift_is_not():
    data = _study()
    table, missing = paired.paired_table(data, load_cohorts(None))
    assert missing == []
    by = table.set_index(["level", "model", "group"])
    up = by.loc[("model", "up", "")]
    dice = {r: s[IMAGE_DICE][1] for r, s in data.series.items()}
    d = (dice["up1"] + dice["up2"]) / 2 - dice["nn"]  # the model's repeats averaged per image
    ref = wilcoxon(d)
    assert up.n_pairs == N and up.pipelines == 2
    assert up.p == pytest.approx(ref.pvalue) and up.W == pytest.approx(ref.statistic) and up.p < 1e-6
    assert up.median_diff == pytest.approx(np.median(d)) and up.ci_low < SHIFT < up.ci_high
    assert up.win_fraction == 1.0
    same = by.loc[("model", "same", "")]
    assert (
        same.p > 0.5
        and abs(same.median_diff) < 1e-9
        and same.ci_low < 0 < same.ci_high
        and 0.2 < same.win_fraction < 0.8
    )
    pipe = table[(table.level == "pipeline") & (table.run_id == "up1")].iloc[0]
    assert pipe.p == pytest.approx(wilcoxon(dice["up1"] - dice["nn"]).pvalue)
    reasoning = by.loc[("cohort", "", "reasoning")]  # only `up` is a reasoning model
    assert reasoning.median_diff == pytest.approx(up.median_diff) and reasoning.p == pytest.approx(up.p)


def test_too_few_pairs_give_no_test_and_say_why():
    table, _ = paired.paired_table(_study(), load_cohorts(None))
    few = table[(table.level == "model") & (table.model == "few")].iloc[0]
    assert few.n_pairs == 3 and np.isnan(few.p) and np.isnan(few.W) and np.isnan(few.ci_low)
    assert few.note.startswith("n too small: 3 image(s) scored by both (3 by the pipeline(s), 40 by nnU-Net)")
    assert few.median_diff == pytest.approx(0.1)
    # A baseline that scored only 4 images: every row is too small, including one with 40 images of its own.
    table, _ = paired.paired_table(_study(n_base=4), load_cohorts(None))
    assert table.note.str.startswith("n too small").all() and table.p.isna().all()


def test_bootstrap_is_the_plain_resampled_median_and_is_seeded():
    d = np.random.default_rng(3).normal(0.02, 0.1, 37)
    got = bootstrap.bootstrap_median_ci(d, n_boot=500, seed=7)
    pos = np.random.default_rng(7).integers(0, len(d), size=(500, len(d)))
    medians = np.median(np.sort(d)[pos], axis=1)  # one median per resample, the slow way
    assert got == pytest.approx(tuple(np.percentile(medians, [2.5, 97.5])))
    assert bootstrap.bootstrap_median_ci(d, n_boot=500, seed=7) == got


def test_batched_wilcoxon_equals_one_scipy_call_per_array():
    rng = np.random.default_rng(5)
    arrays = [rng.normal(0.01, 0.05, 20) for _ in range(3)]  # exact, batched
    arrays += [rng.normal(0.01, 0.05, 70) for _ in range(2)]  # normal method, batched
    arrays += [np.r_[rng.normal(0, 0.05, 12), 0.0, 0.0], np.r_[[0.1, 0.1, -0.1], rng.normal(0, 0.05, 9)]]  # zeros, ties
    arrays += [np.zeros(10)]
    got = paired.wilcoxon_tests(arrays)
    for d, (w, p) in zip(arrays[:-1], got[:-1]):
        ref = wilcoxon(d)
        assert (w, p) == pytest.approx((ref.statistic, ref.pvalue))
    assert got[-1] == (0.0, 1.0)


def _context(tmp_path: Path, data: StudyData) -> Context:
    (tmp_path / "out").mkdir()  # run_analyze makes it
    out = Outputs(tmp_path / "out", RunCache(tmp_path / "cache"))
    cfg = AnalyzeConfig(output=tmp_path / "out")
    return Context(data, cfg, load_cohorts(None), out, None, RunCache(tmp_path / "cache"), tmp_path, print)  # type: ignore[arg-type]


def test_the_report_has_the_paired_section_with_table_and_figure(tmp_path):
    c = _context(tmp_path, _study())
    paired.section_paired(c)
    c.out.finish()
    assert (c.out.folder / "figures" / "paired_baseline.png").is_file()
    for ext in ("csv", "xlsx", "md"):
        assert (c.out.folder / "tables" / f"paired_baseline.{ext}").is_file()
    html = write_report(c.out, "t", [], [], c.out.folder / "index.html").read_text()
    section = html.split('<section id="paired">')[1].split("</section>")[0]
    assert 'id="table-paired_baseline"' in section and 'id="figure-paired_baseline"' in section
    assert "n too small" in section


def test_a_study_without_nnunet_says_so_and_the_report_still_builds(tmp_path):
    c = _context(tmp_path, _study(baseline=False))
    paired.section_paired(c)
    c.out.finish()
    html = write_report(c.out, "t", [], [], c.out.folder / "index.html").read_text()
    section = html.split('<section id="paired">')[1].split("</section>")[0]
    assert "No nnU-Net baseline" in section and "on: d;" in section
    assert not (c.out.folder / "tables" / "paired_baseline.csv").exists()


def test_a_negative_baseline_loss_is_drawn_and_the_relative_panel_starts_at_one(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(fg, "_save", lambda fig, path: drawn.append(fig))
    x = np.arange(1, 21)
    panels = {
        "2024 models": [fg.Line("a", x, 0.05 + 0.6 * np.exp(-x / 5)), fg.Line("b", x, 0.2 + 0.5 * np.exp(-x / 8))],
        "2025 models": [fg.Line("c", x, 0.03 + 0.9 * np.exp(-x / 4))],
    }
    base = fg.Line("nnU-Net v2 (baseline)", x, -0.3 - 0.6 * (1 - np.exp(-x / 6)), fg.BASE)
    fg.curves_figure(panels, base, "validation loss", "t", tmp_path / "f.png")
    axes = drawn[0].axes
    assert len(axes) == 4  # two panels, each with its relative panel below
    for ax in axes[:2]:
        ax.figure.canvas.draw()
        lo, hi = ax.get_ylim()
        line = next(ln for ln in ax.get_lines() if ln.get_label() == base.label)
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.isfinite(y).all() and (lo <= y.min()) and (y.max() <= hi)
        assert ax.get_yscale() == "symlog"
        # finite in display space too: a log axis maps negative values to NaN
        assert np.isfinite(ax.transData.transform(np.c_[x, y])).all()
    for ax in axes[2:]:
        lines = [ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
        assert {ln.get_label() for ln in lines} >= {base.label}
        assert all(np.asarray(ln.get_ydata())[0] == pytest.approx(1.0) for ln in lines)
    # the baseline's relative curve still falls, as its loss does (y / y0 would rise)
    rel = next(ln for ln in axes[2].get_lines() if ln.get_label() == base.label)
    assert np.asarray(rel.get_ydata())[-1] < 1.0


def test_analyze_writes_the_paired_table_and_section_from_the_server(on_server, default_report):
    from tests.analysis.conftest import OFF_DISK

    report = default_report
    table = pd.read_csv(report.parent / "tables" / "paired_baseline.csv")
    off = table[table.dataset == OFF_DISK]
    # 3 known per-image scores per pipeline there: every row too small, none tested
    assert len(off) and off.note.str.startswith("n too small: 3 image(s)").all() and off.p.isna().all()
    written = {p.run_id for p in on_server.pipelines if p.dataset == OFF_DISK and p.image_dice}
    assert set(off[off.level == "pipeline"].run_id) == {
        p.run_id for p in on_server.pipelines if p.run_id in written and not p.baseline and p.budget is None
    }  # the pipeline that never ran has no row
    section = report.read_text().split('<section id="paired">')[1].split("</section>")[0]
    assert 'id="figure-paired_baseline"' in section and 'id="table-paired_baseline"' in section
