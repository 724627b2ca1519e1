"""`--training-slots`: every job of a local sweep gets the shared slot folder and count."""

from __future__ import annotations

from llmseg_mlflow.pipeline.slots import ENV
from llmseg_mlflow.sweep.run import SweepOptions, _job_env


def test_local_jobs_share_the_slots(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    env = _job_env(SweepOptions(training_slots=3, log_dir=tmp_path))
    assert env[ENV] == f"{tmp_path / 'training-slots'}:3:0,1" and (tmp_path / "training-slots").is_dir()
    assert ENV not in _job_env(SweepOptions(log_dir=tmp_path))  # no limit unless asked
