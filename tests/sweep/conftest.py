"""Helpers for sweep tests: tiny replay models and study files in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.replies import FILES, as_reply, write_replies


@pytest.fixture
def replay_models(tmp_path) -> Path:
    """Folder with `fast` (a working tiny pipeline) and `nocode` (never gives code) replay models."""
    write_replies(tmp_path / "fast", [as_reply(FILES)])
    write_replies(tmp_path / "nocode", ["I cannot help with that.", "Please install PyTorch first."])
    return tmp_path


def write_study(folder: Path, name: str, body: str) -> Path:
    """A study file named after the study."""
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


# Two real pipelines, one reply without code, two jobs on a dataset that is not prepared (they fail
# before any run exists), and a budget rerun that depends on the generate jobs. No preflight: at 1 epoch
# x 2 batches it would run the very same training twice per pipeline.
SMALL_STUDY = """\
models: [replay:fast, replay:nocode]
datasets: [synthetic-gray-suffix, bagls]
repeats:
  default: 1
  per_model:
    replay:fast: {count: 2, datasets: [synthetic-gray-suffix]}
budget_reruns:
  - {epochs: 2, datasets: [synthetic-gray-suffix]}
overrides: {epochs: 1, max_batches: 2, max_fix_rounds: 1, timeout_s: 300, memory_gb: 4, preflight: false}
"""
