"""`baseline` end to end: a real nnU-Net v2 on tiny synthetic data, logged to a real tracking server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from llmseg_mlflow.baseline.run import BaselineConfig, run_baseline
from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.config import PredictConfig
from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.evaluation.record import score_heldout
from llmseg_mlflow.predict import run_predict
from llmseg_mlflow.tracking.schema import COHORT_TAGS

# Tiny datasets: 20 pool + 5 held-out 64x64 images; the RGB one is stored as JPEG, which nnU-Net refuses.
DATASETS_YAML = """
datasets:
  bl-gray:
    title: baseline test, grayscale
    modality: synthetic
    colour: grayscale
    layout: suffix
    mask_suffix: _seg
    heldout_fraction: 0.2
    synthetic: {n: 25, size: 64, seed: 1}
  bl-rgb-jpeg:
    title: baseline test, RGB JPEG
    modality: synthetic
    colour: rgb
    layout: folders
    image_ext: jpg
    heldout_fraction: 0.2
    synthetic: {n: 25, size: 64, seed: 2}
"""
ROOT = Path(__file__).resolve().parents[2]
TINY = {"epochs": 3, "iterations": 10, "device": "cpu"}


@pytest.fixture
def datasets_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(DATASETS_YAML)
    monkeypatch.setenv("LLMSEG_DATASETS_FILE", str(path))
    return path


def _children(client: MlflowClient, root) -> list:
    return client.search_runs(
        [root.info.experiment_id],
        f"tags.mlflow.parentRunId = '{root.info.run_id}'",
        order_by=["attributes.start_time ASC"],
    )


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def _check_tree(client: MlflowClient, run_id: str, dataset: str, data, work: Path, tmp_path: Path) -> None:
    """Everything a baseline logs: the pipeline tree, curves, nnU-Net's files, the shared evaluation."""
    root = client.get_run(run_id)
    tags, params, metrics = root.data.tags, root.data.params, root.data.metrics
    assert root.info.status == "FINISHED" and tags["status"] == "succeeded"
    assert tags["kind"] == "pipeline" and tags["model"] == "nnunet-v2" and tags["baseline"] == "true"
    assert tags["year"] == "" and tags["reasoning"] == "" and tags["provider"] == "nnunet"
    assert tags["mlflow.runName"] == f"nnunet-v2/{dataset}/r1"
    assert params["epochs"] == "3" and params["iterations_per_epoch"] == "10" and params["val_iterations"] == "2"
    assert params["configuration"] == "2d" and params["fold"] == "0" and params["nnunet_version"].startswith("2.")
    assert params["data_digest"] == data.digest
    assert metrics["errors_total"] == 0 and metrics["params_total"] > 1e6 and metrics["train_time_s"] > 0
    # nnU-Net is a LoggedModel like every pipeline: its trained-model folder, its held-out metrics
    model = client.get_logged_model(tags["logged_model_id"])
    assert model.status == "READY" and model.model_type == "nnunet" and model.tags["baseline"] == "true"
    assert {m.key: m.value for m in model.metrics}["heldout_dice_mean"] == metrics["heldout_dice_mean"]
    weights = {f.path for f in client.list_logged_model_artifacts(model.model_id, "data/pipeline/weights")}
    assert {"data/pipeline/weights/plans.json", "data/pipeline/weights/dataset.json"} <= weights
    assert "data/pipeline/weights/fold_0/checkpoint_best.pth" in {
        f.path for f in client.list_logged_model_artifacts(model.model_id, "data/pipeline/weights/fold_0")
    }
    # `llmseg predict` with the logged model gives the masks the evaluation scored
    images = tmp_path / "predict-images"
    images.mkdir()
    for img, _ in data.heldout_pairs():
        shutil.copy(img, images / img.name)
    out = run_predict(PredictConfig(model=f"models:/{model.model_id}", images=images, out=tmp_path / "predict-out"))
    scored = client.download_artifacts(tags["evaluation_run_id"], "heldout/predictions.npz", str(tmp_path))
    with np.load(scored) as npz:
        for name in npz.files:
            written = np.asarray(Image.open(out / f"{Path(name).stem}.png"))
            np.testing.assert_array_equal(written // 255, npz[name], err_msg=name)
    # nnU-Net learns the task even in 3 x 10 steps (scored by the LLM pipelines' evaluator)
    assert metrics["heldout_dice_mean"] > 0.5 and metrics["heldout_n"] == 5
    assert {"nnunet/nnUNetPlans.json", "nnunet/dataset.json"} <= _artifacts(client, run_id, "nnunet")

    kids = _children(client, root)
    assert [r.data.tags["kind"] for r in kids] == ["training", "evaluation"]
    for run in [root, *kids]:
        assert set(COHORT_TAGS) <= set(run.data.tags) and run.data.tags["study"] == "t-baseline"
    training, evaluation = kids
    assert "system/cpu_utilization_percentage" in training.data.metrics  # sampled while nnU-Net's process ran
    assert tags["mlflow.note.content"].startswith(f"# nnunet-v2 on {dataset}, repeat 1: succeeded\n")
    assert "- **nnU-Net**: this run is the nnU-Net baseline of this split" in tags["mlflow.note.content"]
    for rid in (training.info.run_id, run_id):
        for key in ("train_loss", "val_loss", "val_dice"):
            assert [m.step for m in client.get_metric_history(rid, key)] == [1, 2, 3], key
    assert all(m.value < 0 for m in client.get_metric_history(training.info.run_id, "val_loss")[1:])  # Dice negated
    assert all(0 <= m.value <= 1 for m in client.get_metric_history(training.info.run_id, "val_dice"))
    logs = _artifacts(client, training.info.run_id, "logs")
    assert "logs/nnunet.log" in logs and any(p.startswith("logs/training_log_") for p in logs)
    plans = _artifacts(client, training.info.run_id, "nnunet")
    assert {"nnunet/nnUNetPlans.json", "nnunet/dataset.json", "nnunet/progress.png"} <= plans

    # the held-out scores are the shared evaluator's: re-score the logged masks with it
    ev = evaluation.data
    assert ev.tags["eval_preprocessing"] == "nnunet" and ev.tags["eval_checkpoint"] == "checkpoint_best.pth"
    assert tags["evaluation_run_id"] == evaluation.info.run_id
    npz = client.download_artifacts(evaluation.info.run_id, "heldout/predictions.npz", str(tmp_path))
    with np.load(npz) as saved:
        masks = {k: saved[k] for k in saved.files}
    assert set(masks) == {img.name for img, _ in data.heldout_pairs()}
    assert all(set(np.unique(m)) <= {0, 1} and m.shape == (64, 64) for m in masks.values())
    rescored = score_heldout(data, masks)
    assert rescored.summary()["heldout_dice_mean"] == pytest.approx(ev.metrics["heldout_dice_mean"])
    assert metrics["heldout_dice_mean"] == pytest.approx(ev.metrics["heldout_dice_mean"])
    table = pd.read_csv(client.download_artifacts(evaluation.info.run_id, "heldout/per_image.csv", str(tmp_path)))
    assert table["dice"].tolist() == pytest.approx(rescored.dice.tolist())

    # nnU-Net saw PNGs (JPEG converted), 0/1 labels, one file per image with the catalog's channels
    raw = next((work / run_id / "nnUNet_raw").iterdir())
    images = sorted((raw / "imagesTr").iterdir())
    assert len(images) == 20 and all(p.name.endswith("_0000.png") for p in images)
    assert Image.open(images[0]).mode == ("RGB" if data.spec.colour == "rgb" else "L")
    labels = np.stack([np.asarray(Image.open(p)) for p in (raw / "labelsTr").iterdir()])
    assert set(np.unique(labels)) == {0, 1}


@pytest.mark.slow
def test_run_baseline_on_rgb_jpeg_data(tracking, llmseg_home, datasets_file, tmp_path):
    """The API the sweep calls; RGB stays three channels, JPEG becomes PNG."""
    messages: list[str] = []
    cfg = BaselineConfig(
        dataset="bl-rgb-jpeg", study="t-baseline", data_root=tmp_path / "data", work_root=tmp_path / "work", **TINY
    )
    result = run_baseline(cfg, progress=messages.append)
    assert result.status == "succeeded" and result.errors_total == 0
    data = ensure_prepared(get_dataset("bl-rgb-jpeg"), tmp_path / "data")
    _check_tree(MlflowClient(), result.run_id, "bl-rgb-jpeg", data, tmp_path / "work", tmp_path)
    assert result.heldout_dice_mean == MlflowClient().get_run(result.run_id).data.metrics["heldout_dice_mean"]
    assert any("held-out Dice" in m for m in messages)


@pytest.mark.slow
def test_mlflow_run_baseline_on_gray_data(tracking, llmseg_home, datasets_file, tmp_path):
    """The user's command: `mlflow run . -e baseline --env-manager local -P dataset=... -P epochs=...`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "baseline",
            "--env-manager",
            "local",
            "--experiment-name",
            "t-baseline",
            "-P",
            "dataset=bl-gray",
            "-P",
            "epochs=3",
            "-P",
            "iterations=10",
            "-P",
            "study=t-baseline",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # our JSON line, then mlflow's own "View run" lines
    line = json.loads(next(t for t in reversed(proc.stdout.splitlines()) if t.startswith("{")))
    assert line["status"] == "succeeded" and line["heldout_dice_mean"] > 0.5
    client = MlflowClient()
    root = client.get_run(line["run_id"])
    launch = client.get_run(root.data.tags["mlflow.parentRunId"])  # the run `mlflow run` started
    assert launch.data.tags["mlflow.project.entryPoint"] == "baseline" and launch.data.tags["kind"] == "launch"
    assert launch.data.params["iterations"] in ("10", "10.0") and launch.info.status == "FINISHED"
    data = ensure_prepared(get_dataset("bl-gray"), llmseg_home / "data")
    _check_tree(client, line["run_id"], "bl-gray", data, llmseg_home / "baselines", tmp_path)


def _prepared(dataset: str, root: Path):
    return ensure_prepared(get_dataset(dataset), root)


def _runs_in(study: str) -> list:
    client = MlflowClient()
    exp = client.get_experiment_by_name(study)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_a_mask_that_is_not_a_mask_is_refused_before_any_run(tracking, llmseg_home, datasets_file, tmp_path):
    data = _prepared("bl-gray", tmp_path / "data")
    _, mask = data.pool_pairs()[3]
    grey = np.asarray(Image.open(mask)).copy()
    colour = np.stack([grey, grey // 2, np.zeros_like(grey)], axis=-1)  # e.g. an overlay saved over the mask
    Image.fromarray(colour).save(mask)
    cfg = BaselineConfig(
        dataset="bl-gray", study="t-baseline-bad", data_root=tmp_path / "data", work_root=tmp_path / "work", **TINY
    )
    with pytest.raises(UsageError, match=rf"cannot read mask .*{mask.name}.*ColourMaskError"):
        run_baseline(cfg)
    assert _runs_in("t-baseline-bad") == []
    assert not (tmp_path / "work").exists() or list((tmp_path / "work").iterdir()) == []  # staging removed


def test_a_missing_pool_or_unprepared_dataset_is_a_clear_error(tracking, llmseg_home, datasets_file, tmp_path):
    data = _prepared("bl-gray", tmp_path / "data")
    for path in sorted(data.pool.iterdir()):
        path.unlink()
    data.pool.rmdir()
    cfg = BaselineConfig(dataset="bl-gray", study="t-baseline-bad", data_root=tmp_path / "data", **TINY)
    with pytest.raises(UsageError, match=r"pool of dataset 'bl-gray' is missing.*datasets prepare bl-gray"):
        run_baseline(cfg)
    with pytest.raises(UsageError, match=r"'bagls' is not prepared.*llmseg datasets prepare bagls"):
        run_baseline(BaselineConfig(dataset="bagls", data_root=tmp_path / "empty", **TINY))
    with pytest.raises(UsageError, match="epochs >= 1"):
        run_baseline(BaselineConfig(dataset="bl-gray", epochs=0, iterations=10))
    assert _runs_in("t-baseline-bad") == []


def test_an_nnunet_crash_leaves_a_failed_root_with_the_error(
    tracking, llmseg_home, datasets_file, tmp_path, monkeypatch
):
    # nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA): 0 makes it crash (a known nnU-Net trap)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    cfg = BaselineConfig(
        dataset="bl-gray", study="t-baseline-crash", data_root=tmp_path / "data", work_root=tmp_path / "work", **TINY
    )
    result = run_baseline(cfg)
    client = MlflowClient()
    root = client.get_run(result.run_id)
    assert result.status == "failed_training" and root.info.status == "FAILED"
    assert root.data.tags["status"] == "failed_training" and root.data.tags["baseline"] == "true"
    assert "nnU-Net exited with code 1" in root.data.tags["error"]
    assert "RuntimeError" in root.data.tags["error"]  # nnU-Net's own last words
    assert root.data.params["epochs"] == "3"  # what was logged before the crash stays
    (training,) = _children(client, root)
    assert training.info.status == "FAILED" and "logs/nnunet.log" in _artifacts(client, training.info.run_id, "logs")
    assert "nnUNet_raw" not in os.environ  # nnU-Net ran in its own process
