"""The demo: every replay fixture on both demo datasets, into a local store under the work folder."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.demo import DEMO_DATASETS, DEMO_STUDY, demo_models, run_demo
from llmseg_mlflow.pipeline.sandbox import bwrap_path

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")


def test_demo_runs_every_fixture_into_its_own_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lines: list[str] = []
    results = run_demo(tmp_path / "demo", epochs=1, max_batches=2, progress=lines.append)
    assert (tmp_path / "demo" / "mlflow.db").exists() and (tmp_path / "demo" / "artifacts").is_dir()
    assert len(results) == len(demo_models()) * len(DEMO_DATASETS) >= 6
    assert all(r.status == "succeeded" for r in results), [(r.run_id, r.status) for r in results]
    assert any(r.errors_total > 0 for r in results)  # a fixture whose first reply has a genuine bug
    assert "mlflow ui --backend-store-uri sqlite:///" in lines[-1]

    client = MlflowClient(f"sqlite:///{tmp_path / 'demo' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(DEMO_STUDY)
    roots = client.search_runs([exp.experiment_id], "tags.kind = 'pipeline'")
    cohorts = {(r.data.tags["year"], r.data.tags["reasoning"]) for r in roots}
    assert {("2024", "false"), ("2025", "true")} <= cohorts  # two sides for the cohort analysis
    buggy = [r for r in roots if r.data.metrics["errors_total"] > 0]
    assert all(r.data.metrics["debug_iterations"] == r.data.metrics["errors_total"] for r in buggy)
