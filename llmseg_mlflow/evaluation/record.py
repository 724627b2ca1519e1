"""Score predicted held-out masks against the ground truth and log them as a `kind=evaluation` run.

Shared by every pipeline (LLM or nnU-Net): the same ground-truth reading, metrics and artifacts.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.evaluation.logged_model import PipelineModel
from llmseg_mlflow.evaluation.metrics import ImageScores, score_masks
from llmseg_mlflow.tracking.runs import RunLogger, RunTree
from llmseg_mlflow.tracking.schema import Kind

PER_IMAGE_SERIES = "heldout_image_dice"  # step = held-out index: analysis fetches it in bulk
N_EXAMPLES = 5


def score_heldout(data: PreparedDataset, predictions: Mapping[str, np.ndarray]) -> ImageScores:
    """Scores of one prediction per held-out image (key = image file name, any size-matched 0/1 array)."""
    pairs = data.heldout_pairs()
    missing = [img.name for img, _ in pairs if img.name not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} held-out images, e.g. {missing[:3]}")
    names = [img.name for img, _ in pairs]
    return score_masks(
        names, [np.asarray(predictions[n]).astype(bool) for n in names], [data.read_mask(m) for _, m in pairs]
    )


def examples_figure(
    data: PreparedDataset, scores: ImageScores, predictions: Mapping[str, np.ndarray], dest: Path, n: int = N_EXAMPLES
) -> Path:
    """Input, ground truth and prediction (with Dice) for the n hardest held-out images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = dict((img.name, (img, mask)) for img, mask in data.heldout_pairs())
    order = np.argsort(scores.dice, kind="stable")[:n]
    fig, axes = plt.subplots(len(order), 3, figsize=(7.5, 2.5 * len(order)), squeeze=False)
    for row, i in enumerate(order):
        name = scores.names[i]
        image, mask = pairs[name]
        panels = (np.asarray(Image.open(image)), data.read_mask(mask), predictions[name])
        titles = (name, "ground truth", f"prediction (Dice {scores.dice[i]:.3f})")
        for ax, panel, title in zip(axes[row], panels, titles):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(dest, dpi=80)
    plt.close(fig)
    return dest


def log_scores(
    run: RunLogger,
    data: PreparedDataset,
    scores: ImageScores,
    predictions: Mapping[str, np.ndarray],
    model: PipelineModel | None = None,
) -> None:
    """Summary metrics (the model's, when it is logged), the per-image series, table, masks and example
    figure on one run."""
    import pandas as pd

    if model is None:
        run.metrics(scores.summary())
    else:
        run.metrics(scores.summary(), model_id=model.model_id, dataset=model.dataset)
    run.curve(PER_IMAGE_SERIES, scores.dice.tolist(), first_step=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "heldout")
        folder.mkdir()
        pd.DataFrame(scores.rows()).to_csv(folder / "per_image.csv", index=False)
        np.savez_compressed(  # numpy's stub fears a key filling allow_pickle; the keys are image file names
            folder / "predictions.npz",
            **{n: np.asarray(predictions[n], dtype=np.uint8) for n in scores.names},  # type: ignore[arg-type]
        )
        examples_figure(data, scores, predictions, folder / "examples.png")
        run.artifact(folder, "heldout")


def log_evaluation(
    tree: RunTree,
    data: PreparedDataset,
    predictions: Mapping[str, np.ndarray],
    tags: Mapping[str, object],
    metrics: Mapping[str, float | None] | None = None,
    model: PipelineModel | None = None,
) -> ImageScores:
    """A new evaluation child with the scores; the root gets the summary and points to it."""
    start = time.monotonic()
    scores = score_heldout(data, predictions)
    with tree.child(Kind.EVALUATION, "evaluation", tags) as run:
        log_scores(run, data, scores, predictions, model)
        run.metrics({**(metrics or {}), "score_time_s": time.monotonic() - start})
    tree.root.metrics(scores.summary())
    tree.root.curve(PER_IMAGE_SERIES, scores.dice.tolist(), first_step=0)
    tree.root.tags({"evaluation_run_id": tree.children[-1]})
    return scores
