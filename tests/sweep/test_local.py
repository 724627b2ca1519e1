"""The local executor end to end: 2 workers, tiny replay pipelines, a real tracking server; then again."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.pipeline.sandbox import bwrap_path
from llmseg_mlflow.sweep.local import LocalExecutor
from llmseg_mlflow.sweep.run import SweepOptions, run_sweep
from llmseg_mlflow.sweep.study import load_study
from tests.sweep.conftest import SMALL_STUDY, write_study

pytestmark = [pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap"), pytest.mark.slow]


def check_small_study(summary, study_name: str, lines: list[str]) -> None:
    """What a user sees after the small study ran once (shared with the Ray test)."""
    by_label = {(r.job.kind, r.job.label): r for r in summary.reports}
    fast = [by_label[("generate", f"replay:fast/synthetic-gray-suffix/r{i}")] for i in (1, 2)]
    assert [(r.state, r.status) for r in fast] == [("done", "succeeded")] * 2
    nocode = by_label[("generate", "replay:nocode/synthetic-gray-suffix/r1")]
    assert (nocode.state, nocode.status) == ("done", "no_code")  # a result, not a failure
    for model in ("fast", "nocode"):  # the unprepared dataset fails those jobs, and only those
        r = by_label[("generate", f"replay:{model}/bagls/r1")]
        assert r.state == "failed" and "not prepared" in r.reason and "log:" in r.reason
    budget = [by_label[("budget", f"replay:fast/synthetic-gray-suffix/r{i}/b2")] for i in (1, 2)]
    assert [r.state for r in budget] == ["done", "done"]
    skipped = by_label[("budget", "replay:nocode/synthetic-gray-suffix/r1/b2")]
    assert skipped.state == "skipped" and "source pipeline ended no_code" in skipped.reason
    assert (summary.count("done"), summary.count("failed"), summary.count("skipped")) == (5, 2, 1)

    client = MlflowClient()
    roots = client.search_runs([summary.experiment_id], "tags.kind = 'pipeline'")
    assert len(roots) == 5  # one per pipeline and rerun; the failed jobs never created a run
    assert Counter((r.data.tags["model"], r.data.tags.get("budget")) for r in roots) == {
        ("replay:fast", None): 2,
        ("replay:nocode", None): 1,
        ("replay:fast", "2"): 2,
    }
    for r in roots:
        assert r.info.status == "FINISHED" and r.data.tags["study"] == study_name
        assert "mlflow.parentRunId" not in r.data.tags  # each pipeline is a root
    reruns = {r.data.tags["source_run"] for r in roots if r.data.tags.get("budget")}
    assert reruns == {r.run_id for r in fast}
    text = "\n".join(lines)
    assert "done 5, skipped 1, failed 2" in text and "job logs:" in text
    assert f"experiment {study_name!r}" in text


def test_two_workers_then_rerun_does_nothing_twice(tracking, llmseg_home, replay_models, tmp_path):
    study = load_study(write_study(replay_models, "t-sweep-local", SMALL_STUDY))
    lines: list[str] = []
    executor = LocalExecutor(workers=2, gpus=[])
    summary = run_sweep(study, SweepOptions(log_dir=tmp_path / "logs"), out=lines.append, executor=executor)
    check_small_study(summary, study.name, lines)
    assert executor.threads == max(1, (os.cpu_count() or 1) // 2)  # the cores split between 2 workers
    failed_log = (tmp_path / "logs").glob("generate-replay_fast_bagls_r1.log")
    assert "not prepared" in next(failed_log).read_text()

    again: list[str] = []
    second = run_sweep(
        study, SweepOptions(log_dir=tmp_path / "logs"), out=again.append, executor=LocalExecutor(workers=2, gpus=[])
    )
    states = Counter(r.state for r in second.reports)
    assert states == {"skipped": 6, "failed": 2}  # finished jobs and the budget without a source are skipped
    assert len(MlflowClient().search_runs([summary.experiment_id], "tags.kind = 'pipeline'")) == 5
