"""The `baseline` job: nnU-Net v2 (2d, default configuration) on a dataset's pool under a fixed budget,
scored on its held-out set by the shared evaluator, logged as a pipeline run tree (docs/baseline.md)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image
from tqdm import tqdm

from llmseg_mlflow.baseline import convert as nnraw
from llmseg_mlflow.baseline.train import CONFIGURATION, TRAINER, Budget, nnunet_env
from llmseg_mlflow.baseline.worker import PREFIX, RESULT, Job
from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import PreparedDataModifiedError, PreparedDataset, ensure_prepared
from llmseg_mlflow.config import BaselineConfig
from llmseg_mlflow.errors import UsageError, bad_input
from llmseg_mlflow.evaluation import logged_model
from llmseg_mlflow.evaluation.logged_model import ModelCard, PipelineModel
from llmseg_mlflow.evaluation.nnunet_inference import CHECKPOINT
from llmseg_mlflow.evaluation.record import log_evaluation
from llmseg_mlflow.paths import baselines_root, data_root
from llmseg_mlflow.pipeline import sandbox, usage_sampler
from llmseg_mlflow.pipeline.execute import default_disk_gb
from llmseg_mlflow.pipeline.slots import training_slot
from llmseg_mlflow.tracking import datasets as tracked_data
from llmseg_mlflow.tracking import describe
from llmseg_mlflow.tracking.result import GenerateResult
from llmseg_mlflow.tracking.runs import RunLogger, RunTree, check_tracking_server
from llmseg_mlflow.tracking.schema import Cohort, Kind, Status

MODEL = "nnunet-v2"
PROVIDER = "nnunet"
EVAL_TAGS = {
    "eval_preprocessing": "nnunet",
    "eval_load": "nnunet_checkpoint",
    "eval_checkpoint": CHECKPOINT,
    "eval_output": "nnunet_segmentation",
}
TAIL_LINES = 40  # of nnU-Net's output, in the `error` tag when it crashes
# The folder holding the llmseg_mlflow package: the checkout (editable install) or site-packages.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _limits(cfg: BaselineConfig, data: PreparedDataset) -> sandbox.Limits:
    """nnU-Net's sandbox caps: its own timeout, nine tenths of the machine's memory, room for its preprocessed copy."""
    import psutil

    memory = cfg.memory_gb or 0.9 * psutil.virtual_memory().total / 1024**3
    return sandbox.Limits(timeout_s=cfg.timeout_s, memory_gb=memory, disk_gb=2 * default_disk_gb(data))


def _budget(cfg: BaselineConfig) -> Budget:
    """Epochs, iterations per epoch and validation iterations."""
    val = cfg.val_iterations if cfg.val_iterations is not None else max(1, round(cfg.iterations / 5))
    return Budget(cfg.epochs, cfg.iterations, val)


class NnUNetFailed(RuntimeError):
    """nnU-Net's process exited with an error; the message ends with its last output lines."""


def _check(cfg: BaselineConfig) -> str:
    """Validate the numbers and pick the device; UsageError on nonsense."""
    if cfg.epochs < 1 or cfg.iterations < 1 or _budget(cfg).val_iterations < 1:
        raise UsageError(
            f"the budget needs epochs >= 1 and iterations >= 1 (got epochs={cfg.epochs}, "
            f"iterations={cfg.iterations}, val_iterations={_budget(cfg).val_iterations})"
        )
    if cfg.fold != "all" and cfg.fold not in range(5):
        raise UsageError(f"fold must be 0-4 or 'all', got {cfg.fold!r}")
    if cfg.device is not None:
        if cfg.device not in ("cuda", "cpu"):
            raise UsageError(f"device must be 'cuda' or 'cpu', got {cfg.device!r}")
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _stage(data: PreparedDataset, base: Path, progress: Callable[[str], None]) -> tuple[Path, nnraw.RawDataset]:
    """Convert into a staging folder before any run exists, so bad input leaves nothing logged."""
    staging = base / f".staging-{uuid.uuid4().hex[:12]}"
    try:
        raw = nnraw.convert(data, staging / "nnUNet_raw", progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, raw


def _worker_env(work: Path) -> dict[str, str]:
    """What the sandboxed worker gets on top of the scratch environment: nnU-Net's folders and settings only."""
    env = {k: v for k, v in os.environ.items() if k.startswith("nnUNet_")}  # e.g. nnUNet_n_proc_DA
    env.update({**nnunet_env(work), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    return env


class _Progress:
    """Turns nnU-Net's per-epoch prints into a tqdm bar and the worker's stage lines into messages."""

    _EPOCH_END = re.compile(r"Epoch time: ")
    _VALUE = re.compile(r"(train_loss|val_loss|Pseudo dice) (.+)$")

    def __init__(self, epochs: int, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.bar = tqdm(total=epochs, desc="nnU-Net epochs", unit="epoch", leave=False)
        self.postfix: dict[str, str] = {}

    def line(self, text: str) -> None:
        if text.startswith(PREFIX):
            self.progress("nnU-Net " + text[len(PREFIX) :].strip().removeprefix("stage "))
            return
        found = self._VALUE.search(text)
        if found:  # "Pseudo dice [np.float32(0.6261)]": the first number
            number = re.search(r"-?\d+\.\d+(?:e-?\d+)?", found.group(2))
            self.postfix[found.group(1).replace("Pseudo dice", "val_dice")] = number.group(0) if number else "?"
        elif self._EPOCH_END.search(text):
            self.bar.update()
            self.bar.set_postfix(self.postfix, refresh=True)

    def close(self) -> None:
        self.bar.close()


def worker_logs(work: Path) -> Path:
    """nnU-Net's output lands beside its work folder: outside the only folder it may write."""
    return work.with_name(f"{work.name}.logs")


def _run_worker(
    job: Job, work: Path, limits: sandbox.Limits, progress: Callable[[str], None]
) -> tuple[dict, list[usage_sampler.Sample]]:
    """Run nnU-Net's process in the sandbox to the end; its output goes to <work>.logs/nnunet.log.
    Returns the worker's result and what it used over time (the training run's system metrics).

    nnU-Net is not generated code, but it gets the same guarantees: no keys, no network, capped memory,
    processes and disk. NnUNetFailed on a crash.
    """
    job_file = work / "job.json"
    job.write(job_file)
    log_dir = worker_logs(work)
    shown = _Progress(job.budget.epochs, progress)
    tail: list[str] = []

    def line(text: str) -> None:
        nonlocal tail
        shown.line(text)
        tail = (tail + [text])[-TAIL_LINES:]

    # The worker imports this package: its source folder is bound read-only (an editable install points there).
    mounts = sandbox.Mounts(work, readonly=(PACKAGE_ROOT,))
    argv = [
        "/bin/sh",
        "-c",
        'exec "$0" "$@" 2>&1',
        sys.executable,
        "-m",
        "llmseg_mlflow.baseline.worker",
        str(job_file),
    ]
    with training_slot() as slot_env:  # under a sweep with --training-slots, nnU-Net waits its turn too
        try:
            result = sandbox.run(
                argv,
                mounts,
                limits,
                log_dir=log_dir,
                name="nnunet",
                env={
                    **_worker_env(work),
                    **slot_env,
                    "PYTHONPATH": f"{PACKAGE_ROOT}:{sandbox.scratch_env()['PYTHONPATH']}",
                },
                on_line=line,
                sample_usage_s=usage_sampler.INTERVAL_S,
            )
        finally:
            shown.close()
            (log_dir / "nnunet.stdout.log").replace(log_dir / "nnunet.log")
    result_file = work / RESULT
    if not result.ok or not result_file.is_file():
        why = (
            f"was stopped after {limits.timeout_s:g} s"
            if result.timed_out
            else f"used more than {limits.memory_gb:g} GB of memory"
            if result.out_of_memory
            else f"exited with code {result.returncode}"
        )
        raise NnUNetFailed(f"nnU-Net {why}; last lines of {log_dir / 'nnunet.log'}:\n" + "\n".join(tail))
    return json.loads(result_file.read_text()), result.usage


def _log_training(tree: RunTree, run: RunLogger, result: dict, raw: nnraw.RawDataset, log_checkpoint: bool) -> None:
    """Curves, times, size and nnU-Net's files on the training run; the root's share on the root."""
    curves = result["curves"]
    fit_time = result["plan_time_s"] + result["train_time_s"]
    shared = {
        "train_time_s": fit_time,
        "params_total": result["params_total"],
        "epochs_trained": len(curves["train_loss"]),
    }
    run.metrics({**shared, "plan_time_s": result["plan_time_s"], "fit_time_s": result["train_time_s"]})
    tree.root.metrics({**shared, "errors_total": 0})
    for key, values in curves.items():
        run.curve(key, values)
    for key in ("train_loss", "val_loss", "val_dice"):
        tree.root.curve(key, curves[key])
    fold = Path(result["fold_folder"])
    for logger in (run, tree.root):
        logger.artifact(Path(result["plans_file"]), "nnunet")
        logger.artifact(raw.dataset_json, "nnunet")
    run.artifact(Path(result["log_file"]), "logs")
    for name in ("progress.png", "debug.json"):
        run.artifact(fold / name, "nnunet")
    if log_checkpoint:
        run.artifact(fold / CHECKPOINT, "checkpoint")


def _heldout_predictions(data: PreparedDataset, path: Path) -> dict[str, np.ndarray]:
    """nnU-Net's masks at the ground truth's resolution (nearest-neighbour where the sizes differ)."""
    with np.load(path) as saved:
        masks = {k: saved[k] for k in saved.files}
    for image, mask in data.heldout_pairs():
        shape = data.read_mask(mask).shape
        if masks[image.name].shape != shape:
            resized = Image.fromarray(masks[image.name]).resize(shape[::-1], Image.Resampling.NEAREST)
            masks[image.name] = np.asarray(resized)
    return masks


def run_baseline(cfg: BaselineConfig, progress: Callable[[str], None] = lambda _: None) -> GenerateResult:
    """Resolve and convert the data (failing before any run exists), then train, predict and log nnU-Net."""
    base = baselines_root(cfg.work_root)
    with bad_input(sandbox.SandboxUnavailable, PreparedDataModifiedError):
        sandbox.check_available()
        device = _check(cfg)
        spec = get_dataset(cfg.dataset)
        data = ensure_prepared(spec, data_root(cfg.data_root))
        data.verify_heldout()  # nnU-Net is scored on it: a changed file fails here, before any run exists
        check_tracking_server()
        staging, raw = _stage(data, base, progress)

    client = MlflowClient()
    cohort = Cohort(
        model=MODEL,
        year=None,
        reasoning=None,
        dataset=cfg.dataset,
        repeat=cfg.repeat,
        study=cfg.study,
        provider=PROVIDER,
    )
    try:
        tree = RunTree.open(client, cohort)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    run_id = tree.root.run_id
    work = base / run_id
    staging.rename(work)
    raw = dataclasses.replace(raw, folder=work / "nnUNet_raw" / raw.name)
    progress(
        f"baseline {cohort.run_name}: run {run_id}, folder {work}, {device}, "
        f"{cfg.epochs} epochs x {cfg.iterations} iterations"
    )
    budget = _budget(cfg)
    try:
        tree.root.tags({"status": Status.RUNNING.value, "baseline": "true", "workspace": str(work)})
        tree.root.params(
            {
                "epochs": budget.epochs,
                "iterations_per_epoch": budget.iterations_per_epoch,
                "val_iterations": budget.val_iterations,
                "configuration": CONFIGURATION,
                "fold": cfg.fold,
                "trainer": TRAINER,
                "nnunet_version": version("nnunetv2"),
                "device": device,
                "data_digest": data.digest,
            }
        )
        tracked_data.log_prepared(client, run_id, data)
        job = Job(
            dataset_name=raw.name,
            fold=cfg.fold,
            budget=budget,
            device=device,
            plan_processes=max(1, min(8, os.cpu_count() or 1)),
            heldout={name: str(raw.heldout_image(case)) for case, name in raw.heldout_cases.items()},
            out_dir=str(work),
        )
        with tree.child(Kind.TRAINING, "training", {"trainer": TRAINER, "device": device}) as run:
            try:
                result, usage = _run_worker(job, work, _limits(cfg, data), progress)
            finally:
                run.artifact(worker_logs(work) / "nnunet.log", "logs")
            _log_training(tree, run, result, raw, cfg.log_checkpoint)
            run.points(usage_sampler.as_metrics(usage))  # planning, preprocessing, training and prediction
        model = _begin_model(tree, data, raw, cfg, run.run_id, progress)
        predictions = _heldout_predictions(data, Path(result["predictions"]))
        scores = log_evaluation(
            tree,
            data,
            predictions,
            tags=EVAL_TAGS,
            metrics={"predict_time_s": result["predict_time_s"]},
            model=model[0] if model else None,
        )
        if model:
            folder = Path(result["model_folder"])  # nnU-Net's trained-model folder: plans.json, dataset.json, fold_k/
            extra = [p for p in (folder / "plans.json", folder / "dataset.json") if p.is_file()]
            build = partial(
                logged_model.write_nnunet_dir, card=model[1], model_folder=folder, extra=extra, example=model[2]
            )
            logged_model.finish_logging(model[0], build, tree.root, progress)
    except NnUNetFailed as exc:
        _fail(tree, Status.FAILED_TRAINING, exc)
        describe.update(client, run_id, progress)
        progress(f"baseline {cohort.run_name}: nnU-Net failed; see logs/nnunet.log of run {run_id}")
        return GenerateResult(run_id, Status.FAILED_TRAINING.value, 0)
    except BaseException as exc:  # the platform failed, not nnU-Net: the same one-line reason as generate's
        tree.fail_harness(exc)
        raise
    tree.root.tags({"status": Status.SUCCEEDED.value})
    describe.update(client, run_id, progress)
    tree.finish()
    dice = scores.summary()["heldout_dice_mean"]
    progress(f"baseline {cohort.run_name}: held-out Dice {dice:.4f}")
    return GenerateResult(run_id, Status.SUCCEEDED.value, 0, dice)


def _begin_model(
    tree: RunTree, data: PreparedDataset, raw: nnraw.RawDataset, cfg: BaselineConfig, training_id: str, progress
) -> tuple[PipelineModel, ModelCard, np.ndarray | None] | None:
    """nnU-Net's LoggedModel, created before the scores so that they are its metrics (None, said, when it
    cannot be made: the baseline stands without it)."""
    try:
        channels = len(json.loads(raw.dataset_json.read_text())["channel_names"])
        card = logged_model.nnunet_card(data, channels, cfg.fold, CHECKPOINT)
        tags = {"model": MODEL, "provider": PROVIDER, "dataset": cfg.dataset, "repeat": str(cfg.repeat)}
        tags |= {"study": cfg.study, "baseline": "true", "pipeline_run_id": tree.root.run_id}
        name = f"{MODEL}-{cfg.dataset}-r{cfg.repeat}".replace(".", "-")
        model = PipelineModel.create(
            tree.root.client, tree.experiment_id, training_id, name, tags, card, tree.root.run_id
        )
        return model, card, logged_model.example_image(data, channels)
    except Exception as exc:  # noqa: BLE001
        progress(f"no logged model for the baseline: {type(exc).__name__}: {str(exc)[:300]}")
        return None


def _fail(tree: RunTree, status: Status, exc: BaseException) -> None:
    """Mark the root FAILED with the status and the error; what was logged stays."""
    try:
        message = f"{type(exc).__name__}: {exc}"
        if len(message) > 5000:  # keep the head (what failed) and the tail (nnU-Net's last words)
            message = message[:600] + "\n...\n" + message[-4300:]
        tree.root.tags({"status": status.value, "error": message})
        tree.root.metrics({"errors_total": 0})
    finally:
        tree.finish(failed=True)
