"""The `generate` job: one (model, dataset, repeat) from prompt to trained pipeline, logged as a run tree."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import replace

from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.models import ModelSpec, get_model
from llmseg_mlflow.catalog.prepare import PreparedDataModifiedError, ensure_prepared
from llmseg_mlflow.config import GenerateConfig
from llmseg_mlflow.errors import bad_input
from llmseg_mlflow.evaluation.run import eval_timeout, evaluate_trained
from llmseg_mlflow.llm import tracing
from llmseg_mlflow.llm.base import LLMError
from llmseg_mlflow.llm.cache import build_provider
from llmseg_mlflow.paths import data_root, work_root
from llmseg_mlflow.pipeline import prompt, sandbox
from llmseg_mlflow.pipeline.execute import default_disk_gb
from llmseg_mlflow.pipeline.loop import AttemptLoop, LoopConfig
from llmseg_mlflow.pipeline.record import log_network, log_summary, log_training
from llmseg_mlflow.pipeline.workspace import Workspace
from llmseg_mlflow.tracking import datasets as tracked_data
from llmseg_mlflow.tracking import describe
from llmseg_mlflow.tracking.outage import is_tracking_outage
from llmseg_mlflow.tracking.result import GenerateResult
from llmseg_mlflow.tracking.runs import RunTree, check_tracking_server
from llmseg_mlflow.tracking.schema import Cohort, Status


def _cohort(model: ModelSpec, cfg: GenerateConfig) -> Cohort:
    return Cohort(
        model=model.key,
        year=model.year,
        reasoning=model.reasoning,
        dataset=cfg.dataset,
        repeat=cfg.repeat,
        study=cfg.study,
        provider=model.provider,
    )


def _override_value(source: str) -> str:
    """The value an override wrote, as text: '/x/pool' for "'/x/pool'", the source for Path('/x/pool')."""
    try:
        return str(ast.literal_eval(source))
    except (ValueError, SyntaxError):
        return source


def run_generate(cfg: GenerateConfig, progress: Callable[[str], None] = lambda _: None) -> GenerateResult:
    """Resolve inputs (failing before any run exists), then run and log one pipeline."""
    with bad_input(sandbox.SandboxUnavailable, LLMError, PreparedDataModifiedError):  # before any run exists
        model = get_model(cfg.model, cfg.models_file)
        spec = get_dataset(cfg.dataset)
        if not cfg.unsafe_no_sandbox:
            sandbox.check_available()
        provider = build_provider(model, cfg.dataset, cfg.repeat, cfg.cache_dir, cfg.no_cache)
        data = ensure_prepared(spec, data_root(cfg.data_root), progress)
        data.verify_heldout()  # cheap when unchanged; checked again before the evaluation
        template = prompt.load_template()
        text = prompt.render(template, data.prompt_fills())
        check_tracking_server()
        limits = sandbox.Limits(cfg.timeout_s, cfg.memory_gb, disk_gb=cfg.disk_gb or default_disk_gb(data))
        eval_limits = replace(limits, timeout_s=eval_timeout(cfg.timeout_s, cfg.eval_timeout_s))
        limit_notes = sandbox.check_limits(limits, work_root(cfg.work_root))
    for note in limit_notes:
        progress(f"WARNING: {note}")

    client = MlflowClient()
    tree = RunTree.open(client, _cohort(model, cfg))
    run_id = tree.root.run_id
    ws = Workspace(work_root(cfg.work_root) / run_id)
    progress(f"pipeline {tree.cohort.run_name}: run {run_id}, folder {ws.root}")
    loop_cfg = LoopConfig(
        limits=limits,
        max_fix_rounds=cfg.max_fix_rounds,
        epochs=cfg.epochs,
        max_batches=cfg.max_batches,
        preflight=cfg.preflight,
        unsafe_no_sandbox=cfg.unsafe_no_sandbox,
        stuck_after=cfg.stuck_after,
        loop_hint=cfg.loop_hint,
        llm_name=f"{model.provider}:{model.api_model or model.key}",
    )
    loop = AttemptLoop(tree, provider, data, ws, loop_cfg, progress)
    dice = None
    try:  # from here on, whatever fails is the platform's failure: the root says so and the JSON line comes
        registered = prompt.register(template)
        prompt.link(client, registered.uri, run_id)
        tree.root.params(
            {
                "llm.api_model": model.api_model,
                "llm.replay_dir": str(model.replay_dir) if model.provider == "replay" else None,
                "llm.settings": model.settings or None,
                "prompt_uri": registered.uri,
                "max_fix_rounds": cfg.max_fix_rounds,
                "stuck_after": cfg.stuck_after,
                "loop_hint": None if cfg.loop_hint is None else "default" if cfg.loop_hint == "default" else "custom",
                "timeout_s": cfg.timeout_s,
                "memory_gb": cfg.memory_gb,
                "disk_gb": limits.disk_gb,
                "max_processes": limits.max_processes,
                "eval_timeout_s": eval_limits.timeout_s,
                "data_digest": data.digest,
                "override.epochs": cfg.epochs,
                "override.max_batches": cfg.max_batches,
                "unsafe_no_sandbox": cfg.unsafe_no_sandbox or None,
            }
        )
        tree.root.tags(
            {"status": Status.RUNNING.value, "workspace": str(ws.root), "sandbox_limits": sandbox.enforcement()}
        )
        tracked_data.log_prepared(client, run_id, data)
        tree.root.text(text, "prompt.md")
        out = loop.run(text, registered.uri)
        extra = log_training(tree, out) if out.success else {}
        if out.success:
            extra.update(log_network(tree, out.success.folder, data, limits, cfg.unsafe_no_sandbox, progress))
        if out.success:
            tree.root.params(
                {f"override.{o.role}": _override_value(o.new) for o in out.success.overrides if o.role != "epochs"}
            )
            tree.root.json([o.__dict__ for o in out.success.overrides], "overrides.json")
        if out.status == Status.SUCCEEDED and cfg.evaluate:
            dice = evaluate_trained(
                tree, data, out, ws, cfg.eval_preprocessing, cfg.unsafe_no_sandbox, eval_limits, progress
            )
        log_summary(tree, out, ws, extra)
    except BaseException as exc:
        loop.out.status = Status.HARNESS_ERROR
        for step in (tracing.flush, lambda: log_summary(tree, loop.out, ws, {})):
            try:
                step()
            except Exception:  # noqa: BLE001 - keep what can be kept; the reason below is what matters
                pass
        reason = tree.fail_harness(exc)
        if isinstance(exc, Exception) and not is_tracking_outage(exc):  # an outage would only be waited on again
            describe.update(client, run_id, progress)
        if not isinstance(exc, Exception):  # Ctrl-C and the like: marked, then passed on
            raise
        progress(f"pipeline {tree.cohort.run_name}: harness_error: {reason}")
        return GenerateResult(run_id, Status.HARNESS_ERROR.value, sum(loop.out.errors.values()), None, reason)
    tracing.flush()
    describe.update(client, run_id, progress)
    tree.finish(failed=out.status == Status.EVALUATION_FAILED)
    progress(f"pipeline {tree.cohort.run_name}: {out.status.value}")
    return GenerateResult(run_id, out.status.value, sum(out.errors.values()), dice)
