"""The demo: studies/demo.yaml swept into a local store under one folder, then the analysis report."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.demo import run_demo
from llmseg_mlflow.pipeline.sandbox import bwrap_path

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")


@pytest.mark.timeout(1200)  # the whole main job: 13 pipelines, 2 nnU-Net baselines, the report (~9 min here)
def test_demo_sweeps_the_demo_study_and_ends_with_the_report(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", overrides={"epochs": 1, "max_batches": 2}, baseline_budget=(1, 4),
                      progress=lines.append)
    assert (tmp_path / "demo" / "mlflow.db").exists() and (tmp_path / "demo" / "artifacts").is_dir()
    states = {r.state for r in result.summary.reports}
    assert states == {"done"}, [(r.job.label, r.state, r.reason) for r in result.summary.reports]
    assert "mlflow ui --backend-store-uri sqlite:///" in lines[-1]
    assert result.report is not None and result.report.name == "index.html" and result.report.exists()
    assert any(line == f"report: {result.report}" for line in lines)

    client = MlflowClient(result.tracking_uri)
    exp = client.get_experiment_by_name("demo")
    roots = client.search_runs([exp.experiment_id], "tags.kind = 'pipeline'")
    llm = [r for r in roots if r.data.tags.get("baseline") != "true" and "budget" not in r.data.tags]
    assert len(llm) == 4 * 2 + 1
    built = [r for r in llm if r.data.tags["status"] == "succeeded"]
    assert built and all(r.data.params.get("encoder_stages", "").isdigit() for r in built)  # Tables 1-2, network side  # 4 fixtures x 2 datasets, and a second repeat of one
    assert all(r.data.tags["status"] == "succeeded" and "heldout_dice_mean" in r.data.metrics for r in llm)
    cohorts = {(r.data.tags["year"], r.data.tags["reasoning"]) for r in llm}
    assert {("2024", "false"), ("2025", "true")} <= cohorts  # two sides for the cohort analysis
    buggy = [r for r in llm if r.data.metrics["errors_total"] > 0]
    assert buggy and all(r.data.metrics["debug_iterations"] == r.data.metrics["errors_total"] for r in buggy)
    baselines = [r for r in roots if r.data.tags.get("baseline") == "true"]
    assert {r.data.tags["dataset"] for r in baselines} == {"synthetic-gray-suffix", "synthetic-rgb-folders"}
    assert len([r for r in roots if r.data.tags.get("budget") == "3"]) == 3  # two models, one with 2 repeats
    assert client.search_runs([exp.experiment_id], "tags.kind = 'analysis'")

    # a second demo finds everything done and runs nothing again
    again = run_demo(tmp_path / "demo", overrides={"epochs": 1, "max_batches": 2}, baseline_budget=(1, 4),
                     analyze=False, progress=lines.append)
    assert {r.state for r in again.summary.reports} == {"skipped"}
