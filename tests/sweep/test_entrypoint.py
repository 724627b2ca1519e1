"""`mlflow run . -e sweep`: every pipeline is a root in the study's experiment, not a child of the launch run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.sweep.conftest import write_study

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap"), pytest.mark.slow]


def _mlflow_run(study: Path, *params: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = [a for p in (f"study={study}", *params) for a in ("-P", p)]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "sweep",
            "--env-manager",
            "local",
            "--experiment-name",
            "t-sweep-launch",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def test_mlflow_run_sweep(tracking, llmseg_home, replay_models):
    study = write_study(
        replay_models,
        "t-sweep-mlproject",
        """\
models: [replay:fast]
datasets: [synthetic-gray-suffix]
overrides: {epochs: 1, max_batches: 2, preflight: false}
""",
    )
    dry = _mlflow_run(study, "dry_run=true")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "done: 0, to retry: 0, to run: 1" in dry.stdout
    assert MlflowClient().get_experiment_by_name("t-sweep-mlproject") is None  # a dry run writes nothing

    proc = _mlflow_run(study, "workers=1.0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done 1, skipped 0, failed 0" in proc.stdout
    client = MlflowClient()
    exp = client.get_experiment_by_name("t-sweep-mlproject")
    [root] = client.search_runs([exp.experiment_id], "tags.kind = 'pipeline'")
    assert root.data.tags["status"] == "succeeded" and "mlflow.parentRunId" not in root.data.tags
