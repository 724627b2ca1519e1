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
from collections.abc import Callable, Sequence
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
from llmseg_mlflow.pipeline.execute import layout_knobs
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


@dataclass(frozen=True)
class Inference:
    """One sandboxed run of worker.py: a pipeline's code and saved model on images laid out as its Dataset
    expects them (with blank masks), each predicted at its `size`."""

    checkpoints: Path  # host folder searched for the saved model (read-only at /pipeline)
    code: dict[str, str]  # the pipeline's files as run; their data knobs are pointed at `images`
    images: Path  # host folder of the images and blank masks (read-only at /data/heldout)
    layout: tuple[str, str]  # the images' and the masks' folder relative to `images`
    items: Callable[[Callable[[Path], Path]], Sequence[_HeldoutItem]]  # given where a host folder appears
    readonly: tuple[tuple[Path, Path], ...] = ()  # more folders (host, inside)
    save_model: bool = False  # also torch.save the loaded module to out/model.pth (a logged model's flavor)


def evaluate_attempt(
    attempt: Path,
    data: PreparedDataset,
    dest: Path,
    settings: EvalSettings,
    hyperparameters: dict[str, str] | None = None,
    save_model: bool = False,
) -> EvalOutput:
    """Predict every held-out image with the model saved in `attempt`; work in `dest` (recreated).

    It sees the held-out images with blank masks (`blind_heldout`): the real masks never enter it.
    PreparedDataModifiedError, before anything runs, when a held-out file no longer matches the manifest.
    """
    data.verify_heldout()
    blind = data.blind_heldout()
    images, masks = (
        str(d.relative_to(data.heldout))
        for d in (data.spec.images_dir(data.heldout), data.spec.masks_dir(data.heldout))
    )
    slice_images = data.heldout_slices / "images"  # images only: never the masks beside them
    readonly = ((slice_images, SLICES_INSIDE),) if data.volumes else ()
    job = Inference(
        attempt,
        code_files(attempt),
        blind,
        (images, masks),
        lambda at: _heldout_items(data, at(blind), at(slice_images) if data.volumes else slice_images),
        readonly,
        save_model,
    )
    return run_inference(job, dest, settings, hyperparameters)


def run_inference(
    job: Inference, dest: Path, settings: EvalSettings, hyperparameters: dict[str, str] | None = None
) -> EvalOutput:
    """Run worker.py in the sandbox on `job`; work in `dest` (recreated). The sandbox writes only to
    dest/sandbox (returned as `folder`); its logs go to dest/logs, outside it, so what the host reads back
    cannot be swapped for links."""
    if settings.preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {settings.preprocessing!r}")
    if dest.exists():
        shutil.rmtree(dest)
    logs = dest / "logs"
    dest = dest / "sandbox"  # from here on: the one folder the sandbox may write (at /workspace)
    (dest / "out").mkdir(parents=True)
    unsafe = settings.unsafe_no_sandbox
    inside = {job.checkpoints: PIPELINE_INSIDE, job.images: HELDOUT_INSIDE, dest: WORK_INSIDE, **dict(job.readonly)}

    def at(host: Path) -> Path:  # where the worker sees a host folder
        return host if unsafe else inside[host]

    # The code's data knobs point at the images, so its own Dataset reads those files.
    values = layout_knobs(at(job.images), *job.layout, at(dest) / "scratch", 1)
    patched, _ = knobs.apply_overrides(job.code, values)
    code = dest / "code"
    code.mkdir()
    (dest / "scratch").mkdir()
    for name, text in patched.items():
        (code / name).write_text(text)
    shutil.copy(WORKER, dest / "worker.py")
    items = job.items(at)
    hp = hyperparameters or {}
    config = {
        "code_dir": str(at(dest) / "code"),
        "out_dir": str(at(dest) / "out"),
        "checkpoints_dir": str(at(job.checkpoints)),
        "heldout": items,
        "preprocessing": settings.preprocessing,
        "input_size": int_or_none(hp.get("input_size")),
        "batch_size": settings.batch_size,
        "final_activation": hp.get("final_activation", "none"),
        "save_model": str(at(dest) / "out" / "model.pth") if job.save_model else None,
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    readonly = ((job.checkpoints, PIPELINE_INSIDE), (job.images, HELDOUT_INSIDE), *job.readonly)
    mounts = sandbox.Mounts(dest, readonly=readonly, workdir_at=None if unsafe else WORK_INSIDE)
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
            dest / "out" / "predictions.npz", {h["name"]: (h["size"][0], h["size"][1]) for h in items}
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


def int_or_none(value: object) -> int | None:
    """An input size param such as '256', '(256, 256)' or '[128, 128]' as one int."""
    if value is None:
        return None
    digits = "".join(c if c.isdigit() else " " for c in str(value)).split()
    return int(digits[0]) if digits else None
