"""Dice, IoU and HD95 on shapes whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from llmseg_mlflow.evaluation.metrics import dice_iou, hd95, score_masks


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[top : top + side, left : left + side] = True
    return m


def _disc(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - size // 2
    return (yy**2 + xx**2) <= radius**2


def test_dice_and_iou_of_overlapping_squares():
    a, b = _square(20, 0, 0, 10), _square(20, 0, 5, 10)  # overlap 50 of 100 px each
    dice, iou = dice_iou(np.stack([a, a]), np.stack([b, a]))
    assert dice == pytest.approx([0.5, 1.0]) and iou == pytest.approx([50 / 150, 1.0])


def test_empty_cases_are_defined():
    empty, square = np.zeros((16, 16), bool), _square(16, 2, 2, 4)
    dice, iou = dice_iou(np.stack([empty, empty, square]), np.stack([empty, square, empty]))
    assert dice.tolist() == [1.0, 0.0, 0.0] and iou.tolist() == [1.0, 0.0, 0.0]
    assert hd95(empty, empty) == 0.0
    assert hd95(square, empty) == hd95(empty, square) == pytest.approx(np.hypot(16, 16))


def test_hd95_of_a_shifted_square_is_the_shift():
    assert hd95(_square(40, 10, 10, 12), _square(40, 10, 13, 12)) == pytest.approx(3.0)
    assert hd95(_square(40, 10, 10, 12), _square(40, 10, 10, 12)) == 0.0


def test_hd95_of_concentric_discs_is_the_radius_gap():
    assert hd95(_disc(101, 20), _disc(101, 30)) == pytest.approx(10.0, abs=1.0)


def test_hd95_ignores_the_worst_five_percent():
    gt = _square(200, 50, 50, 100)
    pred = gt.copy()
    pred[0, 0] = True  # one far-away false positive pixel: Hausdorff would be ~70, HD95 stays 0
    assert hd95(pred, gt) == 0.0


def test_score_masks_handles_mixed_sizes_and_refuses_mismatches():
    preds = [_square(10, 0, 0, 4), _square(20, 0, 0, 4)]
    scores = score_masks(["a.png", "b.png"], preds, [p.copy() for p in preds])
    assert scores.dice.tolist() == [1.0, 1.0] and scores.summary()["heldout_n"] == 2
    assert [r["image"] for r in scores.rows()] == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="resize to the ground truth"):
        score_masks(["a.png"], [_square(10, 0, 0, 4)], [_square(20, 0, 0, 4)])
