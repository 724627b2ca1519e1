"""`llmseg train --seeds K`: the same final code trained again with seeds, the variance between trainings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.config import TrainConfig
from llmseg_mlflow.generate import GenerateConfig, run_generate
from llmseg_mlflow.pipeline.seeding import seed_calls
from llmseg_mlflow.train import run_train
from tests.replies import FILES, as_reply, write_replies

DATASET = "synthetic-gray-suffix"
SELF_SEEDING = FILES["main.py"].replace("import torch\n", "import torch\ntorch.manual_seed(123)\n", 1)


def _generate(tmp_path, files: dict[str, str], study: str) -> str:
    replies = write_replies(tmp_path, [as_reply(files)])
    cfg = GenerateConfig(
        model=f"replay:{replies}",
        dataset=DATASET,
        study=study,
        epochs=1,
        max_batches=2,
        preflight=False,
        evaluate=False,
    )
    result = run_generate(cfg)
    assert result.status == "succeeded", result
    return result.run_id


def _loss(client: MlflowClient, run_id: str) -> list[float]:
    return [m.value for m in client.get_metric_history(run_id, "train_loss")]


def test_seeds_give_one_root_each_and_a_seed_repeats_its_training(tracking, llmseg_home, tmp_path):
    source = _generate(tmp_path, FILES, "t-seeds")
    cmd = [sys.executable, "-m", "llmseg_mlflow.cli", "train", "--run-id", source, "--seeds", "2", "--max-batches", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    client = MlflowClient()
    roots = [client.get_run(r["run_id"]) for r in results]
    assert [r.data.tags["seed"] for r in roots] == ["0", "1"]
    for root in roots:
        assert root.data.tags["seed_source"] == "harness" and root.data.tags["source_run"] == source
        assert "budget" not in root.data.tags and root.info.run_name.endswith(f"/s{root.data.tags['seed']}")
        assert "heldout_dice_mean" in root.data.metrics
    seed0, seed1 = (_loss(client, r.info.run_id) for r in roots)
    assert seed0 != seed1  # other initial weights and batch order
    again = run_train(TrainConfig(run_id=source, seed=0, max_batches=2, evaluate=False))
    assert _loss(client, again.run_id) == seed0  # Python, NumPy and torch seeded: the same training


def test_code_that_seeds_itself_is_recorded_as_such(tracking, llmseg_home, tmp_path):
    assert seed_calls({**FILES, "main.py": SELF_SEEDING}) == ["main.py:3 torch.manual_seed(123)"]
    source = _generate(tmp_path, {**FILES, "main.py": SELF_SEEDING}, "t-seeds-own")
    result = run_train(TrainConfig(run_id=source, seed=5, max_batches=2, evaluate=False))
    root = MlflowClient().get_run(result.run_id)
    assert root.data.tags["seed_source"] == "code" and root.data.params["seed"] == "5"
    assert "torch.manual_seed(123)" in root.data.params["code_seeds"]


def test_train_needs_a_budget_or_seeds(tracking, llmseg_home):
    from llmseg_mlflow.errors import UsageError

    with pytest.raises(UsageError, match="--epochs N .* or --seeds K"):
        run_train(TrainConfig(run_id="0" * 32))
