"""The `generate` job: one (model, dataset, repeat) from prompt to trained pipeline, logged as a run tree."""
from __future__ import annotations

import ast
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import DatasetSpec, get_dataset
from llmseg_mlflow.catalog.models import ModelSpec, get_model
from llmseg_mlflow.catalog.prepare import (PreparedDataModifiedError, PreparedDataset, layout_changes,
                                           load_prepared, prepare_dataset)
from llmseg_mlflow.errors import bad_input
from llmseg_mlflow.llm import tracing
from llmseg_mlflow.llm.base import LLMError, Provider, make_provider
from llmseg_mlflow.llm.cache import CachedProvider
from llmseg_mlflow.pipeline import architecture, knobs, prompt, sandbox
from llmseg_mlflow.pipeline.execute import default_disk_gb
from llmseg_mlflow.pipeline.loop import AttemptLoop, LoopConfig, LoopOutcome, chat_json, chat_markdown
from llmseg_mlflow.pipeline.results import ResultsError, read_results
from llmseg_mlflow.pipeline.workspace import Workspace
from llmseg_mlflow.tracking import datasets as tracked_data
from llmseg_mlflow.tracking import summary
from llmseg_mlflow.tracking.runs import RunTree, check_tracking_server
from llmseg_mlflow.tracking.schema import Cohort, Kind, Status


@dataclass(frozen=True)
class GenerateConfig:
    """Everything one `generate` call needs; paths default under LLMSEG_HOME (~/.llmseg)."""

    model: str
    dataset: str
    repeat: int = 1
    study: str = "llmseg"
    epochs: int | None = None
    max_batches: int | None = None
    max_fix_rounds: int = 10
    stuck_after: int = 3  # the same error N times in a row ends the pipeline stuck_loop (0: never)
    loop_hint: str | None = None  # instead, send one supplementary message ("default": the documented text)
    timeout_s: float = 3 * 3600
    memory_gb: float = 16.0
    disk_gb: float | None = None  # the attempt folder's cap; None: max(20 GB, 10x the pool)
    eval_timeout_s: float | None = None  # None: a quarter of timeout_s, at least 300 s
    data_root: Path | None = None
    work_root: Path | None = None
    unsafe_no_sandbox: bool = False
    preflight: bool = True
    models_file: Path | None = None  # user's model YAML (else $LLMSEG_MODELS_FILE)
    no_cache: bool = False  # force fresh LLM calls (the replies are still stored)
    cache_dir: Path | None = None  # default $LLMSEG_CACHE_DIR or $LLMSEG_HOME/cache
    evaluate: bool = True  # held-out evaluation after a successful training
    eval_preprocessing: str = "auto"  # "auto": the pipeline's own where possible; "generic": resize + [0, 1]


@dataclass(frozen=True)
class GenerateResult:
    """What `generate` prints last, as JSON."""

    run_id: str
    status: str
    errors_total: int
    heldout_dice_mean: float | None = None
    error: str | None = None  # the one-line reason of a harness_error

    def as_dict(self) -> dict[str, object]:
        """The JSON line's fields."""
        fields: dict[str, object] = {"run_id": self.run_id, "status": self.status, "errors_total": self.errors_total,
                                     "heldout_dice_mean": self.heldout_dice_mean}
        if self.error:
            fields["error"] = self.error
        return fields


def eval_timeout(timeout_s: float, eval_timeout_s: float | None) -> float:
    """The held-out evaluation's wall-clock limit: its own if given, else a quarter of the training's (>= 300 s)."""
    return eval_timeout_s if eval_timeout_s else max(300.0, timeout_s / 4)


def llmseg_home() -> Path:
    """Root for prepared data and pipeline folders: $LLMSEG_HOME or ~/.llmseg."""
    return Path(os.environ.get("LLMSEG_HOME", Path.home() / ".llmseg")).expanduser().resolve()


def ensure_prepared(spec: DatasetSpec, data_root: Path,
                    progress: Callable[[str], None] | None = None) -> PreparedDataset:
    """The prepared dataset; synthetic ones are generated on first use, real ones must be prepared first.
    One prepared with other names or encodings than the entry says is prepared again (same split)."""
    prepared = load_prepared(spec, data_root)
    if prepared is not None:
        if layout_changes(prepared, spec):
            return prepare_dataset(spec, data_root, progress=progress)
        return prepared
    if spec.synthetic is None:
        raise FileNotFoundError(
            f"dataset {spec.key!r} is not prepared under {data_root}; run "
            f"`llmseg datasets prepare {spec.key} --source <download folder> --out {data_root}` first"
        )
    return prepare_dataset(spec, data_root)


def build_provider(model: ModelSpec, cfg: GenerateConfig, home: Path) -> Provider:
    """The model's provider; API providers answer through the response cache (replays need none)."""
    provider = make_provider(model, dataset=cfg.dataset, repeat=cfg.repeat)
    if model.provider == "replay":
        return provider
    root = cfg.cache_dir or Path(os.environ.get("LLMSEG_CACHE_DIR", home / "cache"))
    return CachedProvider(provider, model, cfg.repeat, root.expanduser().resolve(), read=not cfg.no_cache)


def _cohort(model: ModelSpec, cfg: GenerateConfig) -> Cohort:
    return Cohort(model=model.key, year=model.year, reasoning=model.reasoning, dataset=cfg.dataset,
                  repeat=cfg.repeat, study=cfg.study, provider=model.provider)


def log_training(tree: RunTree, out: LoopOutcome) -> dict[str, float]:
    """The training run: curves, outputs, logs, model summary. Returns the root's share of metrics."""
    attempt = out.success
    assert attempt is not None
    stdout = attempt.result.stdout_text()
    table = architecture.torchinfo_summary(stdout)
    root_metrics = summary.training_metrics(attempt.result.duration_s, architecture.params_total(stdout))
    with tree.child(Kind.TRAINING, "training", {"attempt": attempt.number}) as run:
        run.metrics({**root_metrics, "peak_rss_gb": attempt.result.peak_rss_gb,
                     "peak_memory_gb": attempt.result.peak_memory_gb,
                     "preflight_s": out.preflight.result.duration_s if out.preflight else None})
        # the code as run (overrides applied) and all it wrote: links, FIFOs, huge files are left out
        run.untrusted_artifact(attempt.folder, "attempt")
        run.artifact(attempt.result.stdout_path, "logs")
        run.artifact(attempt.result.stderr_path, "logs")
        if table:
            run.text(table, "model_summary.txt")
        try:
            results = read_results(attempt.folder)
        except ResultsError as exc:
            run.tags({"results_error": str(exc)[:500]})
            out.status = Status.FAILED_TRAINING
            return root_metrics
        run.json({"missing": results.missing, "problems": results.problems, "layouts": results.layouts,
                  "files": {k: str(v) for k, v in results.files.items()}}, "results.json")
        run.tags({f"layout.{name.removesuffix('.xlsx')}": where for name, where in results.layouts.items()})
        if not results.train_loss or not results.val_loss:
            out.status = Status.FAILED_TRAINING
            run.tags({"results_error": f"missing loss files: {', '.join(results.missing) or 'empty'}"})
        for key, values in (("train_loss", results.train_loss), ("val_loss", results.val_loss),
                            ("val_dice", results.val_dice)):
            run.curve(key, values)
            tree.root.curve(key, values)
        trained = summary.training_metrics(attempt.result.duration_s, epochs_trained=len(results.train_loss),
                                           own_test_dice_mean=results.own_test_dice_mean)
        root_metrics.update(trained)
        if results.own_test_dice_mean is not None:
            run.metrics({"own_test_dice_mean": results.own_test_dice_mean})
    return root_metrics


def log_network(tree: RunTree, folder: Path, data: PreparedDataset, limits: sandbox.Limits, unsafe_no_sandbox: bool,
                progress: Callable[[str], None]) -> dict[str, float]:
    """Tables 1-2's network columns on the root, from the final code built in the sandbox (`llmseg inspect`);
    returns the root's params_total (the built network's count beats the printed one)."""
    from llmseg_mlflow.pipeline.inspection import DEFAULT_LIMITS, NoModelClassError, inspect_pipeline

    try:
        row = inspect_pipeline(folder, replace(DEFAULT_LIMITS, memory_gb=min(DEFAULT_LIMITS.memory_gb, limits.memory_gb)),
                               unsafe_no_sandbox, channels=3 if data.spec.colour == "rgb" else 1)
    except NoModelClassError as exc:
        tree.root.params({"network_unavailable": str(exc)[:500]})
        return {}
    tree.root.params(row.as_params())
    progress(f"network: {row.encoder_stages} encoder / {row.decoder_stages} decoder stages, "
             f"{row.params_total or '?'} parameters" if not row.unavailable else f"network: unavailable ({row.unavailable})")
    return {"params_total": float(row.params_total)} if row.params_total else {}


def choices(files: dict[str, str]) -> dict[str, str]:
    """What the LLM chose (Tables 1-2), read from its code."""
    found = knobs.read_hyperparameters(files)
    if "model.py" in files:
        found["final_activation"] = architecture.final_activation(files["model.py"])
    return found


def evaluate_trained(tree: RunTree, data: PreparedDataset, out: LoopOutcome, ws: Workspace, preprocessing: str,
                     unsafe_no_sandbox: bool, limits: sandbox.Limits, progress: Callable[[str], None]) -> float | None:
    """The held-out evaluation of the attempt that trained; returns its mean Dice. A failed evaluation sets
    the status to evaluation_failed (the root's `evaluation_error` tag says why) and returns None."""
    from llmseg_mlflow.evaluation.evaluator import EvalSettings
    from llmseg_mlflow.evaluation.run import TrainedPipeline, evaluate_pipeline

    attempt = out.success
    assert attempt is not None
    trained = TrainedPipeline(attempt.folder, attempt.result.stdout_text(), choices(out.files))
    settings = EvalSettings(preprocessing, limits, unsafe_no_sandbox=unsafe_no_sandbox)
    scores = evaluate_pipeline(tree, data, trained, ws.root / "evaluation", settings, progress)
    if scores is None:
        out.status = Status.EVALUATION_FAILED
        return None
    return scores.summary()["heldout_dice_mean"]


def _log_summary(tree: RunTree, out: LoopOutcome, ws: Workspace, extra: dict[str, float]) -> None:
    """Root summary: status, error counts, usage, the LLM's choices, chat and code history."""
    root = tree.root
    root.tags({"status": out.status.value})
    root.metrics({**summary.loop_metrics(out.errors, out.fix_rounds, out.usage, out.cost_usd, out.interventions),
                  **extra})
    root.text(chat_json(out.messages), "chat/chat.json")
    root.text(chat_markdown(out.messages), "chat/chat.md")
    if out.files:
        root.params(choices(out.files))
        root.files(out.files, "code")
        with tempfile.TemporaryDirectory() as tmp:
            root.artifact(ws.bundle(Path(tmp) / "code_history.bundle"))


def _override_value(source: str) -> str:
    """The value an override wrote, as text: '/x/pool' for "'/x/pool'", the source for Path('/x/pool')."""
    try:
        return str(ast.literal_eval(source))
    except (ValueError, SyntaxError):
        return source


def run_generate(cfg: GenerateConfig, progress: Callable[[str], None] = lambda _: None) -> GenerateResult:
    """Resolve inputs (failing before any run exists), then run and log one pipeline."""
    home = llmseg_home()
    with bad_input(sandbox.SandboxUnavailable, LLMError, PreparedDataModifiedError):  # before any run exists
        model = get_model(cfg.model, cfg.models_file)
        spec = get_dataset(cfg.dataset)
        if not cfg.unsafe_no_sandbox:
            sandbox.check_available()
        provider = build_provider(model, cfg, home)
        data = ensure_prepared(spec, (cfg.data_root or home / "data").resolve(), progress)
        data.verify_heldout()  # cheap when unchanged; checked again before the evaluation
        template = prompt.load_template()
        text = prompt.render(template, data.prompt_fills())
        check_tracking_server()
        limits = sandbox.Limits(cfg.timeout_s, cfg.memory_gb, disk_gb=cfg.disk_gb or default_disk_gb(data))
        eval_limits = replace(limits, timeout_s=eval_timeout(cfg.timeout_s, cfg.eval_timeout_s))
        limit_notes = sandbox.check_limits(limits, (cfg.work_root or home / "pipelines").resolve())
    for note in limit_notes:
        progress(f"WARNING: {note}")

    client = MlflowClient()
    tree = RunTree.open(client, _cohort(model, cfg))
    run_id = tree.root.run_id
    ws = Workspace((cfg.work_root or home / "pipelines").resolve() / run_id)
    progress(f"pipeline {tree.cohort.run_name}: run {run_id}, folder {ws.root}")
    loop_cfg = LoopConfig(limits=limits, max_fix_rounds=cfg.max_fix_rounds,
                          epochs=cfg.epochs, max_batches=cfg.max_batches, preflight=cfg.preflight,
                          unsafe_no_sandbox=cfg.unsafe_no_sandbox, stuck_after=cfg.stuck_after,
                          loop_hint=cfg.loop_hint,
                          llm_name=f"{model.provider}:{model.api_model or model.key}")
    loop = AttemptLoop(tree, provider, data, ws, loop_cfg, progress)
    dice = None
    try:  # from here on, whatever fails is the platform's failure: the root says so and the JSON line comes
        registered = prompt.register(template)
        tree.root.params({"llm.api_model": model.api_model, "llm.settings": model.settings or None,
                          "prompt_uri": registered.uri, "max_fix_rounds": cfg.max_fix_rounds,
                          "stuck_after": cfg.stuck_after,
                          "loop_hint": None if cfg.loop_hint is None else "default" if cfg.loop_hint == "default" else "custom",
                          "timeout_s": cfg.timeout_s, "memory_gb": cfg.memory_gb, "disk_gb": limits.disk_gb,
                          "max_processes": limits.max_processes, "eval_timeout_s": eval_limits.timeout_s,
                          "data_digest": data.digest,
                          "override.epochs": cfg.epochs, "override.max_batches": cfg.max_batches,
                          "unsafe_no_sandbox": cfg.unsafe_no_sandbox or None})
        tree.root.tags({"status": Status.RUNNING.value, "workspace": str(ws.root),
                        "sandbox_limits": sandbox.enforcement()})
        tracked_data.log_prepared(client, run_id, data)
        tree.root.text(text, "prompt.md")
        out = loop.run(text, registered.uri)
        extra = log_training(tree, out) if out.success else {}
        if out.success:
            extra.update(log_network(tree, out.success.folder, data, limits, cfg.unsafe_no_sandbox, progress))
        if out.success:
            tree.root.params({f"override.{o.role}": _override_value(o.new)
                              for o in out.success.overrides if o.role != "epochs"})
            tree.root.json([o.__dict__ for o in out.success.overrides], "overrides.json")
        if out.status == Status.SUCCEEDED and cfg.evaluate:
            dice = evaluate_trained(tree, data, out, ws, cfg.eval_preprocessing, cfg.unsafe_no_sandbox,
                                    eval_limits, progress)
        _log_summary(tree, out, ws, extra)
    except BaseException as exc:
        loop.out.status = Status.HARNESS_ERROR
        for step in (tracing.flush, lambda: _log_summary(tree, loop.out, ws, {})):
            try:
                step()
            except Exception:  # noqa: BLE001 - keep what can be kept; the reason below is what matters
                pass
        reason = tree.fail_harness(exc)
        if not isinstance(exc, Exception):  # Ctrl-C and the like: marked, then passed on
            raise
        progress(f"pipeline {tree.cohort.run_name}: harness_error: {reason}")
        return GenerateResult(run_id, Status.HARNESS_ERROR.value, sum(loop.out.errors.values()), None, reason)
    tracing.flush()
    tree.finish(failed=out.status == Status.EVALUATION_FAILED)
    progress(f"pipeline {tree.cohort.run_name}: {out.status.value}")
    return GenerateResult(run_id, out.status.value, sum(out.errors.values()), dice)

