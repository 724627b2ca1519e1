"""Shared fixtures: a real `mlflow server` on 127.0.0.1 (sqlite store) and an isolated LLMSEG_HOME."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

# Modules that run generated code skip without bubblewrap only when asked to: a machine without it
# must not pass with the sandbox, the evaluation and every end-to-end path untested.
WITHOUT_SANDBOX = "LLMSEG_TESTS_WITHOUT_SANDBOX"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before collecting when bubblewrap is missing, unless the sandbox tests are skipped on purpose."""
    from llmseg_mlflow.pipeline.sandbox import bwrap_path

    if bwrap_path() is None and os.environ.get(WITHOUT_SANDBOX) != "1":
        raise pytest.UsageError(
            "bubblewrap (bwrap) is missing, so the sandbox and every end-to-end test cannot run: install it "
            f"(`apt-get install -y bubblewrap`, or `make setup` as root), or set {WITHOUT_SANDBOX}=1 to skip them"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(root: Path) -> Iterator[str]:
    """A real `mlflow server` on a free port with its store under root; its URI while the block runs."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}"
                ) from None
            time.sleep(0.5)
    try:
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """URI of a real tracking server for the whole session."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture
def own_tracking(tmp_path_factory, monkeypatch) -> Iterator[str]:
    """A tracking server of this test alone, for what reads across every study (e.g. price estimates)."""
    with running_mlflow_server(tmp_path_factory.mktemp("own-server")) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
        mlflow.set_tracking_uri(uri)
        yield uri


@pytest.fixture
def tracking(mlflow_server, monkeypatch) -> str:
    """Point MLflow (and child processes) at the session's server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(mlflow_server)
    return mlflow_server


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory) -> Path:
    """One LLMSEG_HOME for the session, so synthetic datasets are generated once."""
    return tmp_path_factory.mktemp("llmseg-home")


@pytest.fixture
def llmseg_home(shared_home, monkeypatch) -> Path:
    """LLMSEG_HOME pointing at the session's folder."""
    monkeypatch.setenv("LLMSEG_HOME", str(shared_home))
    return shared_home
