"""Reusing a report section's outputs when nothing it is built from has changed.

A warm analyze of an unchanged study spent most of its time recomputing the sections (bootstraps,
rank tests, the mixed model) to the same tables. A section run through `SectionMemo` is recorded
(its tables, figures, notes and messages) under a key of everything it reads: every root's
fingerprint (the same one the run cache trusts), the series' versions, the settings, the cohorts,
the recorded-errors file, the analysis code and the statistics libraries. The next analyze with the
same key replays the record instead of computing; a figure whose rendering left the cache, or a
study with a run still RUNNING, means the section is computed again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from llmseg_mlflow.analysis.cache import RunCache, digest_of, fingerprint
from llmseg_mlflow.analysis.config import AnalyzeConfig, Cohorts
from llmseg_mlflow.analysis.fetch import Root
from llmseg_mlflow.analysis.listing import is_finished
from llmseg_mlflow.analysis.outputs import Outputs

_VERSION = 1
# Settings that change no number of the report (where it is written and logged, how roots are listed).
_NOT_INPUTS = {"output", "cache_dir", "log_run", "refresh"}
_LIBRARIES = ("numpy", "pandas", "scipy", "statsmodels", "matplotlib")


@dataclass
class Record:
    """What one section produced: the Outputs calls to repeat, its notes and its messages."""

    calls: list[tuple[str, tuple]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    section_notes: dict[str, list[str]] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)


def _code_digest() -> str:
    """The analysis package's source: a changed statistic or figure must not be replayed from an older one."""
    h = hashlib.sha1()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for lib in _LIBRARIES:
        try:
            h.update(f"{lib}={importlib.metadata.version(lib)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{lib}=none".encode())
    return h.hexdigest()


def study_key(roots: Iterable[Root], series_digest: str, cfg: AnalyzeConfig, cohorts: Cohorts) -> str | None:
    """The key of everything a section reads; None while a root is unfinished (its series still grow)."""
    roots = list(roots)
    if not all(is_finished(r) for r in roots):
        return None
    settings = {k: v for k, v in cfg.model_dump().items() if k not in _NOT_INPUTS}
    recorded = Path(cfg.recorded_errors).read_bytes() if cfg.recorded_errors else b""
    runs = sorted((r.run_id, fingerprint(r)) for r in roots)
    return digest_of(_VERSION, _code_digest(), runs, series_digest, repr(sorted(settings.items())), cohorts, recorded)


class SectionMemo:
    """Runs sections, replaying an earlier analyze's record of a section when the study key is unchanged."""

    def __init__(self, cache: RunCache, key: str | None) -> None:
        self.folder = cache.folder / "sections"
        self.cache = cache
        self.key = key
        self.replayed = 0

    def run(
        self,
        name: str,
        out: Outputs,
        say: Callable[[str], None],
        compute: Callable[[Callable[[str], None]], None],
        extra: str = "",
    ) -> None:
        """compute(say) for the section `name`, or its record replayed onto `out`; `extra` keys what the
        section reads beyond the study (e.g. the prepared datasets' manifests)."""
        if self.key is None:
            compute(say)
            return
        path = self.folder / f"{name}-{digest_of(self.key, extra)}.pkl"
        record = self._load(path)
        if record is not None and self._replayable(record):
            self._replay(record, out, say)
            self.replayed += 1
            return
        record = Record()
        notes_before = len(out.notes)
        section_before = {k: len(v) for k, v in out.section_notes.items()}
        out.recorder = record.calls

        def said(msg: str) -> None:
            record.said.append(msg)
            say(msg)

        try:
            compute(said)
        finally:
            out.recorder = None
        record.notes = out.notes[notes_before:]
        record.section_notes = {
            k: v[section_before.get(k, 0) :] for k, v in out.section_notes.items() if len(v) > section_before.get(k, 0)
        }
        if not any(kind == "unrecordable" for kind, _ in record.calls):
            self._save(name, path, record)

    def _replayable(self, record: Record) -> bool:
        return all(self.cache.has(args[-1], ".png") for kind, args in record.calls if kind == "figure")

    @staticmethod
    def _replay(record: Record, out: Outputs, say: Callable[[str], None]) -> None:
        for kind, args in record.calls:
            if kind == "table":
                out.table(*args)
            elif kind == "top_csv":
                out.top_csv(*args)
            else:
                out.reuse_figure(*args)
        out.notes.extend(record.notes)
        for key, notes in record.section_notes.items():
            out.section_notes.setdefault(key, []).extend(notes)
        for msg in record.said:
            say(msg)

    @staticmethod
    def _load(path: Path) -> Record | None:
        if not path.is_file():
            return None
        try:
            with path.open("rb") as fh:
                return pickle.load(fh)
        except Exception:  # noqa: BLE001 - a damaged record is only a section computed again
            return None

    def _save(self, name: str, path: Path, record: Record) -> None:
        """Keep the record atomically, and drop this section's records of earlier study states."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(f"{name}-*.pkl"):
            old.unlink(missing_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(record, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
