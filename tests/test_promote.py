"""`promote` ranks a dataset's logged pipelines by held-out Dice only, and moves the alias to a new best."""

from __future__ import annotations

import uuid

import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.promote import promote

DIGEST = "d" * 64


def _pipeline(client: MlflowClient, exp: str, dataset: str, model: str, heldout: float, val: float) -> str:
    """A logged pipeline as the evaluation leaves it: a training run, a READY model, metrics linked to it."""
    run = client.create_run(exp, tags={"kind": "training", "model": model})
    logged = client.create_logged_model(
        exp,
        name=f"{model}-{dataset}",
        source_run_id=run.info.run_id,
        tags={"dataset": dataset, "model": model, "repeat": "1", "year": "2025"},
        params={"data_digest": DIGEST},
        model_type="llm-pipeline",
    )
    client.log_metric(run.info.run_id, "val_dice", val)  # what the LLM's own code printed and saw
    client.log_metric(run.info.run_id, "heldout_dice_mean", heldout, model_id=logged.model_id)
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.set_terminated(run.info.run_id)
    return logged.model_id


def test_promote_picks_heldout_dice_and_a_new_best_moves_the_alias_keeping_the_old_version(own_tracking):
    client = MlflowClient()
    study, dataset = f"promote-{uuid.uuid4().hex[:6]}", "synthetic-gray-suffix"
    exp = client.create_experiment(study)
    _pipeline(client, exp, dataset, "flatters-itself", heldout=0.60, val=0.99)
    honest = _pipeline(client, exp, dataset, "honest", heldout=0.80, val=0.50)
    _pipeline(client, exp, "other-dataset", "elsewhere", heldout=0.99, val=0.99)
    baseline = client.create_run(
        exp, tags={"kind": "pipeline", "baseline": "true", "status": "succeeded", "dataset": dataset}
    )
    client.log_param(baseline.info.run_id, "data_digest", DIGEST)
    client.log_metric(baseline.info.run_id, "heldout_dice_mean", 0.85)

    first = promote(study, dataset)
    assert (first.model_id, first.version, first.previous, first.new_version) == (honest, "1", None, True)
    version = client.get_model_version_by_alias(f"llmseg-{dataset}", "champion")
    assert version.tags["model"] == "honest" and float(version.tags["heldout_dice_mean"]) == pytest.approx(0.8)
    assert float(version.tags["nnunet_heldout_dice_mean"]) == pytest.approx(0.85)
    assert promote(study, dataset).new_version is False  # unchanged: no second version of the same model

    better = _pipeline(client, exp, dataset, "better", heldout=0.90, val=0.40)
    second = promote(study, dataset)
    assert (second.model_id, second.version, second.previous) == (better, "2", "1")
    assert client.get_model_version_by_alias(f"llmseg-{dataset}", "champion").version == "2"
    assert client.get_model_version(f"llmseg-{dataset}", "1").tags["model"] == "honest"  # kept


def test_promote_refuses_what_the_llm_saw_and_a_dataset_without_pipelines(own_tracking):
    client = MlflowClient()
    study = f"promote-{uuid.uuid4().hex[:6]}"
    exp = client.create_experiment(study)
    _pipeline(client, exp, "ds", "m", heldout=0.5, val=0.9)
    with pytest.raises(UsageError, match="not a held-out metric"):
        promote(study, "ds", by="val_dice")
    with pytest.raises(UsageError, match="no evaluated pipeline of dataset 'empty'"):
        promote(study, "empty")
    with pytest.raises(UsageError, match="no study 'nope'"):
        promote("nope", "ds")
