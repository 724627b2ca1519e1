"""Grouping bulk history points, the tidy table's Dice summary when a root logged only per-image scores,
and the boxplots' statistics."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection

from llmseg_mlflow.analysis import figures as fg
from llmseg_mlflow.analysis.cache import RunSeries
from llmseg_mlflow.analysis.fetch import Points, Root
from llmseg_mlflow.analysis.series import group_points
from llmseg_mlflow.analysis.table import IMAGE_DICE, build_study, summaries_need_series


def _root(run_id: str, metrics: dict[str, float]) -> Root:
    tags = {"kind": "pipeline", "model": "m", "dataset": "d", "repeat": "1", "year": "2025", "reasoning": "true"}
    return Root(run_id, f"m/d/{run_id}", "1", "FINISHED", 1, 2, tags, {}, metrics)


def test_points_group_by_run_with_steps_ascending_and_the_value_logged_last_winning():
    # run b was re-evaluated: index 0 logged again later (timestamp 9), index 1 twice at one timestamp
    points = Points.from_rows(
        ["b", "a", "b", "b", "a", "b", "b"],
        [1, 2, 0, 0, 1, 1, 2],
        [0.1, "NaN", 0.2, 0.8, 0.5, 0.3, 0.4],
        [5, 5, 5, 9, 5, 5, 5],
    )
    grouped = group_points(points)
    assert sorted(grouped) == ["a", "b"]
    steps, values = grouped["b"]
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [0.8, 0.3, 0.4]
    steps, values = grouped["a"]
    assert steps.tolist() == [1, 2] and values[0] == 0.5 and np.isnan(values[1])
    assert group_points(Points.concat([])) == {}


def test_a_root_without_a_dice_summary_gets_the_mean_of_its_per_image_scores():
    scores = np.array([0.2, 0.4, 0.9])
    summarised = _root("a", {"heldout_dice_mean": 0.7, IMAGE_DICE: 0.5})
    bare = _root("b", {IMAGE_DICE: 0.9})  # per-image scores logged, no summary metric
    assert not summaries_need_series([summarised]) and summaries_need_series([summarised, bare])
    series = {r.run_id: RunSeries("f", {IMAGE_DICE: (np.arange(3), scores)}) for r in (summarised, bare)}
    table = build_study([summarised, bare], series).pipelines.set_index("run_id")
    assert table.heldout_dice_mean["a"] == 0.7  # a logged summary is kept as logged
    assert table.heldout_dice_mean["b"] == pytest.approx(scores.mean())


def test_the_tables_columns_do_not_depend_on_the_order_runs_were_listed_in():
    # Stores list runs with equal start times in different orders; pipelines.csv must read the same.
    roots = [
        _root("a", {"errors.ValueError": 1, "errors_total": 1, "heldout_dice_mean": 0.5}),
        _root("b", {"errors.ImportError": 2, "errors_total": 2}),
        _root("c", {"errors.NameError": 1, "compliance_score": 0.9, "errors_total": 1}),
    ]
    forward = build_study(roots, {}).pipelines
    backward = build_study(roots[::-1], {}).pipelines
    assert list(forward.columns) == list(backward.columns)
    errors = [c for c in forward.columns if c.startswith("errors.")]
    assert errors == ["errors.ImportError", "errors.NameError", "errors.ValueError"]
    assert forward.set_index("run_id")["errors.ValueError"].to_dict() == {"a": 1, "b": 0, "c": 0}


def test_boxplots_draw_matplotlibs_quartiles_whiskers_and_medians_top_to_bottom(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(fg, "_save", lambda fig, path: drawn.append(fig))
    rng = np.random.default_rng(3)
    first, second = rng.random(40), np.r_[rng.random(39) * 0.2 + 0.4, 0.99]  # the second has an outlier
    fg.boxplot_figure([("first", first, fg.RED), ("second", second, fg.BLUE)], "t", tmp_path / "x.png")
    ax = drawn[0].axes[0]
    boxes = next(c for c in ax.collections if isinstance(c, PolyCollection))
    for path, values in zip(boxes.get_paths(), (first, second)):
        xs = path.vertices[:, 0]
        assert xs.min() == pytest.approx(np.percentile(values, 25)) and xs.max() == pytest.approx(
            np.percentile(values, 75)
        )
    medians = [c for c in ax.collections if isinstance(c, LineCollection)][-1]
    assert [seg[0, 0] for seg in medians.get_segments()] == pytest.approx([np.median(first), np.median(second)])
    by_height = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())))
    assert [label for _, label in by_height] == ["second", "first"]  # bottom to top: the first group on top
    fliers = ax.lines[0].get_xdata()
    assert 0.99 in fliers and len(fliers) == 1


def test_a_cohort_mean_curve_stops_where_most_of_its_pipelines_have_stopped():
    import numpy as np
    import pandas as pd

    from llmseg_mlflow.analysis.table import StudyData

    long = {"val_loss": (np.arange(1, 11), np.full(10, 1.0))}
    short = {"val_loss": (np.arange(1, 5), np.full(4, 3.0))}
    data = StudyData(pd.DataFrame(), pd.DataFrame(), {"a": short, "b": short, "c": long})
    x, mean, _, runs, n = data.mean_curve(["a", "b", "c"], min_share=0.5)
    assert runs == 3 and list(x) == [1, 2, 3, 4] and list(n) == [3, 3, 3, 3]  # epochs 5-10: one run of three
    assert np.allclose(mean, 7 / 3)
    x_all, mean_all, _, _, n_all = data.mean_curve(["a", "b", "c"])
    assert list(x_all) == list(range(1, 11)) and list(n_all[4:]) == [1] * 6 and mean_all[-1] == 1.0
