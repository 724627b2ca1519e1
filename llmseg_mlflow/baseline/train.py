"""nnU-Net v2 in-process: plan and preprocess (2d), then train the default trainer under a fixed budget.

Runs inside the baseline's worker process (worker.py), never in the caller: nnU-Net reads its folders
from environment variables, sets torch's thread count and starts process pools.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CONFIGURATION = "2d"
PLANNER = "ExperimentPlanner"  # nnU-Net's default planner and plans (`nnUNetPlans`)
TRAINER = "nnUNetTrainer"


@dataclass(frozen=True)
class Budget:
    """The fixed training budget: epochs x iterations per epoch (+ validation iterations)."""

    epochs: int
    iterations_per_epoch: int
    val_iterations: int


@dataclass(frozen=True)
class Trained:
    """Where the trained model lies and what training took."""

    model_folder: Path  # nnUNet_results/<dataset>/<trainer>__<plans>__2d (holds plans.json, fold_X/)
    fold_folder: Path
    plans_file: Path
    log_file: Path
    params_total: int
    train_time_s: float


def nnunet_env(work: Path) -> dict[str, str]:
    """nnU-Net's three folders under the baseline's work folder."""
    return {
        "nnUNet_raw": str(work / "nnUNet_raw"),
        "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
        "nnUNet_results": str(work / "nnUNet_results"),
    }


def plan_and_preprocess(dataset_id: int, num_processes: int) -> tuple[str, float]:
    """Fingerprint, plan (default planner) and preprocess the 2d configuration; returns (plans id, seconds)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    start = time.monotonic()
    extract_fingerprints([dataset_id], num_processes=num_processes, check_dataset_integrity=True)
    plans_id = plan_experiments([dataset_id], experiment_planner_class_name=PLANNER)
    preprocess([dataset_id], plans_id, configurations=(CONFIGURATION,), num_processes=(num_processes,))
    return plans_id, time.monotonic() - start


def train(dataset_name: str, plans_id: str, fold: int | str, budget: Budget, device: str) -> Trained:
    """Train nnU-Net's default trainer on one fold with the budget; checkpoint_best/final in the fold folder."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    base = Path(os.fspath(nnUNet_preprocessed)) / dataset_name
    plans = load_json(str(base / f"{plans_id}.json"))
    plans["continue_training"] = False  # what nnU-Net's own get_trainer_from_args adds
    trainer = nnUNetTrainer(
        plans=plans,
        configuration=CONFIGURATION,
        fold=fold,
        dataset_json=load_json(str(base / "dataset.json")),
        device=torch.device(device),
    )
    # The budget, set where nnUNetTrainer.__init__ sets its defaults (1000 x 250, 50 validation):
    # initialize() reads them later (the poly learning-rate schedule spans num_epochs).
    trainer.num_epochs = budget.epochs
    trainer.num_iterations_per_epoch = budget.iterations_per_epoch
    trainer.num_val_iterations_per_epoch = budget.val_iterations
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # as nnU-Net's run_training does on a GPU
    start = time.monotonic()
    trainer.run_training()
    elapsed = time.monotonic() - start
    n_params = sum(p.numel() for p in trainer.network.parameters())
    fold_folder = Path(trainer.output_folder)
    return Trained(
        Path(trainer.output_folder_base),
        fold_folder,
        base / f"{plans_id}.json",
        Path(trainer.log_file),
        int(n_params),
        elapsed,
    )


def curves(fold_folder: Path) -> dict[str, list[float]]:
    """Per-epoch curves from checkpoint_final.pth's logging: nnU-Net's own record of training."""
    import torch

    log = torch.load(fold_folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)["logging"]
    return {
        "train_loss": [float(v) for v in log["train_losses"]],
        "val_loss": [float(v) for v in log["val_losses"]],  # Dice+CE with the Dice term negated: below 0
        "val_dice": [float(v) for v in log["mean_fg_dice"]],  # pseudo-Dice over the validation batches
        "val_dice_ema": [float(v) for v in log["ema_fg_dice"]],  # what picks checkpoint_best
        "lr": [float(v) for v in log["lrs"]],
        "epoch_time_s": [float(e - s) for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])],
    }
