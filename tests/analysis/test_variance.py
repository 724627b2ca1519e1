"""The split of run-to-run variability into new code (regenerations) and new training (seeds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.analysis.table import SEED, build_study
from llmseg_mlflow.analysis.variance import variance_sources
from tests.analysis.conftest import make_root


def _root(run_id: str, dice: float, repeat: int, **tags: str) -> Root:
    return make_root(run_id, {"heldout_dice_mean": dice}, repeat=str(repeat), **tags)


def test_code_and_training_variance_from_repeats_and_seeds():
    regenerations = [0.5, 0.7, 0.9]  # variance 0.04
    roots = [_root(f"r{i}", d, i + 1) for i, d in enumerate(regenerations)]
    # r0's code trained twice more (0.5 itself, 0.52, 0.48): variance 0.0004; r1's code once more.
    roots += [_root("s0", 0.52, 1, seed="0", source_run="r0"), _root("s1", 0.48, 1, seed="1", source_run="r0")]
    roots += [_root("s2", 0.72, 2, seed="0", source_run="r1")]  # with r1 itself: 0.7, 0.72 -> variance 0.0002
    data = build_study(roots, {})
    assert (data.pipelines.role == SEED).sum() == 3 and len(data.study()) == 3  # seeds are not new pipelines
    (row,) = variance_sources(data).to_dict("records")
    pooled = (0.0004 * 2 + 0.0002 * 1) / 3
    assert row["n_regenerations"] == 3 and row["n_seeded_codes"] == 2 and row["n_trainings"] == 5
    assert row["sd_regenerations"] == pytest.approx(0.2)
    assert row["sd_trainings"] == pytest.approx(np.sqrt(pooled))
    assert row["share_from_code"] == pytest.approx((0.04 - pooled) / 0.04)
    assert row["note"] == ""


def test_without_seeds_the_row_says_what_is_missing():
    data = build_study([_root("r0", 0.5, 1), _root("r1", 0.6, 2)], {})
    (row,) = variance_sources(data).to_dict("records")
    assert np.isnan(row["share_from_code"]) and "no code trained at least 2 times" in row["note"]
    assert isinstance(variance_sources(build_study([], {})), pd.DataFrame)
