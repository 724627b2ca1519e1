"""Catalog tests never read or write the developer's ~/.llmseg: each gets its own LLMSEG_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmseg_mlflow.catalog.datasets import ENV_VAR


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "llmseg-home"
    monkeypatch.setenv("LLMSEG_HOME", str(home))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return home
