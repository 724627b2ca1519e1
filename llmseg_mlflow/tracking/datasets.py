"""The prepared data a pipeline used, logged as MLflow dataset inputs (pool for training, held-out for evaluation)."""

from __future__ import annotations

import json
import time
import warnings

import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.tracking.runs import lost_creation_race


def _split_frame(manifest: dict, split: str) -> pd.DataFrame:
    rows = [f for f in manifest.get("files", []) if f.get("split") == split]
    return pd.DataFrame(rows)


def log_prepared(client: MlflowClient, run_id: str, data: PreparedDataset) -> None:
    """Log the pool and held-out file lists (names and sha256) as dataset inputs with the manifest digest."""
    manifest = json.loads(data.manifest.read_text())
    inputs = []
    for split, context in (("pool", "training"), ("heldout", "evaluation")):
        frame = _split_frame(manifest, split)
        with warnings.catch_warnings():  # a local path "could be" two source types that are the same class
            warnings.simplefilter("ignore", UserWarning)
            ds = from_pandas(
                frame,
                source=str(data.root / split),
                name=f"{data.spec.key}-{split}",
                digest=f"{data.digest[:16]}-{split}",
            )
        inputs.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]))
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as exc:
        # Parallel sweep workers logging the same new dataset: the loser hits the store's unique key;
        # the dataset exists now, so the second call only links it to this run.
        if not lost_creation_race(exc):
            raise
        time.sleep(0.2)
        client.log_inputs(run_id, datasets=inputs)
