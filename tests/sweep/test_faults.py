"""Faults a shared study survives, each injected for real while `llmseg sweep` runs: the tracking server
SIGKILLed and restarted, PostgreSQL restarted, a sweep worker SIGKILLed mid-training, the artifact store's
disk full. (The driver SIGKILLed and rerun: test_resume.py.)"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.pipeline.sandbox import bwrap_path
from llmseg_mlflow.tracking.local_server import MlflowServer
from tests.conftest import point_at, throwaway_postgres
from tests.sweep.conftest import start_sweep, wait_for, write_study

pytestmark = [pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap"), pytest.mark.slow]

STUDY = """\
models: [replay:fast]
datasets: [synthetic-gray-suffix]
repeats: {repeats}
overrides: {{epochs: 2, max_batches: 6, timeout_s: 300, memory_gb: 4, preflight: false}}
"""


def _roots(client: MlflowClient, study: str) -> list:
    return client.search_runs([client.get_experiment_by_name(study).experiment_id], "tags.kind = 'pipeline'")


def _current(roots: list) -> list:
    return [r for r in roots if "superseded_by" not in r.data.tags]


def _training_logs(logs: Path) -> list[Path]:
    return [f for f in logs.glob("generate-*.log") if "attempt 1: training" in f.read_text()]


def _descendants(pid: int) -> dict[int, str]:
    """pid and every process under it -> its command line."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier and p not in tree]
        tree.update(frontier)
    out = {}
    for p in tree:
        try:
            out[p] = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return out


@pytest.fixture
def lab_server(tmp_path, monkeypatch):
    """A cluster and a 2-worker server of this test alone (the test kills and restarts them)."""
    with throwaway_postgres() as cluster:
        server = MlflowServer(
            cluster.create_database(), tmp_path / "artifacts", workers=2, log_file=tmp_path / "server.log"
        )
        point_at(server.start().uri, monkeypatch)
        yield server, cluster
        server.stop()


def test_tracking_server_killed_and_database_restarted_mid_sweep(lab_server, llmseg_home, replay_models, tmp_path):
    server, cluster = lab_server
    path = write_study(replay_models, "t-fault-restarts", STUDY.format(repeats=2))
    logs = tmp_path / "logs"
    driver = start_sweep(path, logs)
    wait_for(lambda: _training_logs(logs), driver)

    start = time.monotonic()
    server.kill()  # SIGKILL, workers and all
    server.start()  # same port, same store
    server_s = time.monotonic() - start
    start = time.monotonic()
    cluster.stop("immediate")  # a crash: no checkpoint, recovery at start
    cluster.start()
    database_s = time.monotonic() - start
    print(f"restart: tracking server {server_s:.1f} s, PostgreSQL {database_s:.1f} s")

    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out
    assert "done 2, skipped 0, failed 0" in out
    roots = _roots(MlflowClient(), "t-fault-restarts")
    current = _current(roots)
    assert Counter(r.data.tags["repeat"] for r in current) == {"1": 1, "2": 1}  # each job finished once
    for root in current:
        assert root.info.status == "FINISHED" and root.data.tags["status"] == "succeeded"
        assert "heldout_dice_mean" in root.data.metrics  # logging resumed through to the evaluation
        assert {"code/main.py", "code/train.py"} <= {
            f.path for f in MlflowClient().list_artifacts(root.info.run_id, "code")
        }
    assert not [r for r in roots if r.info.status == "RUNNING"]
    retried = [r for r in roots if "superseded_by" in r.data.tags]  # a job that met the outage, run again
    assert len(roots) == 2 + len(retried) and ("retry 1 of 2" in out) == bool(retried)


def test_a_worker_killed_mid_training_is_retried_and_its_sandbox_is_gone(
    tracking, llmseg_home, replay_models, tmp_path
):
    path = write_study(replay_models, "t-fault-worker", STUDY.format(repeats=1))
    logs = tmp_path / "logs"
    driver = start_sweep(path, logs, workers=1)
    [log] = wait_for(lambda: _training_logs(logs), driver)
    pid = int(re.search(r"\(pid (\d+)\)", log.read_text()).group(1))
    sandbox = wait_for(lambda: {p: c for p, c in _descendants(pid).items() if "bwrap" in c}, driver)
    tree = _descendants(pid)

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (left := set(tree) & set(_descendants(1))) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not left, f"still running after the worker died: {[tree[p] for p in left]}"
    assert set(sandbox) <= set(tree)

    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out
    assert "worker process died (killed by signal 9)" in out and "retry 1 of 2 in 10 s" in out
    assert "done 1, skipped 0, failed 0" in out and "(1 retry after platform failures)" in out
    roots = _roots(MlflowClient(), "t-fault-worker")
    [current] = _current(roots)
    [old] = [r for r in roots if r.info.run_id != current.info.run_id]
    assert current.info.status == "FINISHED" and current.data.tags["sweep_retries"] == "1"
    assert old.info.status == "KILLED" and old.data.tags["superseded_by"] == current.info.run_id


class FullDiskServer(MlflowServer):
    """A server whose artifact store is a 300 KB tmpfs (bubblewrap mounts it): the code fits, the results do not."""

    def command(self) -> list[str]:
        return [
            "bwrap",
            "--dev-bind",
            "/",
            "/",
            "--size",
            "300000",
            "--tmpfs",
            str(self.artifacts),
            "--",
            *super().command(),
        ]


def test_a_full_artifact_store_fails_the_run_with_the_reason_and_keeps_its_metrics(
    llmseg_home, replay_models, tmp_path, monkeypatch
):
    (tmp_path / "artifacts").mkdir()
    server = FullDiskServer(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts", log_file=tmp_path / "log")
    point_at(server.start().uri, monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # MLflow's own retries of a 500 take minutes
    try:
        path = write_study(replay_models, "t-fault-disk", STUDY.format(repeats=1))
        driver = start_sweep(path, tmp_path / "logs", workers=1)
        out, _ = driver.communicate(timeout=600)
    finally:
        server.stop()
    assert "No space left on device" in (tmp_path / "log").read_text()
    assert driver.returncode == 1 and "done 0, skipped 0, failed 1" in out
    assert "could not store the artifact" in out and "retry 1 of" not in out  # a full disk is not waited on
    [root] = _roots(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), "t-fault-disk")  # the store itself
    assert root.info.status == "FAILED" and root.data.tags["status"] == "harness_error"
    assert root.data.tags["error"].startswith("the tracking server could not store the artifact ")
    assert "full or read-only" in root.data.tags["error"]
    assert root.data.metrics["errors_total"] == 0 and root.data.metrics["llm_calls"] == 1  # metrics kept
