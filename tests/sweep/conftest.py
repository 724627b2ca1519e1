"""Helpers for sweep tests: tiny replay models and study files in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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


def start_sweep(path: Path, log_dir: Path, workers: int = 2, args: Sequence[str] = (), **popen) -> subprocess.Popen:
    """`llmseg sweep` in a process of its own (so a test can kill it), stdout and stderr merged as text."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmseg_mlflow.cli",
            "sweep",
            str(path),
            "--workers",
            str(workers),
            "--log-dir",
            str(log_dir),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def wait_for(condition: Callable[[], object], driver: subprocess.Popen, timeout_s: float = 300) -> object:
    """Poll condition until it is true while the sweep runs; its value."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert driver.poll() is None, driver.communicate()[0]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
    return value
