"""The study in miniature, offline: the packaged `studies/demo.yaml` (replay fixtures x synthetic data,
a budget rerun, nnU-Net baselines) swept into a local store under one folder, then analysed into an HTML report."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking.runs import ensure_experiment

DEMO_STUDY_FILE = Path(__file__).resolve().parent / "studies" / "demo.yaml"  # package data, like the prompt


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced: the sweep's job table and the report."""

    summary: Any  # sweep.run.SweepSummary
    report: Path | None
    tracking_uri: str


def run_demo(
    workdir: Path,
    *,
    unsafe_no_sandbox: bool = False,
    study_file: Path = DEMO_STUDY_FILE,
    overrides: dict[str, Any] | None = None,
    baseline_budget: tuple[int, int] | None = None,
    analyze: bool = True,
    progress: Callable[[str], None] = print,
) -> DemoResult:
    """Sweep the demo study into workdir (data, mlflow.db, artifacts, pipelines, report), then analyze it.

    `overrides` and `baseline_budget` (epochs, iterations) shrink the study further (tests use them).
    """
    from llmseg_mlflow.sweep.run import SweepOptions, run_sweep
    from llmseg_mlflow.sweep.study import load_study

    study = load_study(study_file)
    if overrides:
        study = dataclasses.replace(study, overrides={**study.overrides, **overrides})
    if baseline_budget:
        epochs, iterations = baseline_budget
        study = dataclasses.replace(
            study, baselines=dataclasses.replace(study.baselines, epochs=epochs, iterations=iterations)
        )
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the sweep's worker processes log here too
    os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run -e demo` each pipeline is its own root
    ensure_experiment(MlflowClient(), study.name, artifact_location=(workdir / "artifacts").as_uri())
    # One worker: a sqlite file is not a server; concurrent writers would wait on its lock.
    summary = run_sweep(
        study,
        SweepOptions(
            workers=1,
            data_root=workdir / "data",
            work_root=workdir / "pipelines",
            unsafe_no_sandbox=unsafe_no_sandbox,
            log_dir=workdir / "logs",
        ),
        out=progress,
    )
    report = None
    if analyze:
        from llmseg_mlflow.analysis import AnalyzeConfig, run_analyze

        report = run_analyze(
            AnalyzeConfig(
                study=study.name,
                output=workdir / "report",
                data_root=workdir / "data",
                cache_dir=workdir / "analysis-cache",
            ),
            progress=progress,
        )
    if study.promote:  # the champion the sweep registered, used on new images
        ds = study.datasets[0]
        progress(
            f"segment images with the best pipeline: MLFLOW_TRACKING_URI={uri} llmseg predict --model "
            f"models:/llmseg-{ds}@champion --images {workdir / 'data' / ds / 'heldout'} --out {workdir / 'masks'}"
        )
    exp = MlflowClient(uri).get_experiment_by_name(study.name)
    where = f"/#/experiments/{exp.experiment_id}/runs" if exp else ""  # MLflow 3 opens experiments on GenAI charts
    progress(f"open the runs: mlflow ui --backend-store-uri {uri} --port 5000  (then http://127.0.0.1:5000{where})")
    return DemoResult(summary, report, uri)
