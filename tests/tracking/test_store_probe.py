"""An unreachable database tracking store fails in seconds with one line, before any job starts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psycopg  # noqa: F401 - the postgres extra, installed by make setup: these tests need the driver
import pytest

from llmseg_mlflow.tracking.runs import check_tracking_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _generate(uri: str, tmp_path) -> tuple[subprocess.CompletedProcess, float]:
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": uri, "LLMSEG_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "llmseg_mlflow.cli", "generate", "--model", "demo-2024-a"]
    start = time.monotonic()
    done = subprocess.run(
        [*cmd, "--dataset", "synthetic-gray-suffix"], env=env, capture_output=True, text=True, timeout=120
    )
    return done, time.monotonic() - start


def test_unreachable_postgres_fails_fast_with_one_line(tmp_path):
    done, seconds = _generate(f"postgresql+psycopg://lab:s3cret@127.0.0.1:{_free_port()}/mlflow", tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr
    assert len(errors) == 1 and "does not answer" in errors[0] and "Connection refused" in errors[0]
    assert "s3cret" not in done.stderr and "lab:***@127.0.0.1" in errors[0]  # the password is never printed
    assert "retried in" not in done.stderr and seconds < 60  # MLflow's own retries take ~110 s


def test_a_missing_driver_is_named_with_what_to_install(tmp_path):
    done, _ = _generate(f"postgresql+pg8000://lab:s3cret@127.0.0.1:{_free_port()}/mlflow", tmp_path)
    assert done.returncode == 2
    assert "needs the database driver 'pg8000', which is not installed: pip install 'pg8000'" in done.stderr


def test_the_postgres_extra_is_named_when_psycopg_is_missing(monkeypatch):
    import mlflow

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    before = mlflow.get_tracking_uri()  # an earlier test may have set the URI in-process, over the environment
    mlflow.set_tracking_uri(f"postgresql+psycopg://lab@127.0.0.1:{_free_port()}/mlflow")
    try:
        with pytest.raises(
            ValueError, match=r"needs the database driver 'psycopg'.*pip install 'llmseg-mlflow\[postgres\]'"
        ):
            check_tracking_server()
    finally:
        mlflow.set_tracking_uri(before)
