"""One execution of the generated code: an attempt folder, knob overrides, the sandbox, the verdict."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.pipeline import knobs, sandbox, usage_sampler
from llmseg_mlflow.pipeline.errors import ExecError, classify
from llmseg_mlflow.pipeline.slots import training_slot
from llmseg_mlflow.pipeline.workspace import Workspace, attempt_logs

ENTRY = "main.py"
SAVE_DIR = "results"  # inside the attempt folder; the save-path knobs are pointed here
WORKDIR_INSIDE = Path("/workspace")  # where the attempt folder appears to the sandboxed code
POOL_INSIDE = Path("/data/pool")  # where the data pool appears (read-only)
CAP_MARK = ".llmseg-batch-cap-cut"  # created in the attempt folder when the batch cap stopped a loader short


@dataclass(frozen=True)
class Budget:
    """What one execution may use and how much it trains (None = the LLM's choice)."""

    limits: sandbox.Limits
    epochs: int | None = None
    max_batches: int | None = None
    seed: int | None = None  # Python, NumPy and torch seeded before the code runs (its own seed wins)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one execution."""

    number: int
    phase: str  # "preflight" or "full"
    folder: Path
    result: sandbox.ExecResult
    overrides: list[knobs.Override]
    error: ExecError | None
    cap_cut: bool = False  # the batch cap stopped a DataLoader that had more batches to give

    @property
    def ok(self) -> bool:
        """True when the code ran to the end."""
        return self.error is None

    @property
    def save_dir(self) -> Path:
        """Where the pipeline was told to write its outputs."""
        return self.folder / SAVE_DIR


def default_disk_gb(data: PreparedDataset) -> float:
    """The attempt folder's default cap: room for many checkpoints, and 10x the pool for copies of it."""
    return max(20.0, 10 * sandbox.disk_usage(data.pool)[0] / 1024**3)


def _free_quota_folder(folder: Path) -> None:
    """After a disk-quota stop, drop what the code wrote (its .py files stay; the logs live beside)."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.suffix != ".py" or entry.is_symlink():
            entry.unlink(missing_ok=True)


def knob_values(
    data: PreparedDataset, pool_at: Path, save_dir: Path, epochs: int | None, split: str = "pool"
) -> dict[str, object]:
    """The harness's value for every path knob (and epochs when forced); the split appears at `pool_at`."""
    root = data.pool if split == "pool" else data.heldout
    images, masks = data.spec.images_dir(root).relative_to(root), data.spec.masks_dir(root).relative_to(root)
    return layout_knobs(pool_at, images, masks, save_dir, epochs)


def layout_knobs(
    at: Path, images: Path | str, masks: Path | str, save_dir: Path, epochs: int | None
) -> dict[str, object]:
    """The path knobs of a dataset laid out at `at` (images and masks relative to it), and epochs when forced."""
    values: dict[str, object] = {
        "data_dir": str(at),
        "image_dir": str(at / images),
        "mask_dir": str(at / masks),
        "save_dir": str(save_dir),
    }
    if epochs is not None:
        values["epochs"] = epochs
    return values


def execute(
    ws: Workspace,
    files: dict[str, str],
    data: PreparedDataset,
    number: int,
    phase: str,
    budget: Budget,
    unsafe_no_sandbox: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Attempt:
    """Copy the code into a fresh attempt folder, point its knobs at the harness's folders, run main.py."""
    folder = ws.attempt_dir(number, phase)
    # Unconfined code sees the host paths; sandboxed code sees the fixed inside ones.
    pool_at, work_at = (data.pool, None) if unsafe_no_sandbox else (POOL_INSIDE, WORKDIR_INSIDE)
    mounts = sandbox.Mounts(folder, readonly=((data.pool, pool_at),), workdir_at=work_at)
    values = knob_values(data, pool_at, mounts.inside() / SAVE_DIR, budget.epochs)
    patched, overrides = knobs.apply_overrides(files, values)
    ws.new_attempt(number, phase, patched)
    (folder / SAVE_DIR).mkdir(parents=True, exist_ok=True)
    env = {}
    if budget.max_batches:
        env = {"LLMSEG_MAX_BATCHES": str(budget.max_batches), "LLMSEG_CAP_MARK": str(mounts.inside() / CAP_MARK)}
    if budget.seed is not None:
        env |= {"LLMSEG_SEED": str(budget.seed), "PYTHONHASHSEED": str(budget.seed)}
    with training_slot() as slot_env:  # a sweep may allow fewer trainings than jobs at once
        result = sandbox.run(
            [sys.executable, ENTRY],
            mounts,
            budget.limits,
            log_dir=attempt_logs(folder),
            env={**env, **slot_env},
            unsafe_no_sandbox=unsafe_no_sandbox,
            name=phase,
            on_tick=(lambda s, line: progress(f"{phase} {s:5.0f} s | {line[:100]}")) if progress else None,
            sample_usage_s=usage_sampler.INTERVAL_S if phase == "full" else None,  # the training run's system metrics
        )
    lim = budget.limits
    error = None if result.ok else classify(result, lim.timeout_s, lim.memory_gb, lim.disk_gb, lim.max_processes)
    mark = folder / CAP_MARK
    cap_cut = os.path.lexists(mark)
    if cap_cut:
        with contextlib.suppress(OSError):
            mark.unlink()
    if result.disk_quota:
        _free_quota_folder(folder)
    return Attempt(number, phase, folder, result, overrides, error, cap_cut)
