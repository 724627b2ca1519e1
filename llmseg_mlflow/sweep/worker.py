"""One job, run where an executor put it (a pool process or a Ray task): dispatch, log to a file, report."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmseg_mlflow.sweep.jobs import Job
from llmseg_mlflow.tracking.outage import is_tracking_outage


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs, picklable: the job, its inputs, the environment to run it in."""

    job: Job
    study: str
    model_arg: str  # what `generate` is given: the catalog key or replay:/abs/dir
    overrides: dict[str, Any]
    env: dict[str, str]  # MLFLOW_TRACKING_URI, LLMSEG_HOME, thread counts, ...
    log_file: str
    source_run: str | None = None  # budget jobs: the pipeline root to retrain
    baseline_epochs: int = 100
    baseline_iterations: int = 250
    data_root: str | None = None
    work_root: str | None = None
    models_file: str | None = None
    unsafe_no_sandbox: bool = False
    threads: int | None = None  # torch threads in this worker (CPU runs)
    dataset_digest: str | None = None  # the manifest digest of the driver's copy of the job's dataset


@dataclass
class Outcome:
    """What a worker reports back."""

    job: Job
    ok: bool
    run_id: str | None = None
    status: str | None = None
    reason: str = ""
    retryable: bool = False  # the platform failed, not the pipeline: the tracking server was away, or the worker died
    started_ms: int = 0
    inner_s: float = 0.0  # seconds inside the job (executor overhead = observed - inner)


def _configs(spec: JobSpec):
    """The job's config object and the function that runs it (imported lazily: each kind has its own module)."""
    job, ov = spec.job, spec.overrides
    data_root = Path(spec.data_root) if spec.data_root else None
    work_root = Path(spec.work_root) if spec.work_root else None
    limits = {k: ov[k] for k in ("timeout_s", "memory_gb") if k in ov}
    # what every job that runs LLM code takes from the sweep
    code: dict[str, Any] = {
        "unsafe_no_sandbox": spec.unsafe_no_sandbox,
        "models_file": Path(spec.models_file) if spec.models_file else None,
        "data_root": data_root,
        "work_root": work_root,
    }
    if job.kind == "generate":
        from llmseg_mlflow.generate import GenerateConfig, run_generate

        keys = ("epochs", "max_batches", "max_fix_rounds", "preflight", "no_cache", "stuck_after", "loop_hint")
        return run_generate, GenerateConfig(
            model=spec.model_arg,
            dataset=job.dataset,
            repeat=job.repeat,
            study=spec.study,
            **code,
            **limits,
            **{k: ov[k] for k in keys if k in ov},
        )
    if job.kind in ("budget", "seed"):
        from llmseg_mlflow.train import TrainConfig, run_train

        assert spec.source_run is not None  # reruns retrain a finished pipeline
        return run_train, TrainConfig(
            run_id=spec.source_run,
            epochs=job.budget,
            seed=job.seed,
            study=spec.study,
            unsafe_no_sandbox=spec.unsafe_no_sandbox,
            max_batches=ov.get("max_batches"),
            data_root=data_root,
            work_root=work_root,
            **limits,
        )
    if job.kind == "refine":
        from llmseg_mlflow.config import RefineConfig
        from llmseg_mlflow.refine import run_refine

        assert spec.source_run is not None and job.rounds is not None  # a refine continues a finished pipeline
        return run_refine, RefineConfig(
            run_id=spec.source_run,
            rounds=job.rounds,
            **code,
            **{k: ov[k] for k in ("preflight", "no_cache") if k in ov},
        )
    if job.kind == "baseline":
        from llmseg_mlflow.baseline.run import BaselineConfig, run_baseline

        return run_baseline, BaselineConfig(
            dataset=job.dataset,
            study=spec.study,
            epochs=job.budget or spec.baseline_epochs,
            iterations=spec.baseline_iterations,
            data_root=data_root,
            work_root=work_root,
        )
    raise ValueError(f"unknown job kind {job.kind!r}")


def check_node_data(spec: JobSpec) -> None:
    """Stop a job whose node holds other data than the driver (a per-node data root prepared differently)."""
    if not spec.dataset_digest:
        return
    import socket

    from llmseg_mlflow.catalog.datasets import get_dataset
    from llmseg_mlflow.catalog.prepare import ensure_prepared
    from llmseg_mlflow.paths import data_root

    prepared = ensure_prepared(get_dataset(spec.job.dataset), data_root(spec.data_root))
    if prepared.digest != spec.dataset_digest:
        raise DataMismatchError(
            f"dataset {spec.job.dataset!r} on {socket.gethostname()} ({prepared.root}) has manifest digest "
            f"{prepared.digest[:16]}, the sweep driver's copy {spec.dataset_digest[:16]}: the splits would differ. "
            "Share one data root between the machines, or prepare the same source with the same seed on each "
            "(`llmseg datasets prepare`)"
        )


class DataMismatchError(RuntimeError):
    """A node's prepared dataset is not the driver's."""


@contextmanager
def _output_to(path: Path) -> Iterator[Any]:
    """Send this process's stdout/stderr (fd level: children too) to the job's log file, then restore them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a", buffering=1) as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def execute_job(spec: JobSpec) -> Outcome:
    """Run one job; never raises (a failing pipeline must not stop the others)."""
    os.environ.update(spec.env)
    os.environ.pop("MLFLOW_RUN_ID", None)  # under `mlflow run`, each pipeline is its own root, not a child
    import mlflow

    mlflow.set_tracking_uri(spec.env.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri())
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    start, started_ms = time.monotonic(), int(time.time() * 1000)
    out = Outcome(spec.job, ok=False, started_ms=started_ms)
    with _output_to(Path(spec.log_file)) as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {spec.job.kind} {spec.job.label} (pid {os.getpid()})\n")
        try:
            check_node_data(spec)
            run, cfg = _configs(spec)
            result = run(cfg, lambda msg: log.write(msg.rstrip() + "\n"))
            out.ok, out.run_id, out.status = True, result.run_id, result.status
            if result.status == "harness_error":  # the platform failed mid-run; the root says why
                out.ok, out.reason = False, getattr(result, "error", None) or "harness_error"
                out.retryable = is_tracking_outage(out.reason)
        except BaseException as exc:  # noqa: BLE001 - reported as this job's failure; the sweep goes on
            traceback.print_exc(file=log)
            out.reason = f"{type(exc).__name__}: {exc}".strip()[:800]
            out.retryable = is_tracking_outage(exc)  # the server was away: the sweep may run it again
            if isinstance(exc, KeyboardInterrupt):
                out.reason = "interrupted (Ctrl-C)"
    out.inner_s = time.monotonic() - start
    return out
