"""Cost and time as results: pass@k, Pareto fronts, Dice per dollar and minute, and their bad inputs."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from llmseg_mlflow.analysis.efficiency import (
    BASELINE_LABEL,
    NO_BASELINE,
    NO_COST,
    efficiency_table,
    pareto_front,
    pass_at_k,
    pass_table,
)
from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.analysis.table import build_study
from tests.analysis.conftest import make_root


def _root(run_id: str, model: str, dice: float | None, cost: float | None, secs: float | None = 600, **tags) -> Root:
    measured = (("heldout_dice_mean", dice), ("cost_usd", cost), ("train_time_s", secs))
    return make_root(run_id, {k: v for k, v in measured if v is not None}, model=model, repeat=run_id[-1], **tags)


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of the n tries that hold at least one success."""
    tries = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(tries[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_pass_at_k_equals_brute_force_over_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)  # by hand: one success in four, one draw
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_pareto_front_on_a_hand_case():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 0.5, np.nan])
    dice = np.array([0.6, 0.8, 0.7, 0.8, 0.5, 0.99])
    # 0: cheapest at 0.6; 1: best Dice at 2; 2: dominated by 1 (same cost, lower Dice); 3: dominated by 1
    # (same Dice, costs more); 4: cheapest of all; 5: no cost -> not on the front.
    assert pareto_front(cost, dice).tolist() == [True, True, False, False, True, False]
    assert pareto_front(np.array([1.0, 1.0]), np.array([0.5, 0.5])).tolist() == [True, True]  # ties: both kept


def test_dice_per_dollar_counts_failures_as_spent_and_pass_at_k_per_criterion():
    roots = [
        _root("a1", "a", 0.8, 0.10),
        _root("a2", "a", 0.6, 0.10, secs=1200),
        _root("a3", "a", None, 0.20, secs=None, status="gave_up"),
        _root("b1", "b", 0.9, 1.0),
        _root("b2", "b", 0.5, 1.0),
        _root("n1", "nnunet", 0.7, None, secs=3000, baseline="true"),
    ]
    data = build_study(roots, {})
    table = efficiency_table(data).set_index("model")
    a = table.loc["a"]
    assert a.dice_per_usd == pytest.approx((0.8 + 0.6) / 0.4)  # 3.5 Dice per dollar, the failure's 0.20 spent
    assert a.dice_per_train_min == pytest.approx((0.8 + 0.6) / 30)  # 10 + 20 minutes trained and scored
    assert a.with_dice == 2 and a.pipelines == 3 and a.note == ""
    assert table.loc["b"].dice_per_usd == pytest.approx(0.7)
    # a: median cost 0.10, median Dice 0.7; b: 1.0 and 0.7 -> b is dominated.
    assert bool(a.pareto) and not bool(table.loc["b"].pareto)
    base = table.loc[BASELINE_LABEL]
    assert np.isnan(base.dice_per_usd) and base.train_min_median == pytest.approx(50) and not base.pareto
    passes = pass_table(data).set_index(["model", "criterion", "k"])
    assert passes.loc[("a", "runs", 1)].pass_at_k == pytest.approx(2 / 3)
    assert passes.loc[("a", "runs", 2)].pass_at_k == pytest.approx(1.0)
    assert passes.loc[("a", "beats_nnunet", 1)].pass_at_k == pytest.approx(1 / 3)  # only a1 (0.8 > 0.7)
    assert passes.loc[("b", "beats_nnunet", 2)].pass_at_k == pytest.approx(1.0)
    assert "nnunet" not in set(pass_table(data).model)


def test_no_cost_is_blank_with_a_note_and_no_baseline_leaves_beats_blank():
    data = build_study([_root("a1", "a", 0.8, 0.0), _root("a2", "a", 0.7, None), _root("b1", "b", 0.6, None)], {})
    table = efficiency_table(data).set_index("model")
    for model in ("a", "b"):
        assert np.isnan(table.loc[model].dice_per_usd) and NO_COST in table.loc[model].note
        assert np.isfinite(table.loc[model].dice_per_train_min)
        assert not table.loc[model].pareto
    passes = pass_table(data)
    beats = passes[passes.criterion == "beats_nnunet"]
    assert beats.pass_at_k.isna().all() and (beats.note == NO_BASELINE).all()
    assert passes[passes.criterion == "runs"].pass_at_k.notna().all()
    assert efficiency_table(build_study([], {})).empty and pass_table(build_study([], {})).empty
