"""Where the platform keeps its state: one home ($LLMSEG_HOME, else ~/.llmseg) and the roots under it.

Every job asks here, so an explicit folder (a CLI option) and the defaults under the home are decided in
one place.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "LLMSEG_HOME"
CACHE_ENV = "LLMSEG_CACHE_DIR"


def llmseg_home() -> Path:
    """Root for prepared data, pipeline folders and caches: $LLMSEG_HOME or ~/.llmseg."""
    return Path(os.environ.get(HOME_ENV, Path.home() / ".llmseg")).expanduser().resolve()


def _under_home(given: Path | str | None, name: str) -> Path:
    return Path(given).expanduser().resolve() if given else llmseg_home() / name


def data_root(given: Path | str | None = None) -> Path:
    """Prepared datasets: the given folder, else <home>/data."""
    return _under_home(given, "data")


def work_root(given: Path | str | None = None) -> Path:
    """Pipeline folders (one per root run): the given folder, else <home>/pipelines."""
    return _under_home(given, "pipelines")


def baselines_root(given: Path | str | None = None) -> Path:
    """nnU-Net folders: the given folder, else <home>/baselines."""
    return _under_home(given, "baselines")


def cache_root(given: Path | str | None = None) -> Path:
    """LLM response cache: the given folder, else $LLMSEG_CACHE_DIR, else <home>/cache."""
    return _under_home(given or os.environ.get(CACHE_ENV), "cache")


def sweeps_root(given: Path | str | None = None) -> Path:
    """Sweep logs and training-slot locks: the given folder, else <home>/sweeps."""
    return _under_home(given, "sweeps")


def analysis_cache_root(given: Path | str | None = None) -> Path:
    """Local copies of finished runs for `analyze`: the given folder, else <home>/analysis-cache."""
    return _under_home(given, "analysis-cache")
