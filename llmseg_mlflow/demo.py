"""The study in miniature: replay fixtures x synthetic datasets into a local store, offline, in minutes."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import mlflow
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from llmseg_mlflow.catalog.models import load_models
from llmseg_mlflow.generate import GenerateConfig, GenerateResult, run_generate
from llmseg_mlflow.tracking.runs import ensure_experiment

DEMO_DATASETS = ("synthetic-gray-suffix", "synthetic-rgb-folders")
DEMO_STUDY = "demo"


def demo_models() -> list[str]:
    """The replay fixtures of the catalog (never real LLMs)."""
    return [m.key for m in load_models().values() if m.fixture]


def run_demo(workdir: Path, *, unsafe_no_sandbox: bool = False, epochs: int | None = None,
             max_batches: int | None = None, progress: Callable[[str], None] = print) -> list[GenerateResult]:
    """Run every fixture on every demo dataset; data, mlflow.db and artifacts all live under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run -e demo` each pipeline is its own root
    ensure_experiment(MlflowClient(), DEMO_STUDY, artifact_location=(workdir / "artifacts").as_uri())
    jobs = [(m, d) for d in DEMO_DATASETS for m in demo_models()]
    results: list[tuple[str, str, GenerateResult, float]] = []
    bar = tqdm(jobs, desc="demo pipelines", unit="pipeline")
    for model, dataset in bar:
        bar.set_postfix_str(f"{model} on {dataset}")
        start = time.monotonic()
        cfg = GenerateConfig(model=model, dataset=dataset, study=DEMO_STUDY, epochs=epochs, max_batches=max_batches,
                             data_root=workdir / "data", work_root=workdir / "pipelines",
                             unsafe_no_sandbox=unsafe_no_sandbox, max_fix_rounds=3)
        result = run_generate(cfg, progress=lambda msg: bar.write(f"  {msg}"))
        results.append((model, dataset, result, time.monotonic() - start))
    progress(f"{'model':14} {'dataset':22} {'status':10} errors  minutes  run")
    for model, dataset, r, seconds in results:
        progress(f"{model:14} {dataset:22} {r.status:10} {r.errors_total:6d}  {seconds / 60:7.1f}  {r.run_id}")
    progress(f"open the runs: mlflow ui --backend-store-uri {uri} --port 5000  (then http://127.0.0.1:5000)")
    return [r for *_, r, _ in results]
