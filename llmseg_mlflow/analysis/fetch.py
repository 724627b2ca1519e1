"""Reading a study from the tracking server: pipeline roots, metric histories in bulk, a few artifacts.

Costs measured on MLflow 3.17 (DESIGN.md) shape this module: one search for the roots only (never the
children), metric histories through the server's bulk endpoint (100 runs a request) rather than one
call per run, and artifacts downloaded only where a figure needs them.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
BULK_MAX_RUNS = 100  # the server refuses more run ids per request
BULK_MAX_POINTS = 25000  # the server's cap on points per response
_PAGE = 5000


@dataclass(frozen=True)
class Point:
    """One logged value of a metric."""

    run_id: str
    step: int
    value: float
    timestamp: int


def search_roots(client: MlflowClient, study: str) -> list[Run]:
    """Every pipeline root of the study, in any experiment (under `mlflow run` it may not be named after it)."""
    exp_ids, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        exp_ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    if not exp_ids:
        return []
    quoted = study.replace("'", "\\'")
    flt = f"tags.kind = 'pipeline' AND tags.study = '{quoted}'"
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(exp_ids, flt, ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _store():
    from mlflow.tracking._tracking_service.utils import _get_store

    return _get_store()


class HistoryFetcher:
    """Metric histories of many runs, through the bulk endpoint (http) or the store's bulk query (sqlite)."""

    def __init__(self, threads: int = 4) -> None:
        from mlflow.store.tracking.rest_store import RestStore

        self.store = _store()
        self.rest = isinstance(self.store, RestStore)
        self.threads = threads
        self.requests = 0

    def _one_request(self, run_ids: list[str], key: str) -> list[Point]:
        self.requests += 1
        if self.rest:
            from mlflow.utils.rest_utils import http_request_safe

            resp = http_request_safe(self.store.get_host_creds(), BULK_ENDPOINT, "GET",
                                     params={"run_id": run_ids, "metric_key": key, "max_results": BULK_MAX_POINTS})
            return [Point(m["run_id"], int(m.get("step", 0)), float(m["value"]), int(m.get("timestamp", 0)))
                    for m in resp.json().get("metrics", [])]
        if hasattr(self.store, "get_metric_history_bulk"):
            return [Point(m.run_id, int(m.step), float(m.value), int(m.timestamp))
                    for m in self.store.get_metric_history_bulk(run_ids, key, BULK_MAX_POINTS)]
        return [Point(r, int(m.step), float(m.value), int(m.timestamp))
                for r in run_ids for m in self.store.get_metric_history(r, key)]

    def _chunk(self, run_ids: list[str], key: str) -> list[Point]:
        """One chunk; a response at the server's cap may be cut short, so split it and ask again."""
        points = self._one_request(run_ids, key)
        if len(points) >= BULK_MAX_POINTS and len(run_ids) > 1:
            half = len(run_ids) // 2
            return self._chunk(run_ids[:half], key) + self._chunk(run_ids[half:], key)
        return points

    def fetch(self, run_ids: Iterable[str], keys: Iterable[str], points_per_run: int = 200,
              progress: Callable[[int], None] | None = None) -> dict[str, list[Point]]:
        """{key: points} for every run and key; chunks sized so a response stays under the server's cap."""
        run_ids = sorted(set(run_ids))
        per_request = max(1, min(BULK_MAX_RUNS, BULK_MAX_POINTS // max(1, points_per_run)))
        jobs = [(key, run_ids[i:i + per_request]) for key in keys for i in range(0, len(run_ids), per_request)]
        out: dict[str, list[Point]] = {key: [] for key in keys}
        if not jobs:
            return out
        with ThreadPoolExecutor(self.threads) as pool:
            for (key, chunk), points in zip(jobs, pool.map(lambda job: self._chunk(job[1], job[0]), jobs)):
                out[key].extend(points)
                if progress:
                    progress(len(chunk))
        return out


def download(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path | None:
    """One artifact of a run into dst (a folder), or None when the run has no such artifact."""
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client.download_artifacts(run_id, path, str(dst)))
    except Exception:  # noqa: BLE001 - a missing artifact only means a figure panel is left empty
        return None
