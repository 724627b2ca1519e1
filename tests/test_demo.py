"""The demo: studies/demo.yaml swept into a local store under one folder, then the analysis report.

The packaged study's expansion is checked in-process; the sweep end to end runs a trimmed copy of it
(one dataset, a buggy 2024 and a reasoning 2025 fixture, a repeat, a budget rerun, a baseline): every
kind of job and the report, in about a third of the whole demo's time.
"""

from __future__ import annotations

from collections import Counter

import pytest
import yaml
from mlflow.tracking import MlflowClient

from llmseg_mlflow.demo import DEMO_STUDY_FILE, run_demo
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from llmseg_mlflow.sweep.jobs import expand
from llmseg_mlflow.sweep.study import load_study

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")
DATASET = "synthetic-gray-suffix"


def test_the_demo_study_expands_to_every_kind_of_job():
    jobs = expand(load_study(DEMO_STUDY_FILE))
    kinds = Counter(j.kind for j in jobs)
    # 4 fixtures x 2 datasets + a repeat; the repeated fixture's 2 pipelines x 2 seeds
    assert kinds == {"generate": 4 * 2 + 1, "budget": 3, "baseline": 2, "seed": 4, "refine": 1}
    assert {(j.model, j.repeat, j.seed) for j in jobs if j.kind == "seed"} == {
        ("demo-2025-a", r, s) for r in (1, 2) for s in (0, 1)
    }
    assert {j.dataset for j in jobs if j.kind == "baseline"} == {"synthetic-gray-suffix", "synthetic-rgb-folders"}
    assert {(j.model, j.repeat) for j in jobs if j.kind == "budget"} == {
        ("demo-2024-b", 1),
        ("demo-2025-a", 1),
        ("demo-2025-a", 2),
    }


def _trimmed_study(tmp_path):
    study = yaml.safe_load(DEMO_STUDY_FILE.read_text())
    study.update(
        models=["demo-2024-a", "demo-2025-a"],
        datasets=[DATASET],
        repeats={"default": 1, "per_model": {"demo-2025-a": {"count": 2, "datasets": [DATASET]}}},
        budget_reruns=[{"epochs": 3, "datasets": [DATASET], "models": ["demo-2025-a"]}],
    )
    study.pop("seeds")  # seeded retraining is a train job like the budget rerun; tests/test_train_seeds.py runs it
    study.pop("refine")  # a refine job is tests/test_refine.py's (demo-2024-b, whose second reply it is, is trimmed)
    path = tmp_path / "demo-trimmed.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.slow
@pytest.mark.timeout(900)  # 5 jobs (3 pipelines, a budget rerun, an nnU-Net baseline) and the report
def test_demo_sweeps_the_demo_study_and_ends_with_the_report(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lines: list[str] = []
    study = _trimmed_study(tmp_path)
    result = run_demo(
        tmp_path / "demo",
        study_file=study,
        overrides={"epochs": 1, "max_batches": 2, "preflight": False},  # a preflight would repeat that run
        baseline_budget=(1, 4),
        progress=lines.append,
    )
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
    assert len(llm) == 2 + 1  # two fixtures, and a second repeat of one
    built = [r for r in llm if r.data.tags["status"] == "succeeded"]
    assert built and all(r.data.params.get("encoder_stages", "").isdigit() for r in built)  # Tables 1-2, network side
    assert all(r.data.tags["status"] == "succeeded" and "heldout_dice_mean" in r.data.metrics for r in llm)
    cohorts = {(r.data.tags["year"], r.data.tags["reasoning"]) for r in llm}
    assert {("2024", "false"), ("2025", "true")} <= cohorts  # two sides for the cohort analysis
    buggy = [r for r in llm if r.data.metrics["errors_total"] > 0]
    assert buggy and all(r.data.metrics["debug_iterations"] == r.data.metrics["errors_total"] for r in buggy)
    baselines = [r for r in roots if r.data.tags.get("baseline") == "true"]
    assert {r.data.tags["dataset"] for r in baselines} == {DATASET}
    assert len([r for r in roots if r.data.tags.get("budget") == "3"]) == 2  # both repeats of the 2025 fixture
    assert client.search_runs([exp.experiment_id], "tags.kind = 'analysis'")
    # promote: true: the best LLM pipeline by held-out Dice is the registry's champion
    champion = client.get_model_version_by_alias(f"llmseg-{DATASET}", "champion")
    best = max(llm, key=lambda r: r.data.metrics["heldout_dice_mean"])
    assert float(champion.tags["heldout_dice_mean"]) == pytest.approx(best.data.metrics["heldout_dice_mean"], abs=1e-6)
    assert any(line.startswith(f"promote {DATASET}: models:/llmseg-{DATASET}@champion") for line in lines)

    # a second demo finds everything done and runs nothing again
    again = run_demo(
        tmp_path / "demo",
        study_file=study,
        overrides={"epochs": 1, "max_batches": 2, "preflight": False},
        baseline_budget=(1, 4),
        analyze=False,
        progress=lines.append,
    )
    assert {r.state for r in again.summary.reports} == {"skipped"}
