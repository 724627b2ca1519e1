"""What a pipeline root carries, built in one place for every writer: `generate`, `train`, the baseline and
the synthetic study that analysis tests and benchmarks use (so the two cannot drift apart)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def loop_metrics(
    errors: Mapping[str, int], fix_rounds: int, usage: Mapping[str, int], cost_usd: float, interventions: int
) -> dict[str, float]:
    """The conversation's summary: errors (total and by type), fix rounds, interventions, tokens, cost."""
    return {
        "errors_total": float(sum(errors.values())),
        "debug_iterations": float(fix_rounds),
        "interventions": float(interventions),
        "tokens_in": float(usage.get("tokens_in", 0)),
        "tokens_out": float(usage.get("tokens_out", 0)),
        "tokens_reasoning": float(usage.get("tokens_reasoning", 0)),
        "llm_calls": float(usage.get("calls", 0)),
        "cost_usd": float(cost_usd),
        **{f"errors.{kind}": float(n) for kind, n in errors.items()},
    }


def training_metrics(
    train_time_s: float,
    params_total: int | None = None,
    epochs_trained: int | None = None,
    own_test_dice_mean: float | None = None,
) -> dict[str, float]:
    """The training's summary on the root (absent values left out)."""
    values = {
        "train_time_s": train_time_s,
        "params_total": params_total,
        "epochs_trained": epochs_trained,
        "own_test_dice_mean": own_test_dice_mean,
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def heldout_metrics(dice: np.ndarray, iou: np.ndarray, hd95: np.ndarray) -> dict[str, float]:
    """The held-out summary the evaluation run and the root carry."""
    q1, median, q3 = np.percentile(dice, [25, 50, 75]) if len(dice) else (np.nan,) * 3
    return {
        "heldout_dice_mean": float(np.mean(dice)),
        "heldout_dice_median": float(median),
        "heldout_dice_q1": float(q1),
        "heldout_dice_q3": float(q3),
        "heldout_iou_mean": float(np.mean(iou)),
        "heldout_hd95_median": float(np.median(hd95)),
        "heldout_n": float(len(dice)),
    }


def compliance_metrics(items: Mapping[str, int]) -> dict[str, float]:
    """compliance.<item> (0/1) and compliance_score, the share met."""
    return {
        **{k: float(v) for k, v in items.items()},
        "compliance_score": sum(items.values()) / len(items) if items else 0.0,
    }


def choice_params(hyperparameters: Mapping[str, str], network: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tables 1-2 of one pipeline: what the code sets, then what the built network shows."""
    return {**{k: str(v) for k, v in hyperparameters.items()}, **{k: str(v) for k, v in (network or {}).items()}}
