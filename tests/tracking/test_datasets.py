"""Dataset inputs: parallel pipelines logging the same new dataset all succeed and all link it."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.tracking.datasets import log_prepared


def test_parallel_first_logs_of_a_dataset_all_succeed(tracking, shared_home):
    data = ensure_prepared(get_dataset("synthetic-gray-suffix"), shared_home / "data")
    client = MlflowClient()
    exp = client.create_experiment(f"t-inputs-{uuid.uuid4().hex[:8]}")
    runs = [client.create_run(exp).info.run_id for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda run_id: log_prepared(client, run_id, data), runs))
    for run_id in runs:
        names = sorted(d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs)
        assert names == ["synthetic-gray-suffix-heldout", "synthetic-gray-suffix-pool"]
