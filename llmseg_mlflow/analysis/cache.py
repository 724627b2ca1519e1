"""A local cache of what finished runs logged: they do not change, so a second analyze fetches only what is new.

A run is cached under a fingerprint of what the root search already returns (end time, tags, latest
metric values): a re-evaluation (new `evaluation_run_id`, new summary metrics) or a `superseded_by`
tag changes it, so the run is fetched again. Runs still RUNNING are never cached. The same folder
keeps downloaded artifacts (predictions) and rendered files keyed by the digest of their inputs.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from mlflow.entities import Run

_VERSION = 1


def is_finished(run: Run) -> bool:
    """The run and its pipeline are over: what it logged will not change (barring a re-evaluation)."""
    return run.info.status != "RUNNING" and run.data.tags.get("status") != "running"


def fingerprint(run: Run) -> str:
    """A digest of what the root search returns for the run; it changes whenever the run is written to."""
    blob = json.dumps([run.info.status, run.info.end_time, sorted(run.data.tags.items()),
                       sorted(run.data.metrics.items()), sorted(run.data.params.items())], default=str)
    return hashlib.sha1(blob.encode()).hexdigest()


@dataclass
class RunSeries:
    """The series analysis needs from one run: {metric key: (steps, values)}, latest value per step."""

    fingerprint: str
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def default_cache_dir(tracking_uri: str, study: str, root: Path | None = None) -> Path:
    """One folder per (tracking server, study) under $LLMSEG_HOME/analysis-cache."""
    from llmseg_mlflow.generate import llmseg_home

    key = hashlib.sha1(f"{tracking_uri}\n{study}".encode()).hexdigest()[:16]
    return (root or llmseg_home() / "analysis-cache") / key


class RunCache:
    """Series of finished runs on disk (one pickle), artifacts and rendered outputs beside it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs: dict[str, RunSeries] = {}
        self._dirty = False
        path = folder / "runs.pkl"
        if path.is_file():
            try:
                with path.open("rb") as fh:
                    version, runs = pickle.load(fh)
                if version == _VERSION:
                    self.runs = runs
            except Exception:  # noqa: BLE001 - a damaged cache is only a slower analyze
                self.runs = {}

    def get(self, run: Run) -> RunSeries | None:
        """The cached series when the run has not changed since they were fetched."""
        hit = self.runs.get(run.info.run_id)
        return hit if hit is not None and hit.fingerprint == fingerprint(run) else None

    def put(self, run: Run, series: RunSeries) -> None:
        """Remember a finished run's series (running ones are left out: they still grow)."""
        if is_finished(run):
            self.runs[run.info.run_id] = series
            self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (a crash mid-write leaves the old one)."""
        if not self._dirty:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"runs.pkl.{os.getpid()}"
        with tmp.open("wb") as fh:
            pickle.dump((_VERSION, self.runs), fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.folder / "runs.pkl")
        self._dirty = False

    def artifact_dir(self, run_id: str) -> Path:
        """Where a run's downloaded artifacts are kept (finished evaluation runs do not change)."""
        return self.folder / "artifacts" / run_id

    def rendered(self, digest: str, suffix: str, dst: Path, render: Callable[[Path], None]) -> Path:
        """dst rendered by `render`, or copied from an earlier rendering of the same inputs."""
        store = self.folder / "rendered" / f"{digest}{suffix}"
        if not store.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            render(dst)
            store.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dst, store)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store, dst)
        return dst


def digest_of(*parts: object) -> str:
    """A stable digest of data frames, arrays and plain values (the key of a rendered file)."""
    import pandas as pd

    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            h.update(repr(list(part.columns)).encode())
            h.update(pd.util.hash_pandas_object(part, index=True).values.tobytes())
        elif isinstance(part, pd.Series):
            h.update(pd.util.hash_pandas_object(part, index=True).values.tobytes())
        elif isinstance(part, np.ndarray):
            h.update(part.tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()
