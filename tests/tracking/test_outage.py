"""One classifier for "the tracking server is away": real exceptions from MLflow and the reason strings
that carry them from a worker process to the sweep."""

from __future__ import annotations

import socket

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking.outage import is_tracking_outage, server_error
from llmseg_mlflow.tracking.runs import check_tracking_server


@pytest.fixture
def closed_uri(monkeypatch) -> str:
    """An http URI on 127.0.0.1 where nothing listens; MLflow asked not to retry (the test stays fast)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return f"http://127.0.0.1:{port}"


def _reasons(exc: BaseException) -> list[str]:
    """The strings a worker reports: its own failure reason and a harness_error root's reason."""
    return [f"{type(exc).__name__}: {exc}".strip()[:800], f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:250]]


def test_an_mlflow_client_at_a_closed_port_is_an_outage(closed_uri):
    with pytest.raises(MlflowException) as caught:
        MlflowClient(closed_uri).get_experiment_by_name("anything")
    assert is_tracking_outage(caught.value)
    assert all(is_tracking_outage(r) for r in _reasons(caught.value))


def test_check_tracking_server_failure_is_an_outage(closed_uri, monkeypatch):
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: closed_uri)
    with pytest.raises(ConnectionError, match="does not answer") as caught:
        check_tracking_server(timeout_s=2)
    assert is_tracking_outage(caught.value)
    assert all(is_tracking_outage(r) for r in _reasons(caught.value))
    wrapped = RuntimeError("could not start")  # the marker reaches the classifier through the chain too
    wrapped.__cause__ = caught.value
    assert is_tracking_outage(wrapped)


def test_an_answer_from_the_server_is_not_an_outage(tracking):
    with pytest.raises(MlflowException) as caught:
        MlflowClient().get_run("5030" * 8)  # a run id with "503" in it is not an HTTP 503
    assert not is_tracking_outage(caught.value)
    assert not any(is_tracking_outage(r) for r in _reasons(caught.value))


def test_exception_types_and_chains():
    assert is_tracking_outage(ConnectionRefusedError(111, "Connection refused"))
    assert is_tracking_outage(TimeoutError())  # no message: its type says it
    assert not is_tracking_outage(ValueError("bad shape"))
    assert not is_tracking_outage(KeyboardInterrupt())
    assert not is_tracking_outage(None)
    try:
        try:
            raise ConnectionResetError()
        except ConnectionResetError:
            raise KeyError("x")  # noqa: B904 - an implicit chain (__context__) is followed too
    except KeyError as exc:
        assert is_tracking_outage(exc)
    looped = ValueError("a")
    looped.__context__ = ValueError("b")
    looped.__context__.__context__ = looped  # a cycle ends the walk instead of hanging it
    assert not is_tracking_outage(looped)


@pytest.mark.parametrize(
    "text",
    [
        "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded",
        "MlflowException: API request to http://h/api/2.0/mlflow/runs/get failed with exception connection reset",
        "the MLflow tracking server at http://h does not answer (<urlopen error [Errno 111]>)",
        "ReadTimeout: HTTPConnectionPool(host='h', port=5000): Read timed out. (read timeout=120)",
        "MlflowException: API request to endpoint /api/2.0/mlflow/runs/search failed with error code 503 != 200",
        "HTTPError: 502 Server Error: Bad Gateway",
    ],
)
def test_outage_reasons(text):
    assert is_tracking_outage(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "harness_error",
        "NameError: name 'x' is not defined",
        "interrupted (Ctrl-C)",
        "MlflowException: Run 'ab503cd1' not found",
        "LLMError: HTTP 401: invalid API key",
    ],
)
def test_other_reasons(text):
    assert not is_tracking_outage(text)


FULL_DISK = (
    "MlflowException: API request to http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/f6de9ad6/artifacts/"
    "heldout/examples.png failed with exception HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries "
    "exceeded with url:\n/api/2.0/mlflow-artifacts/artifacts/1/f6de9ad6/artifacts/heldout/examples.png (Caused by "
    "ResponseError('too many 500 error responses'))"
)


def test_a_server_that_answers_500_to_every_try_is_failing_not_away():
    assert not is_tracking_outage(FULL_DISK) and not is_tracking_outage(RuntimeError(FULL_DISK))
    assert server_error(FULL_DISK) == (
        "the tracking server could not store the artifact heldout/examples.png (HTTP 500 on every try): its "
        "artifact store is likely full or read-only; the server's log has the cause"
    )
    other = FULL_DISK.replace(
        "mlflow-artifacts/artifacts/1/f6de9ad6/artifacts/heldout/examples.png failed", "mlflow/runs/log-batch failed"
    )
    assert "failed on http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch" in server_error(other)
    assert server_error("ConnectionError: Max retries exceeded (Caused by NewConnectionError)") is None
    assert is_tracking_outage(FULL_DISK.replace("500 error", "503 error"))  # a gateway while it restarts


def test_an_aborted_upload_is_a_server_error_only_while_the_server_answers():
    reset = FULL_DISK.replace("ResponseError('too many 500 error responses')", "ProtocolError('Connection aborted.')")
    assert server_error(reset) is None and is_tracking_outage(reset)  # alone, it reads as an outage
    assert "could not store the artifact heldout/examples.png (the server aborted the upload)" in server_error(
        reset, server_answers=True
    )
    not_upload = reset.replace(
        "mlflow-artifacts/artifacts/1/f6de9ad6/artifacts/heldout/examples.png failed", "x failed"
    )
    assert server_error(not_upload, server_answers=True) is None
