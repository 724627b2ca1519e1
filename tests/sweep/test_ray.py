"""The Ray executor on a local Ray instance, with the same jobs as the local executor test."""

from __future__ import annotations

import pytest

from llmseg_mlflow.pipeline.sandbox import bwrap_path
from llmseg_mlflow.sweep.run import SweepOptions, run_sweep
from llmseg_mlflow.sweep.study import load_study
from tests.sweep.conftest import SMALL_STUDY, write_study
from tests.sweep.test_local import check_small_study

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap"), pytest.mark.slow]


@pytest.fixture
def local_ray(monkeypatch):
    """A local Ray instance with 2 CPUs; nothing is downloaded."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_executor_runs_the_same_jobs(tracking, llmseg_home, replay_models, tmp_path, local_ray):
    from llmseg_mlflow.sweep.ray_executor import RayExecutor

    study = load_study(write_study(replay_models, "t-sweep-ray", SMALL_STUDY))
    lines: list[str] = []
    executor = RayExecutor()
    assert executor.gpus == 0 and "2 CPUs" in executor.describe()
    summary = run_sweep(
        study, SweepOptions(executor="ray", log_dir=tmp_path / "logs"), out=lines.append, executor=executor
    )
    check_small_study(summary, study.name, lines)
    assert ray.is_initialized()  # the instance the caller started is the caller's to shut down
