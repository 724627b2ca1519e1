"""Run the held-out inference of one trained pipeline in the sandbox and bring its masks back.

The sandbox sees the pipeline's attempt folder (code and saved models) read-only at /pipeline and the
held-out images with blank placeholder masks read-only at /data/heldout; never the real masks, never the
pool. For a pool of NIfTI volumes it sees the held-out volumes with placeholder label volumes, and the
scored slices' images at /data/heldout_slices for the generic fallback. The held-out files are checked
against the manifest first; the masks the worker writes are checked by header and shape; scores are
computed outside, by the harness.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image

from llmseg_mlflow import untrusted
from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.catalog.volume_pool import SLICES
from llmseg_mlflow.config import EVAL_TIMEOUT_S
from llmseg_mlflow.evaluation.predictions import PredictionsError, load_predictions
from llmseg_mlflow.pipeline import knobs, sandbox
from llmseg_mlflow.pipeline.execute import knob_values
from llmseg_mlflow.pipeline.slots import training_slot
from llmseg_mlflow.untrusted import code_files

WORKER = Path(__file__).with_name("worker.py")
PIPELINE_INSIDE = Path("/pipeline")
HELDOUT_INSIDE = Path("/data/heldout")
SLICES_INSIDE = Path("/data/heldout_slices")
WORK_INSIDE = Path("/workspace")
PREPROCESSING = ("auto", "generic")


class EvaluationError(RuntimeError):
    """The pipeline's model could not be loaded or run on the held-out images."""


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate: preprocessing `auto` (the pipeline's own where possible) or `generic`."""

    preprocessing: str = "auto"
    limits: sandbox.Limits = field(default_factory=lambda: sandbox.Limits(timeout_s=EVAL_TIMEOUT_S))
    batch_size: int = 16
    unsafe_no_sandbox: bool = False


@dataclass
class EvalOutput:
    """Masks per held-out image name and what the worker decided (tags), plus timings."""

    predictions: dict[str, np.ndarray]
    info: dict[str, object]
    duration_s: float
    folder: Path


class _HeldoutItem(TypedDict):
    """One scored image as the worker's config.json names it."""

    name: str
    image: str
    size: list[int]  # (H, W) of the ground truth


class _HeldoutSlice(_HeldoutItem):
    """A scored slice of a held-out volume: also the volume, its key and the slice index."""

    volume: str
    volume_key: str
    slice: int


def evaluate_attempt(
    attempt: Path,
    data: PreparedDataset,
    dest: Path,
    settings: EvalSettings,
    hyperparameters: dict[str, str] | None = None,
) -> EvalOutput:
    """Predict every held-out image with the model saved in `attempt`; work in `dest` (recreated).

    The sandbox writes only to dest/sandbox (returned as `folder`); its logs go to dest/logs, outside it,
    so what the host reads back cannot be swapped for links. It sees the held-out images with blank masks
    (`blind_heldout`): the real masks never enter it. PreparedDataModifiedError, before anything runs, when
    a held-out file no longer matches the manifest.
    """
    if settings.preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {settings.preprocessing!r}")
    data.verify_heldout()
    blind = data.blind_heldout()
    if dest.exists():
        shutil.rmtree(dest)
    logs = dest / "logs"
    dest = dest / "sandbox"  # from here on: the one folder the sandbox may write (at /workspace)
    (dest / "out").mkdir(parents=True)
    unsafe = settings.unsafe_no_sandbox
    pipeline_at, heldout_at, work_at = (
        (attempt, blind, dest) if unsafe else (PIPELINE_INSIDE, HELDOUT_INSIDE, WORK_INSIDE)
    )
    slice_images = data.heldout_slices / "images"  # images only: never the masks beside them
    slices_at = slice_images if unsafe else SLICES_INSIDE
    # The code's data knobs point at the held-out split, so its own Dataset reads those files.
    values = knob_values(data, heldout_at, work_at / "scratch", 1, split="heldout")
    patched, _ = knobs.apply_overrides(code_files(attempt), values)
    code = dest / "code"
    code.mkdir()
    (dest / "scratch").mkdir()
    for name, text in patched.items():
        (code / name).write_text(text)
    shutil.copy(WORKER, dest / "worker.py")
    heldout = _heldout_items(data, heldout_at, slices_at)
    hp = hyperparameters or {}
    config = {
        "code_dir": str(work_at / "code"),
        "out_dir": str(work_at / "out"),
        "checkpoints_dir": str(pipeline_at),
        "heldout": heldout,
        "preprocessing": settings.preprocessing,
        "input_size": _int_or_none(hp.get("input_size")),
        "batch_size": settings.batch_size,
        "final_activation": hp.get("final_activation", "none"),
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    readonly = ((attempt, pipeline_at), (blind, heldout_at)) + (((slice_images, slices_at),) if data.volumes else ())
    mounts = sandbox.Mounts(dest, readonly=readonly, workdir_at=None if unsafe else work_at)
    start = time.monotonic()
    with training_slot() as slot_env:  # inference uses the GPU too
        result = sandbox.run(
            [sys.executable, "worker.py", "config.json"],
            mounts,
            settings.limits,
            log_dir=logs,
            env=slot_env,
            unsafe_no_sandbox=unsafe,
            name="evaluation",
        )
    duration = time.monotonic() - start
    if not result.ok:
        tail = result.stderr_text()[-3000:]
        why = "timed out" if result.timed_out else "ran out of memory" if result.out_of_memory else "failed"
        raise EvaluationError(f"held-out inference {why} (exit {result.returncode}):\n{tail}")
    try:  # what the sandbox wrote is checked by header before any array is loaded
        predictions = load_predictions(
            dest / "out" / "predictions.npz", {h["name"]: (h["size"][0], h["size"][1]) for h in heldout}
        )
        info = json.loads(untrusted.read_bytes(dest / "out" / "info.json", 1024**2))
    except (PredictionsError, untrusted.UntrustedFileError, ValueError, RecursionError) as exc:  # '['*1e5 recurses
        raise EvaluationError(f"held-out inference wrote unusable results: {exc}") from None
    if not isinstance(info, dict):
        raise EvaluationError("held-out inference wrote unusable results: info.json is not a JSON object")
    return EvalOutput(predictions, info, duration, dest)


def _heldout_items(data: PreparedDataset, heldout_at: Path, slices_at: Path) -> Sequence[_HeldoutItem]:
    """What the worker predicts: each scored image's name, path and ground-truth size (H, W); for a pool of
    volumes also the held-out volume, its key and the slice index, so its own Dataset can be matched."""
    if not data.volumes:
        return [
            {
                "name": img.name,
                "image": str(heldout_at / img.relative_to(data.heldout)),
                "size": list(Image.open(mask).size[::-1]),
            }
            for img, mask in data.heldout_pairs()
        ]
    volumes = {stem: image for stem, image, _ in data.heldout_volumes()}
    rows = {e["path"]: e for e in data.manifest_files() if e["split"] == SLICES}
    items: list[_HeldoutSlice] = []
    for img, mask in data.heldout_pairs():
        entry = rows[img.relative_to(data.root).as_posix()]
        items.append(
            {
                "name": img.name,
                "image": str(slices_at / img.name),
                "size": list(Image.open(mask).size[::-1]),
                "volume": str(heldout_at / volumes[entry["volume"]].relative_to(data.heldout)),
                "volume_key": entry["volume"],
                "slice": int(entry["slice"]),
            }
        )
    return items


def _int_or_none(value: object) -> int | None:
    """An input size param such as '256', '(256, 256)' or '[128, 128]' as one int."""
    if value is None:
        return None
    digits = "".join(c if c.isdigit() else " " for c in str(value)).split()
    return int(digits[0]) if digits else None
