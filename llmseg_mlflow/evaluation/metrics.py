"""Per-image overlap and boundary metrics of binary masks: Dice, IoU, HD95 (pixels).

Empty cases are defined so every image gets a number (docs/evaluation.md):
- Dice and IoU are 1 when prediction and ground truth are both empty, 0 when only one is;
- HD95 is 0 when both are empty and the image diagonal (the largest possible distance) when only one is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from llmseg_mlflow.tracking.summary import heldout_metrics


def dice_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU of a batch of same-size masks, shape (N, H, W), in one vectorised pass."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    axes = tuple(range(1, pred.ndim))
    inter = np.logical_and(pred, gt).sum(axis=axes, dtype=np.int64)
    p, g = pred.sum(axis=axes, dtype=np.int64), gt.sum(axis=axes, dtype=np.int64)
    union = p + g - inter
    both_empty = (p + g) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(both_empty, 1.0, 2.0 * inter / np.maximum(p + g, 1))
        iou = np.where(both_empty, 1.0, inter / np.maximum(union, 1))
    return dice.astype(float), iou.astype(float)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: foreground pixels with a background 8-neighbour (or on the image border)."""
    eroded = ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=0)
    return mask & ~eroded


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """95th percentile of the symmetric boundary distances (MedPy's definition), in pixels."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    if not pred.any() and not gt.any():
        return 0.0
    if not pred.any() or not gt.any():
        return float(np.hypot(*gt.shape))
    sp, sg = _surface(pred), _surface(gt)
    # Distance of every pixel to the nearest boundary pixel of the other mask.
    to_gt = ndimage.distance_transform_edt(~sg)
    to_pred = ndimage.distance_transform_edt(~sp)
    distances = np.concatenate([to_gt[sp], to_pred[sg]])
    return float(np.percentile(distances, 95))


@dataclass(frozen=True)
class ImageScores:
    """Scores of a set of images, aligned with `names` (held-out order)."""

    names: list[str]
    dice: np.ndarray
    iou: np.ndarray
    hd95: np.ndarray
    gt_pixels: np.ndarray
    pred_pixels: np.ndarray

    def summary(self) -> dict[str, float]:
        """The metrics the evaluation run and the pipeline root carry."""
        return heldout_metrics(self.dice, self.iou, self.hd95)

    def rows(self) -> list[dict[str, object]]:
        """One dict per image: index, image, dice, iou, hd95, gt_pixels, pred_pixels."""
        return [
            {
                "index": i,
                "image": n,
                "dice": float(d),
                "iou": float(j),
                "hd95": float(h),
                "gt_pixels": int(g),
                "pred_pixels": int(p),
            }
            for i, (n, d, j, h, g, p) in enumerate(
                zip(self.names, self.dice, self.iou, self.hd95, self.gt_pixels, self.pred_pixels)
            )
        ]


def score_masks(names: list[str], preds: list[np.ndarray], gts: list[np.ndarray]) -> ImageScores:
    """Score predictions against ground truths (same order, each pair the same size)."""
    if len(preds) != len(gts) or len(names) != len(gts):
        raise ValueError(f"{len(names)} names, {len(preds)} predictions, {len(gts)} ground truths")
    for name, p, g in zip(names, preds, gts):
        if p.shape != g.shape:
            raise ValueError(
                f"{name}: prediction {p.shape} vs ground truth {g.shape}; resize to the ground truth first"
            )
    n = len(gts)
    dice, iou = np.zeros(n), np.zeros(n)
    # Group same-size images so Dice/IoU run as one array operation per size.
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(gts):
        by_shape.setdefault(g.shape, []).append(i)
    for idx in by_shape.values():
        d, j = dice_iou(np.stack([preds[i] for i in idx]), np.stack([gts[i] for i in idx]))
        dice[idx], iou[idx] = d, j
    return ImageScores(
        names=list(names),
        dice=dice,
        iou=iou,
        hd95=np.array([hd95(p, g) for p, g in zip(preds, gts)], dtype=float),
        gt_pixels=np.array([int(g.astype(bool).sum()) for g in gts]),
        pred_pixels=np.array([int(p.astype(bool).sum()) for p in preds]),
    )
