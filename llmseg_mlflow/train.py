"""The `train` job: a logged pipeline's final code re-run, then evaluated: with a forced epoch budget
(the paper's constant-epoch experiment, Fig. 4), with a seed (training-to-training variance), or both.

Everything else stays as the LLM chose; no LLM is called. The new pipeline root carries the source's
cohort tags plus `source_run=ID`, and `budget=N` and/or `seed=S` with `seed_source` (harness or code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from llmseg_mlflow.config import TrainConfig
from llmseg_mlflow.errors import UsageError, bad_input
from llmseg_mlflow.evaluation.run import eval_timeout, evaluate_trained, open_logged_pipeline
from llmseg_mlflow.paths import work_root
from llmseg_mlflow.pipeline import sandbox
from llmseg_mlflow.pipeline.execute import Budget, default_disk_gb, execute
from llmseg_mlflow.pipeline.loop import LoopOutcome
from llmseg_mlflow.pipeline.record import choices, log_training
from llmseg_mlflow.pipeline.seeding import seed_calls
from llmseg_mlflow.pipeline.workspace import Workspace
from llmseg_mlflow.tracking import datasets as tracked_data
from llmseg_mlflow.tracking import describe
from llmseg_mlflow.tracking.outage import is_tracking_outage
from llmseg_mlflow.tracking.result import GenerateResult
from llmseg_mlflow.tracking.runs import RunTree, logged_code
from llmseg_mlflow.tracking.schema import Cohort, Kind, Status


def run_train(cfg: TrainConfig, progress: Callable[[str], None] = lambda _: None) -> GenerateResult:
    """Train the source pipeline's final code again (`cfg.epochs` epochs, `cfg.seed`) as a new pipeline run."""
    if cfg.epochs is None and cfg.seed is None:
        raise UsageError("give --epochs N (a forced budget) or --seeds K (retrain with K seeds), or both")
    client, source, _, data = open_logged_pipeline(cfg.run_id, cfg.unsafe_no_sandbox, cfg.data_root)
    with bad_input():
        files = logged_code(client, cfg.run_id)

    limits = sandbox.Limits(cfg.timeout_s, cfg.memory_gb, disk_gb=default_disk_gb(data))
    c = source.cohort
    cohort = Cohort(c.model, c.year, c.reasoning, c.dataset, c.repeat, cfg.study or c.study, c.provider)
    tree = RunTree.open(client, cohort)
    name = (
        cohort.run_name + (f"/e{cfg.epochs}" if cfg.epochs else "") + (f"/s{cfg.seed}" if cfg.seed is not None else "")
    )
    own_seeds = seed_calls(files)
    tags: dict[str, object] = {MLFLOW_RUN_NAME: name, "source_run": cfg.run_id, "status": Status.RUNNING.value}
    if cfg.epochs:
        tags["budget"] = cfg.epochs
    if cfg.seed is not None:  # the harness seeds first; a seed the code sets itself comes later and wins
        tags |= {"seed": cfg.seed, "seed_source": "code" if own_seeds else "harness"}
    tree.root.tags(tags)
    ws = Workspace(work_root(cfg.work_root) / tree.root.run_id)
    tree.root.tags({"workspace": str(ws.root)})
    tree.root.params(
        {
            **choices(files),
            "override.epochs": cfg.epochs,
            "seed": cfg.seed,
            "code_seeds": "; ".join(own_seeds)[:500] or None,
            "override.max_batches": cfg.max_batches,
            "timeout_s": cfg.timeout_s,
            "memory_gb": cfg.memory_gb,
            "data_digest": data.digest,
            "unsafe_no_sandbox": cfg.unsafe_no_sandbox or None,
        }
    )
    tracked_data.log_prepared(client, tree.root.run_id, data)
    tree.root.files(files, "code")
    ws.commit(files, f"from pipeline {cfg.run_id}")
    progress(f"re-training {name} (run {tree.root.run_id})" + (f" for {cfg.epochs} epochs" if cfg.epochs else ""))
    dice = None
    try:
        attempt = execute(
            ws,
            files,
            data,
            1,
            "full",
            Budget(limits, cfg.epochs, cfg.max_batches, cfg.seed),
            cfg.unsafe_no_sandbox,
            progress,
        )
        out = LoopOutcome(Status.SUCCEEDED if attempt.ok else Status.FAILED_TRAINING, files, [])
        metrics: dict[str, float] = {"errors_total": 0 if attempt.ok else 1}
        if attempt.ok:
            out.success = attempt
            metrics.update(log_training(tree, out))
            if out.status == Status.SUCCEEDED and cfg.evaluate:
                dice = evaluate_trained(
                    tree,
                    data,
                    out,
                    ws,
                    cfg.eval_preprocessing,
                    cfg.unsafe_no_sandbox,
                    replace(limits, timeout_s=eval_timeout(cfg.timeout_s, None)),
                    progress,
                )
        else:
            assert attempt.error is not None
            with tree.child(
                Kind.DEBUG,
                "debug-1",
                {"error_type": attempt.error.error_type, "phase": "full", "answered": "false", "iteration": 1},
            ) as run:
                run.text(attempt.error.feedback, "traceback.txt")
                run.artifact(attempt.result.stdout_path, "logs")
                run.artifact(attempt.result.stderr_path, "logs")
            metrics[f"errors.{attempt.error.error_type}"] = 1
        tree.root.metrics(metrics)
        tree.root.tags({"status": out.status.value})
    except BaseException as exc:
        reason = tree.fail_harness(exc)
        if isinstance(exc, Exception) and not is_tracking_outage(exc):  # an outage would only be waited on again
            describe.update(client, tree.root.run_id, progress)
        if not isinstance(exc, Exception):
            raise
        progress(f"{name}: harness_error: {reason}")
        return GenerateResult(tree.root.run_id, Status.HARNESS_ERROR.value, 0, None, reason)
    describe.update(client, tree.root.run_id, progress)
    tree.finish(failed=out.status == Status.EVALUATION_FAILED)
    progress(f"{name}: {out.status.value}" + (f", held-out Dice {dice:.3f}" if dice is not None else ""))
    return GenerateResult(tree.root.run_id, out.status.value, int(metrics["errors_total"]), dice)
