"""A generated pipeline as a model people use: logged model -> promote -> `llmseg predict`, in the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.generate import GenerateConfig, run_generate
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.analysis.test_report_browser import _chromium
from tests.replies import FILES, as_reply, write_replies
from tests.tracking.test_ui_browser import _page_text

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")
DATASET = "synthetic-gray-suffix"
STUDY = "t-models"


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmseg_mlflow.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def pipeline(mlflow_server, shared_home, tmp_path_factory):
    """One generated, trained and evaluated pipeline, and its held-out predictions as the evaluator made them."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mp.setenv("LLMSEG_HOME", str(shared_home))
    mlflow.set_tracking_uri(mlflow_server)
    data = ensure_prepared(get_dataset(DATASET), shared_home / "data")
    replies = write_replies(tmp_path_factory.mktemp("replies"), [as_reply(FILES)])
    result = run_generate(
        GenerateConfig(model=f"replay:{replies}", dataset=DATASET, study=STUDY, epochs=2, preflight=False)
    )
    client = MlflowClient()
    root = client.get_run(result.run_id)
    folder = tmp_path_factory.mktemp("evaluator")
    path = client.download_artifacts(root.data.tags["evaluation_run_id"], "heldout/predictions.npz", str(folder))
    with np.load(path) as npz:
        evaluator = {k: npz[k] for k in npz.files}
    yield root, data, evaluator
    mp.undo()


def test_the_trained_pipeline_is_a_logged_model_with_its_heldout_metrics(pipeline):
    root, data, _ = pipeline
    client = MlflowClient()
    model = client.get_logged_model(root.data.tags["logged_model_id"])
    training = client.search_runs(
        [root.info.experiment_id], f"tags.mlflow.parentRunId = '{root.info.run_id}' AND tags.kind = 'training'"
    )[0]
    assert model.status == "READY" and model.source_run_id == training.info.run_id
    assert model.tags["pipeline_run_id"] == root.info.run_id and model.tags["dataset"] == DATASET
    assert model.params["in_channels"] == "1" and model.params["data_digest"] == data.digest
    assert model.params["preprocessing"] in ("own", "generic") and model.params["output"] in ("logits", "probabilities")
    dice = {m.key: m.value for m in model.metrics}["heldout_dice_mean"]
    assert dice == pytest.approx(root.data.metrics["heldout_dice_mean"])
    assert {m.dataset_name for m in model.metrics} == {f"{DATASET}-heldout"}
    files = {f.path for f in client.list_logged_model_artifacts(model.model_id)}
    assert {"MLmodel", "input_example.json", "data"} <= files
    # Linked to the runs a user opens: the root's and the training run's "Logged models".
    for run_id in (root.info.run_id, training.info.run_id):
        assert model.model_id in [o.model_id for o in client.get_run(run_id).outputs.model_outputs]
    ranked = mlflow.search_logged_models(
        experiment_ids=[root.info.experiment_id],
        filter_string=f"tags.dataset = '{DATASET}'",
        order_by=[{"field_name": "metrics.heldout_dice_mean", "ascending": False}],
        output_format="list",
    )
    assert model.model_id in [m.model_id for m in ranked]


def test_promote_then_predict_gives_the_evaluators_masks_bit_for_bit(pipeline, tmp_path):
    root, data, evaluator = pipeline
    promoted = _cli("promote", "--study", STUDY, "--dataset", DATASET)
    assert promoted.returncode == 0, promoted.stderr
    line = json.loads(promoted.stdout.strip().splitlines()[-1])
    assert line["uri"] == f"models:/llmseg-{DATASET}@champion"
    version = MlflowClient().get_model_version_by_alias(f"llmseg-{DATASET}", "champion")
    assert version.tags["model_id"] == root.data.tags["logged_model_id"]
    assert version.tags["model"] == root.data.tags["model"] and float(version.tags["heldout_dice_mean"]) > 0

    images = data.spec.images_dir(data.heldout)  # the dataset's own folder: images with their masks beside
    out = tmp_path / "masks"
    done = _cli("predict", "--model", line["uri"], "--images", str(images), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"skipped {len(evaluator)} file(s) named like {DATASET}'s masks" in done.stderr
    assert f"wrote {len(evaluator)} mask(s)" in done.stderr and len(list(out.iterdir())) == len(evaluator)
    for name, mask in evaluator.items():
        written = np.asarray(Image.open(out / f"{name.rsplit('.', 1)[0]}.png"))
        assert set(np.unique(written)) <= {0, 255}
        np.testing.assert_array_equal(written // 255, mask, err_msg=name)


def test_pyfunc_predicts_in_the_sandbox_and_the_pytorch_flavor_loads_the_network(pipeline):
    root, data, evaluator = pipeline
    uri = f"models:/{root.data.tags['logged_model_id']}"
    img, _ = data.heldout_pairs()[0]
    image = np.asarray(Image.open(img))[None, ..., None]
    masks = mlflow.pyfunc.load_model(uri).predict(image)
    np.testing.assert_array_equal(masks[0], evaluator[img.name])
    import torch

    net = mlflow.pytorch.load_model(uri)  # runs the generated model.py in this process: trusted here, a test
    assert isinstance(net, torch.nn.Module)


def test_predict_refuses_an_empty_folder_and_images_of_another_channel_count(pipeline, tmp_path):
    root, _, _ = pipeline
    uri = f"models:/{root.data.tags['logged_model_id']}"
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _cli("predict", "--model", uri, "--images", str(empty), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "no images" in done.stderr
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(rgb / "a.png")
    done = _cli("predict", "--model", uri, "--images", str(rgb), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "has 3 channel(s)" in done.stderr and "takes 1" in done.stderr
    done = _cli(
        "predict", "--model", "models:/no-such-model@champion", "--images", str(rgb), "--out", str(tmp_path / "o")
    )
    assert done.returncode == 2 and "cannot load the model" in done.stderr


def test_the_pipeline_page_in_the_mlflow_ui_shows_its_logged_model_prompt_and_description(
    pipeline, mlflow_server, tmp_path
):
    root, _, _ = pipeline
    url = f"{mlflow_server}/#/experiments/{root.info.experiment_id}/runs/{root.info.run_id}"
    text = _page_text(_chromium(), url, tmp_path / "profile")
    model = MlflowClient().get_logged_model(root.data.tags["logged_model_id"])
    assert "Logged models (1)" in text and model.name in text, text[:200]
    assert any(t.startswith("llmseg-appendix-d (v") for t in text)  # "Registered prompts"
    assert f"{root.data.tags['model']} on {DATASET}, repeat 1: succeeded" in text  # the Description's title
