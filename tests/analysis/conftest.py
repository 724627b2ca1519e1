"""A tiny synthetic study on the session's real tracking server, written once per module that asks for it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from llmseg_mlflow.analysis import AnalyzeConfig, run_analyze
from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.analysis.synthetic_study import SynthModel, SynthPipeline, SynthStudySpec, write_synthetic_study

ON_DISK = "synthetic-gray-suffix"  # prepared under LLMSEG_HOME/data: the grid shows image and ground truth
OFF_DISK = "ds-remote"  # not prepared anywhere: the grid shows predictions only
MODELS = (
    SynthModel("a24", 2024, False, 0.70),
    SynthModel("b24", 2024, False, 0.75),
    SynthModel("c25", 2025, True, 0.85),
    SynthModel("d25", 2025, True, 0.88),
    SynthModel("e25", 2025, False, 0.80),
)
# Known held-out Dice on OFF_DISK: per-image scores of each pipeline (model, repeat) -> scores.
KNOWN = {
    ("a24", 1): (0.52, 0.61, 0.58),
    ("a24", 2): (0.0, 0.0, 0.0),  # repeat 2 never ran (see FAILED)
    ("b24", 1): (0.71, 0.66, 0.74),
    ("b24", 2): (0.69, 0.72, 0.70),
    ("c25", 1): (0.88, 0.91, 0.79),
    ("c25", 2): (0.84, 0.86, 0.90),
    ("d25", 1): (0.93, 0.89, 0.95),
    ("d25", 2): (0.90, 0.92, 0.87),
    ("e25", 1): (0.64, 0.83, 0.77),
    ("e25", 2): (0.80, 0.78, 0.69),
}
FAILED = (("a24", OFF_DISK, 2),)
# Error counts "a source recorded" for two study models and one that is not in it (analysis/recorded.py).
RECORDED = "model,errors,source\na24,3,paper text\nc25,0,paper Fig. 2\nnot-in-study,13,paper text\n"


@dataclass
class Study:
    """The study as written, and where it lives."""

    name: str
    uri: str
    pipelines: list[SynthPipeline]
    data_root: Path


def _heldout(data_root: Path) -> list[tuple[str, np.ndarray]]:
    from llmseg_mlflow.catalog.datasets import get_dataset
    from llmseg_mlflow.catalog.prepare import ensure_prepared

    prepared = ensure_prepared(get_dataset(ON_DISK), data_root)
    return [(img.name, np.asarray(Image.open(mask)) > 127) for img, mask in prepared.heldout_pairs()]


def write_study(uri: str, home: Path, name: str = "analysis-study", threads: int = 4) -> Study:
    """5 models x 2 datasets x 2 repeats, a baseline, budget reruns, one pipeline that never ran; written with
    `threads` writers at once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("LLMSEG_HOME", str(home))
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        mlflow.set_tracking_uri(uri)
        data_root = home / "data"
        gts = _heldout(data_root)
        spec = SynthStudySpec(
            study=name,
            models=MODELS,
            datasets=(ON_DISK, OFF_DISK),
            repeats=2,
            epochs=12,
            n_heldout=len(gts),
            budget_epochs=15,
            failures=FAILED,
            gt_masks={ON_DISK: gts},
            dice_override={(m, OFF_DISK, r): v for (m, r), v in KNOWN.items()},
            threads=threads,
        )
        pipelines = write_synthetic_study(MlflowClient(), spec)
    return Study(name, uri, pipelines, data_root)


@pytest.fixture(scope="session")
def study(mlflow_server, shared_home) -> Study:
    """The study on the session's sqlite server."""
    return write_study(mlflow_server, shared_home)


@pytest.fixture
def on_server(study, monkeypatch, shared_home) -> Study:
    """The study's server and LLMSEG_HOME for one test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", study.uri)
    monkeypatch.setenv("LLMSEG_HOME", str(shared_home))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(study.uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return study


@pytest.fixture(scope="session")
def default_report(study, shared_home, tmp_path_factory) -> Path:
    """One analyze of the study with the defaults (no analysis run logged), for tests that only read its outputs;
    plus the recorded error counts of RECORDED (an option that adds one section and changes nothing else)."""
    return analyze_defaults(study, shared_home, tmp_path_factory.mktemp("default-report"))


def analyze_defaults(study: Study, home: Path, out: Path) -> Path:
    """Analyze the study with the defaults and RECORDED into out/r; the report's folder."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "recorded.csv").write_text(RECORDED)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", study.uri)
        mp.setenv("LLMSEG_HOME", str(home))
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mlflow.set_tracking_uri(study.uri)
        cfg = AnalyzeConfig(
            study=study.name,
            output=out / "r",
            data_root=study.data_root,
            cache_dir=out / "c",
            log_run=False,
            recorded_errors=out / "recorded.csv",
        )
        return run_analyze(cfg, progress=lambda _: None)


def make_root(run_id: str, metrics: dict[str, float], **tags: str) -> Root:
    """A pipeline root as analysis fetches it, for tests that build the tidy table without a server."""
    base = {"kind": "pipeline", "model": "m", "dataset": "d", "repeat": "1", "status": "succeeded"}
    return Root(
        run_id=run_id,
        run_name=run_id,
        experiment_id="1",
        status="FINISHED",
        start_time=0,
        end_time=0,
        artifact_uri="",
        tags={**base, **tags},
        params={},
        metrics=metrics,
    )
