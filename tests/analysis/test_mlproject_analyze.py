"""The user's command: `mlflow run . -e analyze --env-manager local`, logging into the run it started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from tests.analysis.conftest import OFF_DISK

ROOT = Path(__file__).resolve().parents[2]


def test_mlflow_run_analyze_writes_the_report_and_logs_it_on_its_run(on_server, tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LLMSEG_HOME": str(tmp_path / "home"),
    }
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "analyze",
            "--env-manager",
            "local",
            "--experiment-name",
            "analysis-launch",
            "-P",
            f"study={on_server.name}",
            "-P",
            f"output={out}",
            "-P",
            f"datasets={OFF_DISK}",
            "-P",
            "bonferroni=true",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "index.html").is_file()
    tests = pd.read_csv(out / "cohort_tests.csv")
    assert set(tests.dataset) == {OFF_DISK} and (tests.p_adjusted >= tests.p).all()
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("analysis-launch").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["kind"] == "analysis"
    assert runs[0].data.tags["mlflow.project.entryPoint"] == "analyze" and runs[0].info.status == "FINISHED"
    assert {"index.html", "cohort_tests.csv"} <= {f.path for f in client.list_artifacts(runs[0].info.run_id)}
