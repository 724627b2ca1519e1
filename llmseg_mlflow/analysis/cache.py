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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.analysis.listing import is_finished
from llmseg_mlflow.paths import analysis_cache_root

_VERSION = 2


def fingerprint(run: Root) -> str:
    """A digest of what the root search returns for the run; it changes whenever the run is written to."""
    blob = json.dumps(
        [run.status, run.end_time, sorted(run.tags.items()), sorted(run.metrics.items()), sorted(run.params.items())],
        default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()


@dataclass
class RunSeries:
    """The series analysis needs from one run: {metric key: (steps, values)}, latest value per step."""

    fingerprint: str
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def default_cache_dir(tracking_uri: str, study: str, root: Path | None = None) -> Path:
    """One folder per (tracking server, study) under $LLMSEG_HOME/analysis-cache."""
    key = hashlib.sha1(f"{tracking_uri}\n{study}".encode()).hexdigest()[:16]
    return analysis_cache_root(root) / key


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

    def get(self, run: Root) -> RunSeries | None:
        """The cached series when the run has not changed since they were fetched."""
        hit = self.runs.get(run.run_id)
        return hit if hit is not None and hit.fingerprint == fingerprint(run) else None

    def put(self, run: Root, series: RunSeries) -> None:
        """Remember a finished run's series (running ones are left out: they still grow)."""
        if is_finished(run):
            self.runs[run.run_id] = series
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

    def has(self, digest: str, suffix: str) -> bool:
        """Whether a rendering of these inputs is kept."""
        return (self.folder / "rendered" / f"{digest}{suffix}").is_file()

    def restore(self, digest: str, suffix: str, dst: Path) -> bool:
        """Copy an earlier rendering of the same inputs to dst; False when there is none."""
        store = self.folder / "rendered" / f"{digest}{suffix}"
        if not store.is_file():
            return False
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store, dst)
        return True

    def text(self, digest: str, suffix: str, render: Callable[[], str]) -> str:
        """A rendered text (a table's HTML) from an earlier analyze of the same inputs, else rendered and kept."""
        store = self.folder / "rendered" / f"{digest}{suffix}"
        if store.is_file():
            return store.read_text(encoding="utf-8")
        text = render()
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(store)
        return text

    def store(self, digest: str, suffix: str, src: Path) -> None:
        """Keep a rendered file for the next analyze."""
        store = self.folder / "rendered" / f"{digest}{suffix}"
        store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, store)


def digest_of(*parts: object) -> str:
    """A stable digest of data frames, arrays, dataclasses, containers and plain values (a rendered file's key)."""
    import dataclasses

    import pandas as pd

    h = hashlib.sha1()

    def feed(part: object) -> None:
        if isinstance(part, pd.DataFrame):
            h.update(repr(list(part.columns)).encode())
            h.update(pd.util.hash_pandas_object(part, index=True).values.tobytes())
        elif isinstance(part, pd.Series):
            h.update(pd.util.hash_pandas_object(part, index=True).values.tobytes())
        elif isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes() if part.dtype != object else repr(part.tolist()).encode())
        elif dataclasses.is_dataclass(part) and not isinstance(part, type):
            h.update(type(part).__name__.encode())
            for f in dataclasses.fields(part):
                feed(getattr(part, f.name))
        elif isinstance(part, dict):
            h.update(b"{")
            for k, v in part.items():
                feed(k)
                feed(v)
        elif isinstance(part, (list, tuple)):
            h.update(f"[{len(part)}".encode())
            for v in part:
                feed(v)
        else:
            h.update(repr(part).encode())
        h.update(b"|")

    for part in parts:
        feed(part)
    return h.hexdigest()
