"""The `refine` job: a pipeline's own results fed back into its conversation, in tracked rounds.

Round 0 is the pipeline as `generate` left it. Each round k is a `kind=refinement` child of the root with its
own generation, debug, training and evaluation children: the same fix loop, sandbox and limits as the root.
The feedback holds only what the pipeline can know of itself (pipeline/feedback.py); the held-out Dice of
each round is measured and logged, and the best round is picked by validation Dice, never held-out.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.models import REPLAY_PREFIX, ModelSpec, get_model
from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.config import RefineConfig
from llmseg_mlflow.errors import UsageError, bad_input
from llmseg_mlflow.evaluation.run import eval_timeout, evaluate_trained, open_logged_pipeline
from llmseg_mlflow.llm import tracing
from llmseg_mlflow.llm.base import LLMError, Message, Provider
from llmseg_mlflow.llm.cache import build_provider
from llmseg_mlflow.llm.replay import ReplayProvider
from llmseg_mlflow.paths import work_root
from llmseg_mlflow.pipeline import prompt, sandbox
from llmseg_mlflow.pipeline.feedback import FEEDBACK_NAME, RoundResults, feedback_path, render_feedback
from llmseg_mlflow.pipeline.loop import AttemptLoop, LoopConfig, LoopOutcome
from llmseg_mlflow.pipeline.record import log_summary, log_training
from llmseg_mlflow.pipeline.workspace import Workspace
from llmseg_mlflow.tracking import describe
from llmseg_mlflow.tracking.runs import RunTree, baseline_roots, logged_code
from llmseg_mlflow.tracking.schema import Kind, Status

# the root's param -> where the loop's setting comes from: a round runs under the root's own limits
_FLOAT_PARAMS = ("timeout_s", "memory_gb", "disk_gb", "eval_timeout_s")


@dataclass
class Round:
    """One round as logged: 0 is the pipeline itself."""

    number: int
    run_id: str
    status: str
    results: RoundResults
    heldout_dice: float | None


@dataclass(frozen=True)
class RefineResult:
    """What `refine` prints last, as JSON."""

    run_id: str
    rounds: int  # rounds the pipeline has now (round 0 not counted)
    new_rounds: int
    best_round: int
    heldout_dice_best: float | None
    llm_calls: int
    stopped: str | None = None  # "budget" when --budget-minutes ended it early
    status: str = "succeeded"  # the refine ran (each round's own status is on its run); as the other jobs say it

    def as_dict(self) -> dict[str, object]:
        """The JSON line's fields."""
        return {k: v for k, v in self.__dict__.items() if v is not None or k == "heldout_dice_best"}


def _history(client: MlflowClient, run_id: str) -> list[Message]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "chat/chat.json", tmp)
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing path
            raise UsageError(f"run {run_id} has no conversation (chat/chat.json): nothing to continue") from exc
        return [Message(m["role"], m["content"]) for m in json.loads(Path(path).read_text())]


def _series(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def _results(client: MlflowClient, run: Run) -> RoundResults:
    """What a round (or the root, round 0) reported about itself: no held-out number is read here."""
    metrics = run.data.metrics
    errors = {k.removeprefix("errors."): int(v) for k, v in metrics.items() if k.startswith("errors.")}
    params = metrics.get("params_total")
    return RoundResults(
        train_loss=_series(client, run.info.run_id, "train_loss"),
        val_loss=_series(client, run.info.run_id, "val_loss"),
        val_dice=_series(client, run.info.run_id, "val_dice"),
        train_time_s=metrics.get("train_time_s"),
        params_total=int(params) if params else None,
        errors=errors,
    )


def _rounds(client: MlflowClient, root: Run) -> list[Round]:
    """Round 0 (the root) and every logged refinement round, in order."""
    runs = client.search_runs(
        [root.info.experiment_id],
        f"tags.mlflow.parentRunId = '{root.info.run_id}' and tags.kind = '{Kind.REFINEMENT.value}'",
    )
    rounds = [Round(0, root.info.run_id, root.data.tags.get("status", ""), _results(client, root), None)]
    rounds[0].heldout_dice = root.data.metrics.get("heldout_dice_mean")
    for run in sorted(runs, key=lambda r: int(r.data.tags.get("round", 0))):
        rounds.append(
            Round(
                int(run.data.tags["round"]),
                run.info.run_id,
                run.data.tags.get("status", ""),
                _results(client, run),
                run.data.metrics.get("heldout_dice_mean"),
            )
        )
    return rounds


def best_of(rounds: list[Round]) -> Round:
    """The round with the highest validation Dice among those whose code trained (ties: the earlier)."""
    scored = [r for r in rounds if r.status == Status.SUCCEEDED.value and r.results.score is not None]
    return max(scored, key=lambda r: (r.results.score, -r.number)) if scored else rounds[0]


def _check_replay(provider: Provider, history: list[Message]) -> None:
    """A replay needs one more recorded reply than the conversation has used: say which file to write."""
    if not isinstance(provider, ReplayProvider):
        return
    used = sum(1 for m in history if m.role == "assistant")
    if len(provider.replies) <= used:
        raise UsageError(
            f"model {provider.spec.key} replays recorded replies and the conversation has used all {used} of "
            f"{provider.folder}; record the refinement reply as {used + 1:02d}.md (the answer to the feedback "
            "message, prompts/refine_feedback.md) to refine it"
        )


def _model_key(root: Run) -> str:
    """The root's model; a replay by the folder `generate` logged (its tag holds only the folder's name)."""
    folder = root.data.params.get("llm.replay_dir")
    return (
        f"{REPLAY_PREFIX}{folder}" if root.data.tags.get("provider") == "replay" and folder else root.data.tags["model"]
    )


def _baseline_val_dice(client: MlflowClient, root: Run) -> float | None:
    """nnU-Net's validation Dice on the same prepared pool (data_digest), from its latest baseline root."""
    tags, digest = root.data.tags, root.data.params.get("data_digest")
    same = baseline_roots(client, root.info.experiment_id, tags["dataset"], digest) if digest else []
    if not same:
        raise UsageError(
            f"--show-baseline: no finished nnU-Net baseline of dataset {tags['dataset']} on the same prepared data "
            f"in this experiment; run `llmseg baseline --dataset {tags['dataset']} --study {tags.get('study')}` first"
        )
    values = _series(client, same[0].info.run_id, "val_dice")
    return values[-1] if values else None


def _loop_config(root: Run, cfg: RefineConfig, model: ModelSpec) -> tuple[LoopConfig, sandbox.Limits]:
    p = root.data.params
    number = {k: float(p[k]) for k in _FLOAT_PARAMS if p.get(k) not in (None, "", "None")}
    base = sandbox.Limits()
    limits = sandbox.Limits(
        timeout_s=number.get("timeout_s", base.timeout_s),
        memory_gb=number.get("memory_gb", base.memory_gb),
        disk_gb=number.get("disk_gb", base.disk_gb),
        max_processes=int(p["max_processes"]) if p.get("max_processes", "").isdigit() else base.max_processes,
    )
    whole = {k: int(p[k]) for k in ("override.epochs", "override.max_batches") if p.get(k, "").isdigit()}
    loop = LoopConfig(
        limits=limits,
        max_fix_rounds=int(p.get("max_fix_rounds", 10)),
        epochs=whole.get("override.epochs"),
        max_batches=whole.get("override.max_batches"),
        preflight=cfg.preflight,
        unsafe_no_sandbox=cfg.unsafe_no_sandbox,
        stuck_after=int(p.get("stuck_after", 3)),
        llm_name=f"{model.provider}:{model.api_model or model.key}",
    )
    return loop, replace(limits, timeout_s=eval_timeout(limits.timeout_s, number.get("eval_timeout_s")))


@dataclass
class _Rounds:
    """What every round of one refine shares: where it logs, who answers, what it trains on, under which limits."""

    client: MlflowClient
    tree: RunTree
    provider: Provider
    data: PreparedDataset
    cfg: RefineConfig
    loop_cfg: LoopConfig
    eval_limits: sandbox.Limits
    prompt_uri: str
    progress: Callable[[str], None]

    def run(
        self, number: int, history: list[Message], files: dict[str, str], feedback: str
    ) -> tuple[Round, LoopOutcome]:
        """One round under the root: the feedback, the fix loop, training and the held-out evaluation."""
        tags = {"round": number, "status": Status.RUNNING.value}
        with self.tree.child(Kind.REFINEMENT, f"round-{number}", tags) as run:
            sub = RunTree(self.client, self.tree.experiment_id, self.tree.cohort, run)
            ws = Workspace(work_root(self.cfg.work_root) / run.run_id)
            ws.commit(files, f"refine round {number}: the code it starts from")
            run.tags({"workspace": str(ws.root)})
            prompt.link(self.client, self.prompt_uri, run.run_id)  # the round's feedback prompt, as its generation's
            loop = AttemptLoop(sub, self.provider, self.data, ws, self.loop_cfg, self.progress)
            loop.resume(history, files)
            out = loop.run(feedback, self.prompt_uri)
            extra = log_training(sub, out) if out.success else {}
            dice = None
            if out.status == Status.SUCCEEDED and self.cfg.evaluate:
                dice = evaluate_trained(
                    sub,
                    self.data,
                    out,
                    ws,
                    self.cfg.eval_preprocessing,
                    self.cfg.unsafe_no_sandbox,
                    self.eval_limits,
                    self.progress,
                )
            log_summary(sub, out, ws, extra)
        tracing.flush()
        results = _results(self.client, self.client.get_run(run.run_id))
        return Round(number, run.run_id, out.status.value, results, dice), out


def run_refine(cfg: RefineConfig, progress: Callable[[str], None] = lambda _: None) -> RefineResult:
    """Refine pipeline `cfg.run_id` until it has `cfg.rounds` rounds (or the time budget is spent)."""
    client, tree, root, data = open_logged_pipeline(cfg.run_id, cfg.unsafe_no_sandbox, cfg.data_root)
    tags = root.data.tags
    with bad_input(LLMError):
        if tags.get("baseline") == "true" or "budget" in tags or "seed" in tags:
            raise UsageError(
                f"run {cfg.run_id} is {'an nnU-Net baseline' if tags.get('baseline') == 'true' else 'a retraining'}: "
                "it has no conversation of its own; refine the LLM pipeline (its source_run) instead"
            )
        rounds = _rounds(client, root)
        if rounds[0].status != Status.SUCCEEDED.value:
            raise UsageError(
                f"pipeline {cfg.run_id} never ran to a result (status {rounds[0].status or 'unknown'}): there is "
                "nothing to feed back; refine a pipeline whose code trained"
            )
        done, best = rounds[-1].number, best_of(rounds)
        if done >= cfg.rounds:
            progress(
                f"pipeline {cfg.run_id} already has {done} refinement round(s) (asked: {cfg.rounds}): nothing to do"
            )
            return RefineResult(cfg.run_id, done, 0, best.number, best.heldout_dice, 0)
        model = get_model(cfg.model or _model_key(root), cfg.models_file)
        history = _history(client, rounds[-1].run_id)
        provider = build_provider(model, tags["dataset"], int(tags.get("repeat", 1)), cfg.cache_dir, cfg.no_cache)
        _check_replay(provider, history)
        template = Path(feedback_path() if cfg.feedback == "default" else cfg.feedback).read_text(encoding="utf-8")
        baseline = _baseline_val_dice(client, root) if cfg.show_baseline else None
        loop_cfg, eval_limits = _loop_config(root, cfg, model)
        files = logged_code(client, best.run_id)
    launch = os.environ.get("MLFLOW_RUN_ID")
    if launch and launch != cfg.run_id:  # under `mlflow run -e refine`: say what the launch run did
        client.set_tag(launch, "kind", Kind.LAUNCH.value)
        client.set_tag(launch, "pipeline_run_id", cfg.run_id)
    registered = prompt.register(template, FEEDBACK_NAME, "refine feedback template", "llmseg refine")
    steps = _Rounds(client, tree, provider, data, cfg, loop_cfg, eval_limits, registered.uri, progress)
    if done == 0:  # round 0's numbers open the root's per-round series
        tree.root.metrics({"refine.val_dice": best.results.score, "refine.heldout_dice": best.heldout_dice}, step=0)
    start, calls, stopped = time.monotonic(), 0, None
    for number in range(done + 1, cfg.rounds + 1):
        if cfg.budget_minutes and (time.monotonic() - start) / 60 >= cfg.budget_minutes:
            stopped = "budget"
            progress(f"--budget-minutes {cfg.budget_minutes:g} spent: no round {number}")
            break
        last = rounds[-1]
        note = (
            f"Your code of round {last.number} did not run (status {last.status}). The numbers below are of round "
            f"{best.number}, the best so far; its code is the one kept."
            if last.status != Status.SUCCEEDED.value
            else ""
        )
        progress(f"refine round {number} of {cfg.rounds}, from round {best.number}")
        current, out = steps.run(
            number, history, files, render_feedback(template, best.results, number, baseline, note)
        )
        calls += out.usage["calls"]
        before, history = best, out.messages
        rounds.append(current)
        best = best_of(rounds)
        files = out.files if best is current else logged_code(client, best.run_id)
        worse = current.status != Status.SUCCEEDED.value or (current.results.score or 0.0) < (
            before.results.score or 0.0
        )
        tree.root.metrics(
            {
                "refine.val_dice": current.results.score,
                "refine.heldout_dice": current.heldout_dice,
                "refine.tokens": float(
                    out.usage["tokens_in"] + out.usage["tokens_out"] + out.usage["tokens_reasoning"]
                ),
                "refine.cost_usd": out.cost_usd,
                "refine.worse": float(worse),
            },
            step=number,
        )
        progress(
            f"round {number}: {current.status}, validation Dice {current.results.score}; best: round {best.number}"
        )
    tree.root.metrics(
        {"refine_rounds": rounds[-1].number, "best_round": best.number, "heldout_dice_best": best.heldout_dice}
    )
    tree.root.tags({"best_round": best.number, **({"refine_stopped": stopped} if stopped else {})})
    describe.update(client, cfg.run_id, progress)
    return RefineResult(
        cfg.run_id, rounds[-1].number, rounds[-1].number - done, best.number, best.heldout_dice, calls, stopped
    )
