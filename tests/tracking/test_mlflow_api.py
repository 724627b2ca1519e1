"""Contracts of the MLflow internals llmseg_mlflow.tracking.mlflow_api relies on, each against a real server.

One test per adapter function, named after the internal or endpoint it pins: after an MLflow upgrade, the
failing test's name says which one moved. Each logs a tiny run with MlflowClient and checks the exact shape
of what comes back.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking import mlflow_api

METRIC_FIELDS = {"key", "value", "timestamp", "step", "run_id"}


@pytest.fixture
def logged(tracking, tmp_path):
    """Two runs of one experiment: `loss` at steps 0..2 (the second run's last value NaN), a param, a tag and
    one artifact `heldout/predictions.npz`."""
    client = MlflowClient()
    exp = client.create_experiment(f"contract-{uuid.uuid4().hex[:8]}")
    runs = [client.create_run(exp, run_name=f"run-{i}", tags={"kind": "pipeline"}) for i in range(2)]
    src = tmp_path / "src" / "predictions.npz"
    src.parent.mkdir()
    src.write_bytes(b"the predictions")
    for i, run in enumerate(runs):
        rid = run.info.run_id
        values = [1.0, 0.5, float("nan") if i else 0.25]
        client.log_batch(rid, metrics=[Metric("loss", v, 1000 + s, s) for s, v in enumerate(values)])
        client.log_param(rid, "lr", "0.01")
        client.log_artifact(rid, str(src), "heldout")
        client.set_terminated(rid)
    return client, exp, [client.get_run(r.info.run_id) for r in runs]


def test_contract_tracking_service_get_store(tracking):
    from mlflow.store.tracking.rest_store import RestStore

    store = mlflow_api.tracking_store()
    assert isinstance(store, RestStore)


def test_contract_rest_store_get_host_creds(tracking):
    creds = mlflow_api.rest_host_creds(mlflow_api.tracking_store())
    assert creds is not None and creds.host.rstrip("/") == tracking
    assert mlflow_api.rest_host_creds(object()) is None  # any store that is not REST


def test_contract_rest_runs_search_json(logged):
    _, exp, runs = logged
    creds = mlflow_api.rest_host_creds(mlflow_api.tracking_store())
    body = {
        "experiment_ids": [exp],
        "filter": "tags.kind = 'pipeline'",
        "max_results": 1,
        "run_view_type": "ACTIVE_ONLY",
    }
    first = mlflow_api.search_runs_page(creds, body)
    assert set(first) == {"runs", "next_page_token"} and len(first["runs"]) == 1
    second = mlflow_api.search_runs_page(creds, {**body, "page_token": first["next_page_token"]})
    assert len(second["runs"]) == 1 and not second.get("next_page_token")
    by_id = {r["info"]["run_id"]: r for r in first["runs"] + second["runs"]}
    for run in runs:  # what analysis.fetch.Root.from_json reads
        got = by_id[run.info.run_id]
        info = got["info"]
        assert (info["run_name"], info["experiment_id"], info["status"]) == (run.info.run_name, exp, "FINISHED")
        assert int(info["start_time"]) == run.info.start_time and int(info["end_time"]) == run.info.end_time
        assert info["artifact_uri"] == run.info.artifact_uri
        assert {"key": "lr", "value": "0.01"} in got["data"]["params"]
        assert {"key": "kind", "value": "pipeline"} in got["data"]["tags"]
        [loss] = [m for m in got["data"]["metrics"] if m["key"] == "loss"]
        assert set(loss) >= {"key", "value", "timestamp", "step"}


def test_contract_ajax_get_history_bulk(logged):
    _, _, runs = logged
    creds = mlflow_api.rest_host_creds(mlflow_api.tracking_store())
    ids = [r.info.run_id for r in runs]
    got = mlflow_api.metric_history_bulk(creds, ids, "loss")
    assert all(set(m) == METRIC_FIELDS for m in got)
    rows = sorted((m["run_id"], m["step"], m["timestamp"], m["key"]) for m in got)
    assert rows == sorted((rid, s, 1000 + s, "loss") for rid in ids for s in range(3))
    values = {(m["run_id"], m["step"]): float(m["value"]) for m in got}  # NaN may come as "NaN"
    assert values[(ids[0], 2)] == 0.25 and math.isnan(values[(ids[1], 2)])
    assert len(mlflow_api.metric_history_bulk(creds, ids, "loss", max_results=2)) == 2
    assert mlflow_api.metric_history_bulk(creds, ids, "no-such-metric") == []
    with pytest.raises(MlflowException, match=str(mlflow_api.BULK_MAX_RUNS)):  # the cap fetch chunks by
        mlflow_api.metric_history_bulk(creds, ids + [uuid.uuid4().hex for _ in range(mlflow_api.BULK_MAX_RUNS)], "loss")


def test_contract_store_get_metric_history_bulk(logged, tmp_path):
    _, _, runs = logged
    ids = [r.info.run_id for r in runs]
    # Against the server's RestStore (no bulk method): one REST history call per run.
    got_ids, ms = mlflow_api.store_metric_history(mlflow_api.tracking_store(), ids, "loss")
    assert got_ids == [ids[0]] * 3 + [ids[1]] * 3
    assert all(isinstance(m, Metric) for m in ms) and [m.step for m in ms] == [0, 1, 2, 0, 1, 2]
    # Against a local SQLAlchemy store: its get_metric_history_bulk, one query for all runs.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    local = SqlAlchemyStore(f"sqlite:///{tmp_path / 'local.db'}", str(tmp_path / "artifacts"))
    exp = local.create_experiment("local")
    local_ids = [local.create_run(exp, "contract", 0, [], f"r{i}").info.run_id for i in range(2)]
    for rid in local_ids:
        local.log_batch(rid, [Metric("loss", 0.5 * s, 1000 + s, s) for s in range(3)], [], [])
    assert hasattr(local, "get_metric_history_bulk")
    got_ids, ms = mlflow_api.store_metric_history(local, local_ids, "loss")
    assert sorted(got_ids) == sorted(local_ids * 3) and all(m.run_id in local_ids for m in ms)
    assert sorted((m.run_id, m.step, m.value, m.timestamp) for m in ms) == sorted(
        (rid, s, 0.5 * s, 1000 + s) for rid in local_ids for s in range(3)
    )


def test_contract_run_artifact_layout(logged):
    client, _, runs = logged
    first, second = runs
    assert first.info.artifact_uri.endswith(f"/{first.info.run_id}/artifacts")
    assert (
        mlflow_api.sibling_artifact_uri(first.info.artifact_uri, first.info.run_id, second.info.run_id)
        == client.get_run(second.info.run_id).info.artifact_uri
    )
    assert mlflow_api.sibling_artifact_uri("s3://bucket/elsewhere", first.info.run_id, second.info.run_id) is None


def test_contract_mlflow_artifacts_scheme(logged):
    _, exp, runs = logged
    run = runs[0]
    assert run.info.artifact_uri == f"mlflow-artifacts:/{exp}/{run.info.run_id}/artifacts"
    assert mlflow_api.proxied_artifact_path(run.info.artifact_uri) == f"{exp}/{run.info.run_id}/artifacts"
    assert mlflow_api.proxied_artifact_path("mlflow-artifacts://other-host:5000/1/x/artifacts") is None
    assert mlflow_api.proxied_artifact_path("s3://bucket/1/x/artifacts") is None
    assert mlflow_api.proxied_artifact_path(None) is None


def _body(resp) -> bytes:
    return b"".join(resp.iter_content(1 << 20))


def test_contract_artifact_proxy_get(logged):
    _, _, runs = logged
    creds = mlflow_api.rest_host_creds(mlflow_api.tracking_store())
    proxied = mlflow_api.proxied_artifact_path(runs[0].info.artifact_uri)
    resp = mlflow_api.proxied_artifact_response(creds, proxied, "heldout/predictions.npz")
    assert resp.status_code == 200 and _body(resp) == b"the predictions"
    assert mlflow_api.proxied_artifact_response(creds, proxied, "heldout/missing.npz").status_code != 200


def test_contract_ui_get_artifact(logged):
    _, _, runs = logged
    creds = mlflow_api.rest_host_creds(mlflow_api.tracking_store())
    resp = mlflow_api.get_artifact_response(creds, runs[0].info.run_id, "heldout/predictions.npz")
    assert resp.status_code == 200 and _body(resp) == b"the predictions"
    assert mlflow_api.get_artifact_response(creds, runs[0].info.run_id, "heldout/missing.npz").status_code != 200


def test_fetch_reaches_mlflow_only_through_the_adapter():
    """The adapter is the one place for MLflow internals: analysis.fetch imports none itself."""
    import llmseg_mlflow.analysis.fetch as fetch

    text = Path(fetch.__file__).read_text()
    for internal in ("mlflow.store", "mlflow.utils.rest_utils", "_tracking_service", "ajax-api", "http_request"):
        assert internal not in text, internal
