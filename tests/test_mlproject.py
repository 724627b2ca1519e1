"""The user's command: `mlflow run . -e generate --env-manager local`, against a real tracking server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.replies import FILES, as_reply, write_replies
from tests.subprocesses import finish

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")


def test_mlflow_run_generate_nests_the_pipeline_under_the_launch_run(tracking, llmseg_home, tmp_path):
    replies = write_replies(tmp_path / "replies", [as_reply(FILES)])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "generate",
            "--env-manager",
            "local",
            "--experiment-name",
            "t-mlproject",
            "-P",
            f"model=replay:{replies}",
            "-P",
            "dataset=synthetic-gray-suffix",
            "-P",
            "epochs=1",
            "-P",
            "max_batches=2",
            "-P",
            "study=t-mlproject",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient()
    exp = client.get_experiment_by_name("t-mlproject")
    roots = client.search_runs([exp.experiment_id], "tags.kind = 'pipeline'")
    assert len(roots) == 1
    root = roots[0]
    launch = client.get_run(root.data.tags["mlflow.parentRunId"])
    assert launch.data.tags["mlflow.project.entryPoint"] == "generate"  # the run `mlflow run` started
    assert launch.data.tags["kind"] == "launch" and launch.data.tags["pipeline_run_id"] == root.info.run_id
    assert launch.data.params["epochs"] == "1" and launch.info.status == "FINISHED"  # the request
    assert root.data.tags["status"] == "succeeded" and root.info.status == "FINISHED"
    assert root.data.params["epochs"] == "3" and root.data.params["override.epochs"] == "1"  # LLM's choice, override
    kids = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{root.info.run_id}'")
    assert sorted(r.data.tags["kind"] for r in kids) == ["evaluation", "generation", "training"]

    def mlflow_run(entry: str, *params: str) -> subprocess.Popen:
        args = [a for p in params for a in ("-P", p)]
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "run",
                str(ROOT),
                "-e",
                entry,
                "--env-manager",
                "local",
                "--experiment-name",
                "t-mlproject",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    # the user's re-scoring and constant-budget commands; both only read the pipeline, so they run side by side
    scoring = mlflow_run("evaluate", f"run_id={root.info.run_id}", "preprocessing=generic")
    training = mlflow_run("train", f"run_id={root.info.run_id}", "epochs=2", "max_batches=2")
    proc, trained = finish(scoring, 900), finish(training, 900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{root.info.run_id}' AND tags.kind = 'evaluation'"
    )
    assert sorted(r.data.tags["eval_preprocessing"] for r in evals) == ["generic", "own"]
    assert trained.returncode == 0, trained.stderr[-3000:]
    (rerun,) = client.search_runs([exp.experiment_id], "tags.kind = 'pipeline' AND tags.budget = '2'")
    assert rerun.data.tags["source_run"] == root.info.run_id and rerun.data.tags["status"] == "succeeded"
    assert client.get_run(rerun.data.tags["mlflow.parentRunId"]).data.tags["mlflow.project.entryPoint"] == "train"
