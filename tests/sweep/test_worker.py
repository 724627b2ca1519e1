"""A worker refuses a dataset whose copy on its node is not the driver's (per-node data roots)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.paths import data_root
from llmseg_mlflow.sweep.jobs import Job
from llmseg_mlflow.sweep.run import SweepOptions, _Driver
from llmseg_mlflow.sweep.study import load_study
from llmseg_mlflow.sweep.worker import JobSpec, check_node_data, execute_job
from tests.sweep.conftest import write_study

DATASET = "synthetic-gray-suffix"


def _spec(tracking: str, tmp_path, digest: str | None) -> JobSpec:
    return JobSpec(
        job=Job("generate", "replay:fast", DATASET, 1),
        study="t-node-data",
        model_arg=str(tmp_path / "fast"),
        overrides={},
        env={"MLFLOW_TRACKING_URI": tracking},
        log_file=str(tmp_path / "job.log"),
        dataset_digest=digest,
    )


def test_a_node_whose_data_differs_from_the_drivers_stops_the_job_before_any_run(tracking, llmseg_home, tmp_path):
    ours = ensure_prepared(get_dataset(DATASET), data_root()).digest
    check_node_data(_spec(tracking, tmp_path, ours))  # the same data: nothing to say

    outcome = execute_job(_spec(tracking, tmp_path, "0" * 64))
    assert not outcome.ok and not outcome.retryable and outcome.run_id is None
    assert f"manifest digest {ours[:16]}, the sweep driver's copy 0000000000000000" in outcome.reason
    assert "Share one data root" in outcome.reason
    assert "DataMismatchError" in (tmp_path / "job.log").read_text()  # the job's log has the traceback
    assert MlflowClient().get_experiment_by_name("t-node-data") is None  # nothing was logged


def test_the_driver_sends_its_own_copys_digest_and_none_for_data_it_lacks(tracking, llmseg_home, tmp_path):
    ours = ensure_prepared(get_dataset(DATASET), data_root()).digest
    study = load_study(write_study(tmp_path, "t-digests", f"models: [demo-2024-a]\ndatasets: [{DATASET}, bagls]\n"))
    driver = _Driver(study, SweepOptions(log_dir=tmp_path), MlflowClient(), None, None, print)  # type: ignore[arg-type]
    assert driver.spec(Job("generate", "demo-2024-a", DATASET, 1), None).dataset_digest == ours
    assert driver.spec(Job("generate", "demo-2024-a", "bagls", 1), None).dataset_digest is None  # not prepared here
    assert driver.digest("no-such-dataset") is None  # its jobs fail with the catalog's own message
