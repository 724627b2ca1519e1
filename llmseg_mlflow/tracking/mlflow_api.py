"""Every use of MLflow that is not its public client API, in one place, each pinned by a contract test.

Checked with MLflow 3.17.2 (tests/tracking/test_mlflow_api.py has one test per function below, against a
real `mlflow server`; an MLflow upgrade that moves one of these fails that test by name). Depends on:

- `mlflow.tracking._tracking_service.utils._get_store`: the store behind the current tracking URI (private).
- `mlflow.store.tracking.rest_store.RestStore` and its `get_host_creds()`: telling an http server from a
  local store, and the credentials for raw requests (internal module).
- `mlflow.utils.rest_utils.http_request` / `http_request_safe`: raw requests with MLflow's auth, retries
  and error mapping (internal module).
- `GET /ajax-api/2.0/mlflow/metrics/get-history-bulk`: the UI's bulk metric history (not the REST API);
  its caps of 100 run ids and 25000 points per response are the server's handler constants.
- `GET /get-artifact`: the UI's artifact download by run id (not the REST API).
- `get_metric_history_bulk` of the SQLAlchemy store (a store method, no client API).
- The artifact layout of runs, `{experiment location}/{run id}/artifacts`, and the `mlflow-artifacts:`
  scheme served by the server's proxy at `/api/2.0/mlflow-artifacts/artifacts/` (conventions, not API).
- `mlflow.store.db.utils._get_schema_version` / `_get_latest_schema_revision`: a database store's alembic
  revision and the one the installed MLflow expects (internal module; `mlflow db upgrade` is the public fix).
- `POST /api/2.0/mlflow/runs/search` is the public REST API, but read as raw JSON through the internal
  `http_request_safe` (parsing protobuf entities costs more than the request at study scale).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
BULK_MAX_RUNS = 100  # the server refuses more run ids per request
BULK_MAX_POINTS = 25000  # the server's cap on points per response
SEARCH_ENDPOINT = "/api/2.0/mlflow/runs/search"
PROXY_ENDPOINT = "/api/2.0/mlflow-artifacts/artifacts"
GET_ARTIFACT_ENDPOINT = "/get-artifact"


def tracking_store() -> Any:
    """The tracking store behind the current tracking URI (a RestStore for an http server)."""
    # MlflowClient keeps its store private too; this is the one accessor MLflow itself uses.
    from mlflow.tracking._tracking_service.utils import _get_store

    return _get_store()


def rest_host_creds(store: Any) -> Any | None:
    """The host credentials for raw requests when `store` talks to an http server, else None."""
    from mlflow.store.tracking.rest_store import RestStore

    # Asked afresh on each call, as MLflow does: some hosts refresh their tokens here.
    return store.get_host_creds() if isinstance(store, RestStore) else None


def search_runs_page(creds: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One page of runs/search as the server's JSON ({"runs": [...], "next_page_token": ...})."""
    from mlflow.utils.rest_utils import http_request_safe

    return http_request_safe(creds, SEARCH_ENDPOINT, "POST", json=body).json()


def metric_history_bulk(
    creds: Any, run_ids: list[str], key: str, max_results: int = BULK_MAX_POINTS
) -> list[dict[str, Any]]:
    """Every logged value of `key` for up to BULK_MAX_RUNS runs in one request, as the UI's JSON dicts."""
    from mlflow.utils.rest_utils import http_request_safe

    # The REST API has no bulk history; the UI's endpoint answers 100 runs a request instead of one.
    resp = http_request_safe(
        creds, BULK_ENDPOINT, "GET", params={"run_id": run_ids, "metric_key": key, "max_results": max_results}
    )
    return resp.json().get("metrics", [])


def store_metric_history(
    store: Any, run_ids: list[str], key: str, max_results: int = BULK_MAX_POINTS
) -> tuple[list[str], list[Any]]:
    """(run id per point, Metric entities) of `key` from a local store: in bulk where the store can."""
    if hasattr(store, "get_metric_history_bulk"):  # the SQLAlchemy store: one query for all runs
        ms = store.get_metric_history_bulk(run_ids, key, max_results)
        return [m.run_id for m in ms], list(ms)
    per_run = [(r, store.get_metric_history(r, key)) for r in run_ids]
    return [r for r, hist in per_run for _ in hist], [m for _, hist in per_run for m in hist]


def sibling_artifact_uri(uri: str, run_id: str, sibling: str) -> str | None:
    """The artifact URI of `sibling`, a run in the same experiment as `run_id` (whose URI is `uri`), by the layout
    MLflow gives runs ({experiment's location}/{run id}/artifacts); None where `uri` does not follow it."""
    suffix = f"/{run_id}/artifacts"
    return uri[: -len(suffix)] + f"/{sibling}/artifacts" if run_id and uri.endswith(suffix) else None


def proxied_artifact_path(artifact_uri: str | None) -> str | None:
    """The path under the server's artifact proxy of an `mlflow-artifacts:` URI served by this same server."""
    parsed = urlparse(artifact_uri or "")
    # A netloc names another server's proxy: its path means nothing to this one.
    return parsed.path.strip("/") if parsed.scheme == "mlflow-artifacts" and not parsed.netloc else None


def proxied_artifact_response(creds: Any, proxied: str, path: str) -> Any:
    """The streamed response for `path` under a proxied artifact root (status 200 when the file is there)."""
    from mlflow.utils.rest_utils import http_request

    # Straight from the artifact store: no run lookup in the database.
    return http_request(creds, f"{PROXY_ENDPOINT}/{proxied}/{path}", "GET", stream=True)


def get_artifact_response(creds: Any, run_id: str, path: str) -> Any:
    """The streamed response of the UI's /get-artifact for a run's `path` (status 200 when it exists)."""
    from mlflow.utils.rest_utils import http_request

    # One request, where the client's download would look the run up and list the folder first.
    return http_request(creds, GET_ARTIFACT_ENDPOINT, "GET", params={"path": path, "run_uuid": run_id}, stream=True)


def schema_revisions(engine: Any) -> tuple[str | None, str]:
    """(the database's MLflow schema revision or None when it has none yet, the revision MLflow expects)."""
    from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version

    return _get_schema_version(engine), _get_latest_schema_revision()
