"""PostgreSQL as a study's store: `llmseg server --store postgres` from nothing and again, a schema made by an
older MLflow refused with the command that fixes it, a folder PostgreSQL's user cannot reach named."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking.local_server import free_port

CLI = [sys.executable, "-m", "llmseg_mlflow.cli"]


def _serve(folder: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*CLI, "server", "--dir", str(folder), "--store", "postgres", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_llmseg_server_on_postgres_keeps_the_study_across_restarts():
    folder = Path(tempfile.mkdtemp(prefix="llmseg-server-"))
    folder.chmod(0o755)  # as root, the postgres user must reach the cluster inside
    port = free_port()
    try:
        proc = _serve(folder, port)
        client = MlflowClient(f"http://127.0.0.1:{port}")
        run = client.create_run(client.create_experiment("lab-study"))
        client.log_metric(run.info.run_id, "heldout_dice_mean", 0.91)
        out = _stop(proc)
        assert "postgresql+psycopg://" in out and "stopping the tracking server" in out
        assert not (folder / "postgres" / "data" / "postmaster.pid").exists()  # the cluster stopped too

        proc = _serve(folder, port)  # the same folder again: the same study
        assert client.get_run(run.info.run_id).data.metrics == {"heldout_dice_mean": 0.91}
        _stop(proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_store_made_by_an_older_mlflow_names_the_upgrade_command(postgres_uri, tmp_path):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(postgres_uri, str(tmp_path / "artifacts")).engine.dispose()  # today's schema
    plain = postgres_uri.replace("+psycopg", "")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")  # MLflow 1.0's first revision
    env = {**os.environ, "MLFLOW_TRACKING_URI": postgres_uri, "LLMSEG_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [*CLI, "generate", "--model", "demo-2024-a", "--dataset", "synthetic-gray-suffix"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "revision 451aebb31d03" in done.stderr and f"mlflow db upgrade '{postgres_uri}'" in done.stderr
    with psycopg.connect(plain) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # nothing half-written


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to another user")
def test_a_folder_the_postgres_user_cannot_reach_is_named(tmp_path):
    private = tmp_path / "private"  # under pytest's 0700 folder
    done = subprocess.run(
        [*CLI, "server", "--dir", str(private), "--store", "postgres"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "is not reachable by the user 'postgres'" in done.stderr and "/tmp" in done.stderr
