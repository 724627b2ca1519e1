"""Shared fixtures: a real `mlflow server` on 127.0.0.1 (sqlite store, or PostgreSQL), an isolated LLMSEG_HOME."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from llmseg_mlflow.tracking.local_server import THROWAWAY_SETTINGS, MlflowServer, Postgres, free_port

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


@contextlib.contextmanager
def running_mlflow_server(root: Path, backend_uri: str | None = None, workers: int = 1) -> Iterator[str]:
    """A real `mlflow server` on a free port, its artifacts (and sqlite store unless backend_uri is given)
    under root; its URI while the block runs."""
    root.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(
        backend_uri or f"sqlite:///{root / 'mlflow.db'}",
        root / "artifacts",
        workers=workers,
        log_file=root / "server.log",
    ).start()
    try:
        yield server.uri
    finally:
        server.stop()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Postgres]:
    """A started PostgreSQL cluster (initdb/pg_ctl; as root, run by the `postgres` user), gone after the block."""
    folder = Path(tempfile.mkdtemp(prefix="llmseg-pg-"))  # under /tmp: the cluster's owner must reach it
    cluster = Postgres(folder / "data", free_port(), settings=THROWAWAY_SETTINGS)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster for the session."""
    with throwaway_postgres() as cluster:
        yield cluster


@pytest.fixture
def postgres_uri(postgres, request) -> str:
    """A new, empty database in the session's cluster, named after the test."""
    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    return postgres.create_database(name)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """URI of a real tracking server for the whole session."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture
def own_tracking(tmp_path_factory, monkeypatch) -> Iterator[str]:
    """A tracking server of this test alone, for what reads across every study (e.g. price estimates)."""
    with running_mlflow_server(tmp_path_factory.mktemp("own-server")) as uri:
        yield point_at(uri, monkeypatch)


@pytest.fixture(scope="session")
def mlflow_server_postgres(postgres, tmp_path_factory) -> Iterator[str]:
    """URI of a real tracking server on PostgreSQL with 2 workers, for the whole session."""
    database = postgres.create_database("session")
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server-pg"), database, workers=2) as uri:
        yield uri


def point_at(uri: str, monkeypatch) -> str:
    """Point MLflow in this process and in child processes at uri."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def tracking(mlflow_server, monkeypatch) -> str:
    """Point MLflow (and child processes) at the session's server."""
    return point_at(mlflow_server, monkeypatch)


@pytest.fixture(params=["sqlite", "postgres"])
def tracking_each_store(request, monkeypatch) -> str:
    """The session's server on each store in turn (tests of what the store could change run on both)."""
    server = "mlflow_server" if request.param == "sqlite" else "mlflow_server_postgres"
    return point_at(request.getfixturevalue(server), monkeypatch)


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory) -> Path:
    """One LLMSEG_HOME for the session, so synthetic datasets are generated once."""
    return tmp_path_factory.mktemp("llmseg-home")


@pytest.fixture
def llmseg_home(shared_home, monkeypatch) -> Path:
    """LLMSEG_HOME pointing at the session's folder."""
    monkeypatch.setenv("LLMSEG_HOME", str(shared_home))
    return shared_home
