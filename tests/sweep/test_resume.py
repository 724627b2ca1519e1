"""Kill the driver mid-sweep (a real SIGKILL) and run the same command again: everything once, nothing twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.sweep.conftest import start_sweep, write_study

pytestmark = [pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap"), pytest.mark.slow]

STUDY = """\
models: [replay:fast]
datasets: [synthetic-gray-suffix]
repeats: 2
overrides: {epochs: 1, max_batches: 2, timeout_s: 300, memory_gb: 4, preflight: false}
"""


def _roots(client, exp_id):
    return client.search_runs([exp_id], "tags.kind = 'pipeline'")


def test_sigkill_then_rerun_finishes_everything_once(tracking, llmseg_home, replay_models, tmp_path):
    path = write_study(replay_models, "t-sweep-kill", STUDY)
    client = MlflowClient()
    driver = start_sweep(path, tmp_path / "logs")
    deadline = time.monotonic() + 300
    while True:  # wait until both workers have a pipeline root RUNNING
        exp = client.get_experiment_by_name("t-sweep-kill")
        running = [r for r in _roots(client, exp.experiment_id) if r.info.status == "RUNNING"] if exp else []
        if len(running) >= 2 or time.monotonic() > deadline:
            break
        assert driver.poll() is None, driver.communicate()[0]
        time.sleep(0.5)
    assert len(running) == 2
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate()
    time.sleep(5)  # the workers die with the driver: nothing ends the interrupted runs behind our back
    interrupted = {r.info.run_id for r in _roots(client, exp.experiment_id) if r.info.status == "RUNNING"}
    assert interrupted == {r.info.run_id for r in running}

    again = start_sweep(path, tmp_path / "logs")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert "2 jobs, 0 done earlier, 2 to retry" in out and "done 2, skipped 0, failed 0" in out

    roots = _roots(client, exp.experiment_id)
    current = [r for r in roots if "superseded_by" not in r.data.tags]
    assert Counter(r.data.tags["repeat"] for r in current) == {"1": 1, "2": 1}  # once each
    assert all(r.info.status == "FINISHED" and r.data.tags["status"] == "succeeded" for r in current)
    old = {r.info.run_id: r for r in roots if r.info.run_id in interrupted}
    assert len(old) == 2 and len(roots) == 4  # the interrupted runs are kept, never deleted
    by_key = {r.data.tags["repeat"]: r.info.run_id for r in current}
    for run in old.values():
        assert run.info.status == "KILLED"
        assert run.data.tags["superseded_by"] == by_key[run.data.tags["repeat"]]
        assert run.info.run_id in out  # the table says which run each retry replaced

    third = start_sweep(path, tmp_path / "logs")
    out, _ = third.communicate(timeout=300)
    assert third.returncode == 0 and "2 jobs, 2 done earlier, 0 to retry, 0 to run" in out
    assert len(_roots(client, exp.experiment_id)) == 4


def test_ctrl_c_marks_the_running_pipeline_and_the_rerun_replaces_it(tracking, llmseg_home, replay_models, tmp_path):
    path = write_study(replay_models, "t-sweep-ctrl-c", STUDY.replace("repeats: 2", "repeats: 1"))
    logs = tmp_path / "logs"
    driver = start_sweep(path, logs, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not any("attempt 1: training" in f.read_text() for f in logs.glob("generate-*.log")):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0]
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "interrupted (Ctrl-C)" in out and "run the same command again" in out
    client = MlflowClient()
    exp = client.get_experiment_by_name("t-sweep-ctrl-c")
    [stopped] = _roots(client, exp.experiment_id)
    assert stopped.info.status == "FAILED" and stopped.data.tags["status"] == "harness_error"

    again = start_sweep(path, logs)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and f"(retry of {stopped.info.run_id})" in out
    assert client.get_run(stopped.info.run_id).data.tags["superseded_by"] in out
