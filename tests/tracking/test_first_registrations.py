"""First registrations from parallel writers on a fresh server (sweep workers starting a new study): the
experiment, the prompt and the dataset inputs are each created once and every writer gets them. Runs on
sqlite and on PostgreSQL (tests/tracking/conftest.py), whose duplicate-key errors are worded differently."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.pipeline.prompt import register
from llmseg_mlflow.tracking.datasets import log_prepared
from llmseg_mlflow.tracking.runs import ensure_experiment

WRITERS = 8


def _all_at_once(fn: Callable[[int], object]) -> list:
    """fn(i) for each writer, released together by a barrier."""
    barrier = threading.Barrier(WRITERS)

    def go(i: int) -> object:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(WRITERS) as pool:
        return list(pool.map(go, range(WRITERS)))


def test_parallel_first_logs_of_a_dataset_all_succeed(tracking, shared_home):
    data = ensure_prepared(get_dataset("synthetic-gray-suffix"), shared_home / "data")
    client = MlflowClient()
    exp = client.create_experiment(f"t-inputs-{uuid.uuid4().hex[:8]}")
    runs = [client.create_run(exp).info.run_id for _ in range(WRITERS)]
    _all_at_once(lambda i: log_prepared(client, runs[i], data))
    for run_id in runs:
        names = sorted(d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs)
        assert names == ["synthetic-gray-suffix-heldout", "synthetic-gray-suffix-pool"]


def test_parallel_first_creations_of_an_experiment_give_one(tracking):
    name = f"t-new-study-{uuid.uuid4().hex[:8]}"
    ids = _all_at_once(lambda _: ensure_experiment(MlflowClient(), name))
    assert len(set(ids)) == 1 and MlflowClient().get_experiment(ids[0]).name == name


def test_parallel_first_registrations_of_the_prompt_give_one_version(tracking):
    name = f"t-prompt-{uuid.uuid4().hex[:8]}"
    got = _all_at_once(lambda _: register("Segment {{ dataset }}.", name=name))
    assert {(p.name, p.version) for p in got} == {(name, 1)}
