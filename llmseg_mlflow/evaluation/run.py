"""The standardized evaluation of a trained pipeline: sandboxed inference, scores, compliance, logging."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from mlflow.artifacts import download_artifacts
from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import PreparedDataModifiedError, PreparedDataset, ensure_prepared
from llmseg_mlflow.config import EvaluateConfig
from llmseg_mlflow.errors import UsageError, bad_input
from llmseg_mlflow.evaluation import compliance, logged_model
from llmseg_mlflow.evaluation.evaluator import EvalOutput, EvalSettings, EvaluationError, code_files, evaluate_attempt
from llmseg_mlflow.evaluation.logged_model import PipelineModel
from llmseg_mlflow.evaluation.metrics import ImageScores
from llmseg_mlflow.evaluation.record import log_evaluation
from llmseg_mlflow.paths import data_root as data_root_of
from llmseg_mlflow.pipeline import sandbox
from llmseg_mlflow.pipeline.loop import LoopOutcome
from llmseg_mlflow.pipeline.record import choices
from llmseg_mlflow.pipeline.workspace import Workspace, attempt_logs, attempt_path
from llmseg_mlflow.tracking import describe
from llmseg_mlflow.tracking.runs import RunTree, check_tracking_server
from llmseg_mlflow.tracking.schema import Kind, Status
from llmseg_mlflow.tracking.summary import compliance_metrics

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b.*")
MODEL_TAGS = ("model", "provider", "year", "reasoning", "dataset", "repeat", "study", "seed", "budget")
_TAGS = ("eval_preprocessing", "eval_load", "eval_checkpoint", "eval_output", "eval_fallback_reason", "device")


@dataclass(frozen=True)
class TrainedPipeline:
    """What evaluating a pipeline needs: its attempt folder (code + saved models) and printed output."""

    attempt: Path
    stdout: str
    hyperparameters: dict[str, str]


def evaluate_pipeline(
    tree: RunTree,
    data: PreparedDataset,
    trained: TrainedPipeline,
    work_dir: Path,
    settings: EvalSettings,
    progress: Callable[[str], None] = lambda _: None,
) -> ImageScores | None:
    """Evaluate on the held-out set and log a `kind=evaluation` run; a failure is logged, not raised."""
    progress(f"evaluating on {data.n_heldout} held-out images ({settings.preprocessing} preprocessing)")
    try:
        out = evaluate_attempt(trained.attempt, data, work_dir, settings, trained.hyperparameters, save_model=True)
    except EvaluationError as exc:
        reason = one_line_reason(exc)
        with tree.child(Kind.EVALUATION, "evaluation", {"eval_error": reason}) as run:
            run.text(str(exc), "eval_error.txt")
            run.untrusted_artifact(work_dir / "logs", "logs")
            run.failed = True
        tree.root.tags({"evaluation_error": reason, "evaluation_run_id": tree.children[-1]})
        progress(f"evaluation failed: {reason}")
        return None
    items = compliance.check(
        code_files(trained.attempt), trained.attempt, trained.stdout, data.n_pool, _checkpoint_kinds(out.info)
    )
    quality = compliance_metrics(items)
    tags = {k: str(out.info[k])[:250] for k in _TAGS if k in out.info}
    model = _begin_model(tree, data, trained, out, progress)
    scores = log_evaluation(
        tree,
        data,
        out.predictions,
        tags,
        {"eval_time_s": out.duration_s, "forward_s": _number(out.info.get("forward_s")), **quality},
        model[0] if model else None,
    )
    tree.root.metrics(quality)
    if model:
        logged_model.finish_logging(*model, tree.root, progress)
    progress(
        f"held-out Dice mean {scores.summary()['heldout_dice_mean']:.3f} "
        f"({tags.get('eval_preprocessing')} preprocessing), compliance {quality['compliance_score']:.2f}"
    )
    return scores


def _begin_model(
    tree: RunTree, data: PreparedDataset, trained: TrainedPipeline, out: EvalOutput, progress: Callable[[str], None]
) -> tuple[PipelineModel, Callable[[Path], Path]] | None:
    """The pipeline's LoggedModel, created before the scores are logged so that they are its metrics, and how
    to build its folder; None (said, never raised) when it cannot be made: the evaluation stands without it."""
    try:
        whole = out.info.get("model_saved") == "ok"
        card = logged_model.card_for(data, out.info, trained.hyperparameters, whole)
        weights = out.folder / "out" / "model.pth" if whole else trained.attempt / card.weights
        code = code_files(trained.attempt)
        example = logged_model.example_image(data, card.in_channels)
        client = tree.root.client
        training = find_training_run(client, tree)
        root = client.get_run(tree.root.run_id).data.tags
        tags = {k: root[k] for k in MODEL_TAGS if k in root} | {"pipeline_run_id": tree.root.run_id}
        name = re.sub(r"[/:.%\"']+", "-", f"{root.get('model', 'pipeline')}-{card.dataset}-r{root.get('repeat', '0')}")
        model = PipelineModel.create(
            client, tree.experiment_id, training.info.run_id, name, tags, card, tree.root.run_id
        )
        return model, lambda dest: logged_model.write_model_dir(dest, card, code, weights, example)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be made must not cost the evaluation
        progress(f"no logged model for this pipeline: {type(exc).__name__}: {str(exc)[:300]}")
        return None


def _checkpoint_kinds(info: dict[str, object]) -> dict[str, str]:
    """The worker's file -> kind of the saved models ({} when info.json, written in the sandbox, holds no mapping)."""
    kinds = info.get("checkpoints")
    return {str(k): str(v) for k, v in kinds.items()} if isinstance(kinds, dict) else {}


def _number(value: object) -> float | None:
    """A number the worker reported (None when info.json, written in the sandbox, holds none)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def one_line_reason(exc: EvaluationError) -> str:
    """The line of a failed evaluation a reader needs: the exception the worker died of, else the first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line)), None)
    first = lines[0] if lines else type(exc).__name__
    return (f"{first.rstrip(':')}: {last}" if last and last != first else first)[:250]


# ---- re-evaluating a logged pipeline --------------------------------------------------------------


def find_training_run(client: MlflowClient, tree: RunTree):
    """The pipeline's (latest) `kind=training` child."""
    runs = client.search_runs(
        [tree.experiment_id],
        f"tags.mlflow.parentRunId = '{tree.root.run_id}' AND tags.kind = '{Kind.TRAINING.value}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise UsageError(
            f"pipeline {tree.root.run_id} has no training run (status "
            f"{client.get_run(tree.root.run_id).data.tags.get('status')!r}): nothing to evaluate"
        )
    return runs[0]


def load_trained(client: MlflowClient, tree: RunTree, stack: ExitStack) -> TrainedPipeline:
    """The attempt folder on disk where the pipeline ran, else downloaded from the training run."""
    root = client.get_run(tree.root.run_id)
    training = find_training_run(client, tree)
    attempt = training.data.tags.get("attempt", "")
    workspace = root.data.tags.get("workspace", "")
    local = attempt_path(Path(workspace), int(attempt), "full") if workspace and attempt.isdigit() else None
    if local is not None and (local / "results").is_dir():
        folder = local
        log = attempt_logs(local) / "full.stdout.log"
        stdout = log.read_text(errors="replace") if log.exists() else ""
    else:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmseg-eval-")))
        folder = Path(download_artifacts(run_id=training.info.run_id, artifact_path="attempt", dst_path=str(tmp)))
        try:
            logs = Path(download_artifacts(run_id=training.info.run_id, artifact_path="logs", dst_path=str(tmp)))
            stdout = (logs / "full.stdout.log").read_text(errors="replace")
        except Exception:  # noqa: BLE001 - compliance then counts the printed items as missing
            stdout = ""
    hyper = {k: v for k, v in root.data.params.items() if k in ("input_size", "final_activation")}
    return TrainedPipeline(folder, stdout, hyper)


def dataset_of(root_tags: dict[str, str], root_params: dict[str, str], data_root: Path) -> PreparedDataset:
    """The prepared dataset the pipeline trained on; a different held-out set is refused."""
    data = ensure_prepared(get_dataset(root_tags["dataset"]), data_root)
    logged = root_params.get("data_digest")
    if logged and logged != data.digest:
        raise UsageError(
            f"the prepared {data.spec.key!r} under {data_root} (digest {data.digest[:12]}) is not the "
            f"one this pipeline trained on (digest {logged[:12]}); point --data-root at that copy"
        )
    return data


def open_logged_pipeline(run_id: str, unsafe_no_sandbox: bool, data_root: Path | None):
    """(client, tree, root run, prepared dataset) of a logged pipeline; every input problem is a UsageError."""
    with bad_input(sandbox.SandboxUnavailable, PreparedDataModifiedError):
        if not unsafe_no_sandbox:
            sandbox.check_available()
        check_tracking_server()
        client = MlflowClient()
        try:
            tree = RunTree.attach(client, run_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        root = client.get_run(run_id)
        data = dataset_of(root.data.tags, root.data.params, data_root_of(data_root))
        data.verify_heldout()
    return client, tree, root, data


def run_evaluate(cfg: EvaluateConfig, progress: Callable[[str], None] = lambda _: None) -> ImageScores | None:
    """A new evaluation run under an existing pipeline root."""
    client, tree, _, data = open_logged_pipeline(cfg.run_id, cfg.unsafe_no_sandbox, cfg.data_root)
    launch = os.environ.get("MLFLOW_RUN_ID")
    if launch and launch != cfg.run_id:  # under `mlflow run -e evaluate`: say what the launch run did
        client.set_tag(launch, "kind", Kind.LAUNCH.value)
        client.set_tag(launch, "pipeline_run_id", cfg.run_id)
    settings = EvalSettings(
        cfg.preprocessing, sandbox.Limits(cfg.timeout_s, cfg.memory_gb), unsafe_no_sandbox=cfg.unsafe_no_sandbox
    )
    with ExitStack() as stack:
        trained = load_trained(client, tree, stack)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmseg-eval-work-")))
        scores = evaluate_pipeline(tree, data, trained, work / "evaluation", settings, progress)
    describe.update(client, cfg.run_id, progress)
    return scores


def eval_timeout(timeout_s: float, eval_timeout_s: float | None) -> float:
    """The held-out evaluation's wall-clock limit: its own if given, else a quarter of the training's (>= 300 s)."""
    return eval_timeout_s if eval_timeout_s else max(300.0, timeout_s / 4)


def evaluate_trained(
    tree: RunTree,
    data: PreparedDataset,
    out: LoopOutcome,
    ws: Workspace,
    preprocessing: str,
    unsafe_no_sandbox: bool,
    limits: sandbox.Limits,
    progress: Callable[[str], None],
) -> float | None:
    """The held-out evaluation of the attempt that trained; returns its mean Dice. A failed evaluation sets
    the status to evaluation_failed (the root's `evaluation_error` tag says why) and returns None."""
    attempt = out.success
    assert attempt is not None
    trained = TrainedPipeline(attempt.folder, attempt.result.stdout_text(), choices(out.files))
    settings = EvalSettings(preprocessing, limits, unsafe_no_sandbox=unsafe_no_sandbox)
    scores = evaluate_pipeline(tree, data, trained, ws.root / "evaluation", settings, progress)
    if scores is None:
        out.status = Status.EVALUATION_FAILED
        return None
    return scores.summary()["heldout_dice_mean"]
