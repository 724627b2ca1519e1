"""The qualitative grid (Figs. 6, 7): one hard held-out image per dataset, its ground truth, each model's mask.

Predictions come from `heldout/predictions.npz` of the evaluation run of one representative pipeline
per model (downloaded once, cached); the image and its ground truth from the prepared dataset on disk.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from llmseg_mlflow.analysis.cache import RunCache
from llmseg_mlflow.analysis.fetch import download, sibling_artifact_uri

PREDICTIONS = "heldout/predictions.npz"


def representatives(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model, the pipeline whose held-out Dice is the median of its repeats (lowest repeat on ties)."""
    have = frame[frame.heldout_dice_mean.notna() & (frame.evaluation_run_id != "")]
    dist = (have.heldout_dice_mean - have.groupby("model").heldout_dice_mean.transform("median")).abs()
    picked = have.assign(_d=dist).sort_values(["model", "_d", "repeat"], kind="stable").drop_duplicates("model")
    return picked.drop(columns="_d")


def hard_image(images: pd.DataFrame, run_ids: list[str]) -> int | None:
    """The held-out index with the lowest median Dice across the given pipelines (widest spread on ties)."""
    on = images[images.run_id.isin(run_ids)]
    if on.empty:
        return None
    g = on.groupby("index").dice
    table = pd.DataFrame({"median": g.median(), "spread": g.max() - g.min()}).reset_index()
    return int(table.sort_values(["median", "spread", "index"], ascending=[True, False, True]).iloc[0]["index"])


@dataclass(frozen=True)
class Truth:
    """The held-out image and its ground-truth mask, or why they are missing."""

    name: str | None
    image: np.ndarray | None
    mask: np.ndarray | None
    reason: str = ""


def load_truth(dataset: str, index: int, data_root: Path, catalog: dict | None = None) -> Truth:
    """The index-th held-out pair of the prepared dataset (natural order of names), if it is on disk.

    `catalog` is the dataset catalog when the caller already read it (one read for every dataset).
    """
    from PIL import Image

    from llmseg_mlflow.catalog.datasets import get_dataset
    from llmseg_mlflow.catalog.prepare import load_prepared

    try:
        spec = catalog[dataset] if catalog and dataset in catalog else get_dataset(dataset)
        prepared = load_prepared(spec, data_root)
    except Exception as exc:  # noqa: BLE001 - an unknown or broken dataset only leaves the image out
        return Truth(None, None, None, f"dataset {dataset!r} is not available ({exc})")
    if prepared is None:
        return Truth(None, None, None, f"dataset {dataset!r} is not prepared under {data_root}")
    pairs = prepared.heldout_pairs()
    if index >= len(pairs):
        return Truth(None, None, None, f"held-out index {index} is beyond the {len(pairs)} prepared images")
    img_path, mask_path = pairs[index]
    try:
        image = np.asarray(Image.open(img_path))
        mask = prepared.read_mask(mask_path)
    except (OSError, ValueError) as exc:
        return Truth(img_path.name, None, None, f"cannot read {img_path.name}: {exc}")
    return Truth(img_path.name, image, mask)


def _local(cache: RunCache, eval_run: str) -> Path | None:
    return next(iter(cache.artifact_dir(eval_run).rglob("predictions.npz")), None)


def prefetch(client: MlflowClient, cache: RunCache, reps: pd.DataFrame, threads: int = 16) -> None:
    """Download the predictions of the pipelines' evaluation runs not cached yet (they never change), in parallel.

    An evaluation run is a child of its root, in the root's experiment: its artifact URI follows from the
    root's, which spares the server a database lookup per download.
    """
    todo = {
        e: sibling_artifact_uri(uri, root, e)
        for root, e, uri in zip(reps.run_id, reps.evaluation_run_id, reps.artifact_uri)
        if e and _local(cache, e) is None
    }
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda e: download(client, e, PREDICTIONS, cache.artifact_dir(e), todo[e]), sorted(todo)))


def _prediction(cache: RunCache, eval_run: str, index: int, name: str | None) -> np.ndarray | None:
    found = _local(cache, eval_run)
    if found is None:
        return None
    with np.load(found) as npz:
        keys = list(npz.keys())
        if name is not None and name in keys:
            return npz[name]
        from llmseg_mlflow.catalog.sources import natural_key

        keys.sort(key=natural_key)  # the contract: index = natural order of the held-out file names
        return npz[keys[index]] if index < len(keys) else None


def predictions(cache: RunCache, reps: pd.DataFrame, index: int, name: str | None) -> dict[str, np.ndarray | None]:
    """{run_id: the mask the pipeline's latest evaluation predicted for that image} (None where `prefetch`
    found no predictions.npz)."""
    return {r: _prediction(cache, e, index, name) for r, e in zip(reps.run_id, reps.evaluation_run_id)}
