"""Which pipeline roots the study has, listed in full once and incrementally afterwards.

Listing every root costs seconds at study scale (each carries ~50 metrics, params and tags), so the
last listing is kept with the cache. A later analyze asks only for runs of the study started since then
(new roots, and children such as a re-evaluation, whose root is then read again) and for runs still
running; roots of a pipeline that got a new root (a sweep retry marks the old one `superseded_by`) are
read again too. `refresh=True` lists everything again (e.g. after deleting runs).
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.tracking import MlflowClient

from llmseg_mlflow.analysis.fetch import Root, _quote, roots_filter, runs_by_id, search, study_experiments

MARGIN_MS = 60_000  # start times come from the clocks of the machines that log: allow for some skew
_VERSION = 1


def is_finished(run: Root) -> bool:
    """The run and its pipeline are over: what it logged will not change (barring a re-evaluation)."""
    return run.status != "RUNNING" and run.tags.get("status") != "running"


@dataclass
class Snapshot:
    """The roots as last listed, when, and which to read again next time."""

    listed_at_ms: int
    roots: dict[str, Root]
    watch: set[str] = field(default_factory=set)


def _identity(r: Root) -> tuple[str, ...]:
    return tuple(r.tags.get(k, "") for k in ("model", "dataset", "repeat", "budget"))


def _load(path: Path) -> Snapshot | None:
    try:
        with path.open("rb") as fh:
            version, snap = pickle.load(fh)
        return snap if version == _VERSION else None
    except Exception:  # noqa: BLE001 - no or a damaged snapshot: list everything
        return None


def _save(path: Path, snap: Snapshot) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}")
    with tmp.open("wb") as fh:
        pickle.dump((_VERSION, snap), fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def _watch(roots: dict[str, Root], running: list[Root]) -> set[str]:
    """Roots to read again next time: unfinished ones, and parents of runs still running."""
    parents = {r.tags.get("mlflow.parentRunId") for r in running if r.tags.get("kind") != "pipeline"}
    return {rid for rid, r in roots.items() if not is_finished(r)} | {p for p in parents if p}


def list_roots(client: MlflowClient, study: str, folder: Path, refresh: bool = False) -> tuple[list[Root], str]:
    """The study's pipeline roots and a line saying how they were listed."""
    exp_ids = study_experiments(client)
    path = folder / "roots.pkl"
    snap = None if refresh else _load(path)
    started = int(time.time() * 1000)
    of_study = f"tags.study = {_quote(study)}"
    running = search(client, exp_ids, f"{of_study} AND attributes.status = 'RUNNING'")
    if snap is None:
        roots = {r.run_id: r for r in search(client, exp_ids, roots_filter(study))}
        _save(path, Snapshot(started, roots, _watch(roots, running)))
        return list(roots.values()), f"listed {len(roots)} pipeline root(s)"
    new = search(client, exp_ids, f"{of_study} AND attributes.start_time >= {snap.listed_at_ms - MARGIN_MS}")
    roots = dict(snap.roots)
    fresh_ids = set()
    again = set(snap.watch)
    new_roots = [r for r in new + running if r.tags.get("kind") == "pipeline"]
    for r in new_roots:
        roots[r.run_id] = r
        fresh_ids.add(r.run_id)
    again |= {
        r.tags["mlflow.parentRunId"]
        for r in new + running
        if r.tags.get("kind") != "pipeline" and r.tags.get("mlflow.parentRunId")
    }
    identities = {_identity(r) for r in new_roots}
    again |= {rid for rid, r in roots.items() if _identity(r) in identities}
    again -= fresh_ids
    if again:
        got = {r.run_id: r for r in runs_by_id(client, exp_ids, sorted(again))}
        for rid in again:
            fresh = got.get(rid)
            if fresh is None:
                roots.pop(rid, None)  # deleted since
            elif fresh.tags.get("kind") == "pipeline" and fresh.tags.get("study") == study:
                roots[rid] = fresh
    _save(path, Snapshot(started, roots, _watch(roots, running)))
    return list(roots.values()), (
        f"{len(roots)} pipeline root(s): {len(new)} run(s) new since the last analyze, {len(again)} root(s) read again"
    )
