"""Reading a study from the tracking server: pipeline roots, metric histories in bulk, a few artifacts.

Costs measured on MLflow 3.17 (DESIGN.md) shape this module: one search for the roots only (never the
children), metric histories through the server's bulk endpoint (100 runs a request) rather than one
call per run, and artifacts downloaded only where a figure needs them. What this needs of MLflow beyond
its client API goes through llmseg_mlflow.tracking.mlflow_api.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from llmseg_mlflow.tracking import mlflow_api
from llmseg_mlflow.tracking.mlflow_api import BULK_MAX_POINTS, BULK_MAX_RUNS

_PAGE = 1000
sibling_artifact_uri = mlflow_api.sibling_artifact_uri  # analysis.qualitative imports it from here


class Points(NamedTuple):
    """Logged values of one metric as columns (hundreds of thousands at study scale: no object per point)."""

    run_id: np.ndarray
    step: np.ndarray
    value: np.ndarray
    timestamp: np.ndarray

    @classmethod
    def from_rows(cls, run_ids: list[str], steps, values, timestamps) -> Points:
        """From parallel sequences (values may be floats or the JSON's "NaN"/"Infinity" strings)."""
        n = len(run_ids)
        return cls(
            np.array(run_ids, dtype=object),
            np.fromiter(steps, np.int64, n),
            np.fromiter((float(v) for v in values), float, n),
            np.fromiter(timestamps, np.int64, n),
        )

    @classmethod
    def concat(cls, parts: list[Points]) -> Points:
        """One column set from many responses."""
        if not parts:
            return cls(np.array([], dtype=object), np.array([], np.int64), np.array([]), np.array([], np.int64))
        return cls(*(np.concatenate(cols) for cols in zip(*parts)))

    def __len__(self) -> int:  # the number of points, not of columns
        return len(self.step)


@dataclass
class Root:
    """What analysis needs of a run: identity, status, times, tags, params and latest metrics."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    artifact_uri: str = ""  # a default: snapshots pickled before the field existed still load

    @classmethod
    def from_json(cls, run: dict) -> Root:
        """From the REST API's JSON (no protobuf parsing: it costs more than the request at study scale)."""
        info, data = run.get("info", {}), run.get("data", {})
        return cls(
            info["run_id"],
            info.get("run_name", ""),
            info.get("experiment_id", ""),
            info.get("status", ""),
            int(info.get("start_time", 0) or 0),
            int(info["end_time"]) if info.get("end_time") else None,
            {t["key"]: t.get("value", "") for t in data.get("tags", [])},
            {p["key"]: p.get("value", "") for p in data.get("params", [])},
            {m["key"]: float(m.get("value", "nan")) for m in data.get("metrics", [])},
            info.get("artifact_uri", ""),
        )

    @classmethod
    def from_run(cls, run: Run) -> Root:
        """From an mlflow Run entity (stores that are not REST)."""
        info = run.info
        return cls(
            info.run_id,
            info.run_name or "",
            info.experiment_id,
            info.status,
            int(info.start_time or 0),
            info.end_time,
            dict(run.data.tags),
            dict(run.data.params),
            dict(run.data.metrics),
            info.artifact_uri or "",
        )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def study_experiments(client: MlflowClient) -> list[str]:
    """Every active experiment (under `mlflow run` the study's runs may live in one not named after it)."""
    exp_ids, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        exp_ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return exp_ids


def search(client: MlflowClient, exp_ids: list[str], flt: str) -> list[Root]:
    """Every run matching a filter: raw JSON through the REST API, or the store's search elsewhere."""
    if not exp_ids:
        return []
    creds = mlflow_api.rest_host_creds(_store())
    out: list[Root] = []
    token = None
    if creds is not None:
        while True:
            body = {"experiment_ids": exp_ids, "filter": flt, "max_results": _PAGE, "run_view_type": "ACTIVE_ONLY"}
            if token:
                body["page_token"] = token
            data = mlflow_api.search_runs_page(creds, body)
            out += [Root.from_json(r) for r in data.get("runs", [])]
            token = data.get("next_page_token")
            if not token:
                return out
    while True:
        page = client.search_runs(exp_ids, flt, ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=token)
        out += [Root.from_run(r) for r in page]
        token = page.token
        if not token:
            return out


def roots_filter(study: str) -> str:
    """The filter for a study's pipeline roots."""
    return f"tags.kind = 'pipeline' AND tags.study = {_quote(study)}"


def search_roots(client: MlflowClient, study: str) -> list[Root]:
    """Every pipeline root of the study, in any experiment."""
    return search(client, study_experiments(client), roots_filter(study))


def runs_by_id(client: MlflowClient, exp_ids: list[str], run_ids: list[str]) -> list[Root]:
    """The current state of the given runs (deleted ones are simply absent)."""
    out: list[Root] = []
    ids = sorted(set(run_ids))
    for i in range(0, len(ids), 100):
        chunk = ", ".join(_quote(r) for r in ids[i : i + 100])
        out += search(client, exp_ids, f"attributes.run_id IN ({chunk})")
    return out


def _store():
    return mlflow_api.tracking_store()


class HistoryFetcher:
    """Metric histories of many runs, through the bulk endpoint (http) or the store's bulk query (sqlite)."""

    def __init__(self, threads: int = 4) -> None:
        self.store = _store()
        self.rest = mlflow_api.rest_host_creds(self.store) is not None
        self.threads = threads
        self.requests = 0

    def _one_request(self, run_ids: list[str], key: str) -> Points:
        self.requests += 1
        if self.rest:
            ms = mlflow_api.metric_history_bulk(mlflow_api.rest_host_creds(self.store), run_ids, key, BULK_MAX_POINTS)
            return Points.from_rows(
                [m["run_id"] for m in ms],
                (m.get("step", 0) for m in ms),
                (m["value"] for m in ms),
                (m.get("timestamp", 0) for m in ms),
            )
        ids, metrics = mlflow_api.store_metric_history(self.store, run_ids, key, BULK_MAX_POINTS)
        return Points.from_rows(
            ids, (m.step for m in metrics), (m.value for m in metrics), (m.timestamp for m in metrics)
        )

    def _chunk(self, run_ids: list[str], key: str) -> Points:
        """One chunk; a response at the server's cap may be cut short, so split it and ask again."""
        points = self._one_request(run_ids, key)
        if len(points) >= BULK_MAX_POINTS and len(run_ids) > 1:
            half = len(run_ids) // 2
            return Points.concat([self._chunk(run_ids[:half], key), self._chunk(run_ids[half:], key)])
        return points

    def fetch(
        self, wanted: dict[str, tuple[list[str], int]], progress: Callable[[int], None] | None = None
    ) -> dict[str, Points]:
        """{key: points} for {key: (run ids, points per run)}: every key's chunks in one parallel batch, each
        chunk sized so a response stays under the server's cap."""
        jobs = []
        for key, (run_ids, points_per_run) in wanted.items():
            ids = sorted(set(run_ids))
            per_request = max(1, min(BULK_MAX_RUNS, BULK_MAX_POINTS // max(1, points_per_run)))
            jobs += [(key, ids[i : i + per_request]) for i in range(0, len(ids), per_request)]
        parts: dict[str, list[Points]] = {key: [] for key in wanted}
        if jobs:
            with ThreadPoolExecutor(self.threads) as pool:
                for (key, chunk), points in zip(jobs, pool.map(lambda job: self._chunk(job[1], job[0]), jobs)):
                    parts[key].append(points)
                    if progress:
                        progress(len(chunk))
        return {key: Points.concat(p) for key, p in parts.items()}


def download(client: MlflowClient, run_id: str, path: str, dst: Path, artifact_uri: str | None = None) -> Path | None:
    """One artifact of a run into dst (a folder, keeping its relative path), or None when it has none.

    `artifact_uri`, where the caller knows (or has derived) it, lets the server serve the file straight from
    its artifact proxy: /get-artifact first loads the whole run from the database (3x the server's CPU).
    """
    import os

    target = dst / path
    target.parent.mkdir(parents=True, exist_ok=True)
    creds = mlflow_api.rest_host_creds(_store())
    if creds is not None:
        # One request, where the client's download would look the run up and list the folder first.
        resp = None
        proxied = mlflow_api.proxied_artifact_path(artifact_uri)
        if proxied is not None:
            resp = mlflow_api.proxied_artifact_response(creds, proxied, path)
        if resp is None or resp.status_code != 200:  # not derivable, or not where the layout says: ask by run id
            resp = mlflow_api.get_artifact_response(creds, run_id, path)
        if resp.status_code != 200:
            return None
        tmp = target.with_suffix(target.suffix + f".{os.getpid()}")
        with tmp.open("wb") as fh:
            for block in resp.iter_content(1 << 20):
                fh.write(block)
        tmp.replace(target)
        return target
    # One small file per call: mlflow's per-download progress bar would drown our own.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Path(client.download_artifacts(run_id, path, str(dst)))
    except Exception:  # noqa: BLE001 - a missing artifact only means a figure panel is left empty
        return None
