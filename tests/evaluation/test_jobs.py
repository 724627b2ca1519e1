"""Evaluation as users meet it: after `generate`, `llmseg evaluate --run-id`, `llmseg train --run-id --epochs`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.generate import GenerateConfig, run_generate
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.replies import FILES, as_reply, write_replies

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")
DATASET = "synthetic-gray-suffix"


def _children(client, run_id, kind):
    exp = client.get_run(run_id).info.experiment_id
    return client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{run_id}' AND tags.kind = '{kind}'", order_by=["attributes.start_time ASC"]
    )


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmseg_mlflow.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def pipeline(mlflow_server, shared_home, tmp_path_factory):
    """One generated pipeline whose code reports whether it could see the held-out folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mp.setenv("LLMSEG_HOME", str(shared_home))
    data = ensure_prepared(get_dataset(DATASET), shared_home / "data")
    probe = f'\nprint("HELDOUT_VISIBLE", os.path.exists({str(data.heldout)!r}), os.path.exists("/data/heldout"))\n'
    main = FILES["main.py"].replace('if __name__ == "__main__":', probe + 'if __name__ == "__main__":')
    replies = write_replies(tmp_path_factory.mktemp("replies"), [as_reply({**FILES, "main.py": main})])
    result = run_generate(  # the evaluation is the point here, not the preflight
        GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study="t-eval", epochs=2, preflight=False)
    )
    yield result, data
    mp.undo()


def test_generate_ends_with_a_heldout_evaluation(pipeline, tracking, tmp_path):
    result, data = pipeline
    client = MlflowClient()
    root = client.get_run(result.run_id)
    (evaluation,) = _children(client, result.run_id, "evaluation")
    (training,) = _children(client, result.run_id, "training")
    assert result.status == "succeeded" and result.heldout_dice_mean == root.data.metrics["heldout_dice_mean"]
    assert root.data.tags["evaluation_run_id"] == evaluation.info.run_id
    tags, metrics = evaluation.data.tags, evaluation.data.metrics
    assert tags["eval_preprocessing"] == "own" and tags["eval_load"] == "whole_model"
    assert tags["eval_output"] == "logits" and tags["dataset"] == DATASET and tags["model"] == root.data.tags["model"]
    for key in (
        "heldout_dice_mean",
        "heldout_dice_median",
        "heldout_dice_q1",
        "heldout_dice_q3",
        "heldout_iou_mean",
        "heldout_hd95_median",
    ):
        assert metrics[key] == root.data.metrics[key]
    assert 0.0 <= metrics["heldout_dice_q1"] <= metrics["heldout_dice_median"] <= metrics["heldout_dice_q3"] <= 1.0
    # the generated code's own test Dice stays apart from the held-out one
    assert "own_test_dice_mean" in root.data.metrics and "own_test_dice_mean" not in metrics
    series = client.get_metric_history(result.run_id, "heldout_image_dice")
    assert sorted(m.step for m in series) == list(range(data.n_heldout))
    folder = client.download_artifacts(evaluation.info.run_id, "heldout", str(tmp_path))
    table = pd.read_csv(f"{folder}/per_image.csv")
    assert list(table.columns) == ["index", "image", "dice", "iou", "hd95", "gt_pixels", "pred_pixels"]
    assert table["image"].tolist() == [img.name for img, _ in data.heldout_pairs()]
    assert table["dice"].mean() == pytest.approx(metrics["heldout_dice_mean"])
    with np.load(f"{folder}/predictions.npz") as npz:
        assert sorted(npz.files) == sorted(table["image"]) and npz[table["image"][0]].shape == (64, 64)
    assert (tmp_path / "heldout" / "examples.png").stat().st_size > 1000
    # prompt compliance: this pipeline follows most of Appendix D but shows no prediction figure
    assert metrics["compliance.train_losses_xlsx"] == 1 and metrics["compliance.whole_model_saved"] == 1
    assert metrics["compliance.tqdm_used"] == 1 and metrics["compliance.split_indices_subset"] == 1
    assert metrics["compliance.prediction_figure_5x3"] == 0
    assert 0.5 < root.data.metrics["compliance_score"] < 1.0
    # the training run never saw the held-out files
    log = client.download_artifacts(training.info.run_id, "logs/full.stdout.log", str(tmp_path))
    assert "HELDOUT_VISIBLE False False" in open(log).read()


def test_evaluate_adds_a_new_evaluation_run(pipeline, tracking):
    result, _ = pipeline
    proc = _cli("evaluate", "--run-id", result.run_id, "--preprocessing", "generic")
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    client = MlflowClient()
    runs = _children(client, result.run_id, "evaluation")
    assert len(runs) == 2 and runs[-1].data.tags["eval_preprocessing"] == "generic"
    root = client.get_run(result.run_id)
    assert root.data.tags["evaluation_run_id"] == runs[-1].info.run_id
    assert line["heldout_dice_mean"] == pytest.approx(runs[-1].data.metrics["heldout_dice_mean"])
    assert f"run_uuid={runs[-1].info.run_id}" in root.data.tags["mlflow.note.content"]  # the new one's figure


def test_train_reruns_the_final_code_with_a_forced_budget(pipeline, tracking):
    result, _ = pipeline
    proc = _cli("train", "--run-id", result.run_id, "--epochs", "1", "--max-batches", "3")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    client = MlflowClient()
    new = client.get_run(out["run_id"])
    source = client.get_run(result.run_id)
    assert new.data.tags["budget"] == "1" and new.data.tags["source_run"] == result.run_id
    assert new.data.tags["status"] == "succeeded" and new.data.tags["kind"] == "pipeline"
    for tag in ("model", "dataset", "repeat", "study", "year", "reasoning"):
        assert new.data.tags[tag] == source.data.tags[tag]
    assert new.data.params["epochs"] == "3" and new.data.params["override.epochs"] == "1"  # LLM's choice kept
    assert [m.step for m in client.get_metric_history(new.info.run_id, "train_loss")] == [1]
    assert _children(client, new.info.run_id, "evaluation") and "heldout_dice_mean" in new.data.metrics
    link = f"[{result.run_id}](#/experiments/{source.info.experiment_id}/runs/{result.run_id}) (1 epoch)"
    assert f"- **Retrained from**: {link}" in new.data.tags["mlflow.note.content"]


def test_evaluate_refuses_a_run_that_is_not_a_pipeline(pipeline, tracking):
    result, _ = pipeline
    (training,) = _children(MlflowClient(), result.run_id, "training")
    proc = _cli("evaluate", "--run-id", training.info.run_id)
    assert proc.returncode == 2 and "not a pipeline root" in proc.stderr
