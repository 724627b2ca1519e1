"""The baseline's nnU-Net process: plan, preprocess, train, predict; reads job.json, writes result.json.

Started by run.py as `python -m llmseg_mlflow.baseline.worker JOB` with nnU-Net's folders in its
environment, so nnU-Net's global state (environment, torch threads, process pools) ends with it.
Lines starting with `[baseline]` are progress for the parent; everything else is nnU-Net's output.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llmseg_mlflow.baseline.convert import DATASET_ID
from llmseg_mlflow.baseline.train import Budget

PREFIX = "[baseline]"
RESULT = "result.json"
PREDICTIONS = "predictions.npz"


@dataclass(frozen=True)
class Job:
    """What the worker does: one dataset, one fold, one budget, one device."""

    dataset_name: str
    fold: int | str
    budget: Budget
    device: str  # "cuda" or "cpu"
    plan_processes: int
    heldout: dict[str, str]  # held-out image file name -> its converted PNG
    out_dir: str

    def write(self, path: Path) -> None:
        """Store as JSON for the worker."""
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> Job:
        """The job a parent wrote."""
        raw = json.loads(path.read_text())
        return cls(**{**raw, "budget": Budget(**raw["budget"])})


def say(message: str) -> None:
    """A progress line the parent shows."""
    print(f"{PREFIX} {message}", flush=True)


def run(job: Job) -> dict[str, object]:
    """The whole nnU-Net cycle; returns what result.json holds."""
    import torch

    from llmseg_mlflow.baseline import train
    from llmseg_mlflow.evaluation import nnunet_inference as predict

    torch.set_num_threads(1)  # nnU-Net's CPU default (all cores) spins OpenMP threads: 10x slower steps here
    say("stage planning")
    plans_id, plan_time = train.plan_and_preprocess(DATASET_ID, job.plan_processes)
    if job.device == "cpu" and "nnUNet_n_proc_DA" not in os.environ:
        # no augmentation workers on CPU: they compete with the one training thread (set after
        # planning, which fails with 0 processes)
        os.environ["nnUNet_n_proc_DA"] = "0"
    torch.set_num_threads(1)  # the planner set it to nnUNet_n_proc_DA (up to 12 threads)
    say(f"stage training {job.budget.epochs} epochs x {job.budget.iterations_per_epoch} iterations on {job.device}")
    trained = train.train(job.dataset_name, plans_id, job.fold, job.budget, job.device)
    say(f"stage predicting {len(job.heldout)} held-out images")
    start = time.monotonic()
    masks = predict.predict(trained.model_folder, job.fold, {k: Path(v) for k, v in job.heldout.items()}, job.device)
    predict_time = time.monotonic() - start
    out = Path(job.out_dir)
    # numpy's stub fears a key filling allow_pickle; the keys are image file names.
    np.savez_compressed(out / PREDICTIONS, **masks)  # type: ignore[arg-type]
    return {
        "plans_id": plans_id,
        "plan_time_s": plan_time,
        "train_time_s": trained.train_time_s,
        "predict_time_s": predict_time,
        "params_total": trained.params_total,
        "model_folder": str(trained.model_folder),
        "fold_folder": str(trained.fold_folder),
        "plans_file": str(trained.plans_file),
        "log_file": str(trained.log_file),
        "checkpoint": predict.CHECKPOINT,
        "predictions": str(out / PREDICTIONS),
        "curves": train.curves(trained.fold_folder),
    }


def main(argv: list[str]) -> int:
    """Run the job at argv[0]; result.json beside it."""
    path = Path(argv[0])
    job = Job.read(path)
    result = run(job)
    (Path(job.out_dir) / RESULT).write_text(json.dumps(result, indent=2))
    say("stage done")
    return 0


if __name__ == "__main__":  # nnU-Net spawns processes: they re-import this module without running it
    sys.exit(main(sys.argv[1:]))
