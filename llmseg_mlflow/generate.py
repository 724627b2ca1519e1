"""The `generate` job: one (model, dataset, repeat) from prompt to trained pipeline, logged as a run tree."""
from __future__ import annotations

import ast
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.datasets import DatasetSpec, get_dataset
from llmseg_mlflow.catalog.models import ModelSpec, get_model
from llmseg_mlflow.catalog.prepare import PreparedDataset, load_prepared, prepare_dataset
from llmseg_mlflow.errors import bad_input
from llmseg_mlflow.llm import tracing
from llmseg_mlflow.llm.base import LLMError, Provider, make_provider
from llmseg_mlflow.llm.cache import CachedProvider
from llmseg_mlflow.pipeline import architecture, knobs, prompt, sandbox
from llmseg_mlflow.pipeline.loop import AttemptLoop, LoopConfig, LoopOutcome, chat_json, chat_markdown
from llmseg_mlflow.pipeline.results import ResultsError, read_results
from llmseg_mlflow.pipeline.workspace import Workspace
from llmseg_mlflow.tracking import datasets as tracked_data
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
    timeout_s: float = 3 * 3600
    memory_gb: float = 16.0
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

    def as_dict(self) -> dict[str, object]:
        """The JSON line's fields."""
        return {"run_id": self.run_id, "status": self.status, "errors_total": self.errors_total,
                "heldout_dice_mean": self.heldout_dice_mean}


def llmseg_home() -> Path:
    """Root for prepared data and pipeline folders: $LLMSEG_HOME or ~/.llmseg."""
    return Path(os.environ.get("LLMSEG_HOME", Path.home() / ".llmseg")).expanduser().resolve()


def ensure_prepared(spec: DatasetSpec, data_root: Path) -> PreparedDataset:
    """The prepared dataset; synthetic ones are generated on first use, real ones must be prepared first."""
    prepared = load_prepared(spec, data_root)
    if prepared is not None:
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
    summary = architecture.torchinfo_summary(stdout)
    n_params = architecture.params_total(stdout)
    root_metrics: dict[str, float] = {"train_time_s": attempt.result.duration_s}
    if n_params is not None:
        root_metrics["params_total"] = n_params
    with tree.child(Kind.TRAINING, "training", {"attempt": attempt.number}) as run:
        run.metrics({**root_metrics, "peak_rss_gb": attempt.result.peak_rss_gb,
                     "preflight_s": out.preflight.result.duration_s if out.preflight else None})
        run.artifact(attempt.folder, "attempt")  # the code as run (overrides applied) and all it wrote
        run.artifact(attempt.result.stdout_path, "logs")
        run.artifact(attempt.result.stderr_path, "logs")
        if summary:
            run.text(summary, "model_summary.txt")
        try:
            results = read_results(attempt.folder)
        except ResultsError as exc:
            run.tags({"results_error": str(exc)[:500]})
            out.status = Status.FAILED_TRAINING
            return root_metrics
        run.json({"missing": results.missing, "problems": results.problems,
                  "files": {k: str(v) for k, v in results.files.items()}}, "results.json")
        if not results.train_loss or not results.val_loss:
            out.status = Status.FAILED_TRAINING
            run.tags({"results_error": f"missing loss files: {', '.join(results.missing) or 'empty'}"})
        for key, values in (("train_loss", results.train_loss), ("val_loss", results.val_loss),
                            ("val_dice", results.val_dice)):
            run.curve(key, values)
            tree.root.curve(key, values)
        if results.own_test_dice_mean is not None:
            root_metrics["own_test_dice_mean"] = results.own_test_dice_mean
            run.metrics({"own_test_dice_mean": results.own_test_dice_mean})
        root_metrics["epochs_trained"] = len(results.train_loss)
    return root_metrics


def choices(files: dict[str, str]) -> dict[str, str]:
    """What the LLM chose (Tables 1-2), read from its code."""
    found = knobs.read_hyperparameters(files)
    if "model.py" in files:
        found["final_activation"] = architecture.final_activation(files["model.py"])
    return found


def evaluate_trained(tree: RunTree, data: PreparedDataset, out: LoopOutcome, ws: Workspace, preprocessing: str,
                     unsafe_no_sandbox: bool, memory_gb: float, progress: Callable[[str], None]) -> float | None:
    """The held-out evaluation of the attempt that trained; returns its mean Dice (None if it failed)."""
    from llmseg_mlflow.evaluation.evaluator import EvalSettings
    from llmseg_mlflow.evaluation.run import TrainedPipeline, evaluate_pipeline

    attempt = out.success
    assert attempt is not None
    trained = TrainedPipeline(attempt.folder, attempt.result.stdout_text(), choices(out.files))
    settings = EvalSettings(preprocessing, sandbox.Limits(timeout_s=1800, memory_gb=memory_gb),
                            unsafe_no_sandbox=unsafe_no_sandbox)
    scores = evaluate_pipeline(tree, data, trained, ws.root / "evaluation", settings, progress)
    return None if scores is None else scores.summary()["heldout_dice_mean"]


def _log_summary(tree: RunTree, out: LoopOutcome, ws: Workspace, extra: dict[str, float]) -> None:
    """Root summary: status, error counts, usage, the LLM's choices, chat and code history."""
    root = tree.root
    root.tags({"status": out.status.value})
    root.metrics({"errors_total": sum(out.errors.values()), "debug_iterations": out.fix_rounds,
                  "tokens_in": out.usage["tokens_in"], "tokens_out": out.usage["tokens_out"],
                  "tokens_reasoning": out.usage["tokens_reasoning"], "llm_calls": out.usage["calls"],
                  "cost_usd": out.cost_usd, **extra})
    root.metrics({f"errors.{kind}": n for kind, n in out.errors.items()})
    root.text(chat_json(out.messages), "chat/chat.json")
    root.text(chat_markdown(out.messages), "chat/chat.md")
    if out.files:
        root.params(choices(out.files))
        root.files(out.files, "code")
        with tempfile.TemporaryDirectory() as tmp:
            root.artifact(ws.bundle(Path(tmp) / "code_history.bundle"))


def run_generate(cfg: GenerateConfig, progress: Callable[[str], None] = lambda _: None) -> GenerateResult:
    """Resolve inputs (failing before any run exists), then run and log one pipeline."""
    home = llmseg_home()
    with bad_input(sandbox.SandboxUnavailable, LLMError):  # every input problem surfaces before any run exists
        model = get_model(cfg.model, cfg.models_file)
        spec = get_dataset(cfg.dataset)
        if not cfg.unsafe_no_sandbox:
            sandbox.check_available()
        provider = build_provider(model, cfg, home)
        data = ensure_prepared(spec, (cfg.data_root or home / "data").resolve())
        template = prompt.load_template()
        text = prompt.render(template, data.prompt_fills())
        check_tracking_server()

    client = MlflowClient()
    tree = RunTree.open(client, _cohort(model, cfg))
    run_id = tree.root.run_id
    ws = Workspace((cfg.work_root or home / "pipelines").resolve() / run_id)
    progress(f"pipeline {tree.cohort.run_name}: run {run_id}, folder {ws.root}")
    registered = prompt.register(template)
    loop_cfg = LoopConfig(limits=sandbox.Limits(cfg.timeout_s, cfg.memory_gb), max_fix_rounds=cfg.max_fix_rounds,
                          epochs=cfg.epochs, max_batches=cfg.max_batches, preflight=cfg.preflight,
                          unsafe_no_sandbox=cfg.unsafe_no_sandbox,
                          llm_name=f"{model.provider}:{model.api_model or model.key}")
    tree.root.params({"llm.api_model": model.api_model, "llm.settings": model.settings or None,
                      "prompt_uri": registered.uri, "max_fix_rounds": cfg.max_fix_rounds,
                      "timeout_s": cfg.timeout_s, "memory_gb": cfg.memory_gb, "data_digest": data.digest,
                      "override.epochs": cfg.epochs, "override.max_batches": cfg.max_batches,
                      "unsafe_no_sandbox": cfg.unsafe_no_sandbox or None})
    tree.root.tags({"status": Status.RUNNING.value, "workspace": str(ws.root)})
    tracked_data.log_prepared(client, run_id, data)
    tree.root.text(text, "prompt.md")

    loop = AttemptLoop(tree, provider, data, ws, loop_cfg, progress)
    dice = None
    try:
        out = loop.run(text, registered.uri)
        extra = log_training(tree, out) if out.success else {}
        if out.success:
            tree.root.params({f"override.{o.role}": ast.literal_eval(o.new)
                              for o in out.success.overrides if o.role != "epochs"})
            tree.root.json([o.__dict__ for o in out.success.overrides], "overrides.json")
        if out.status == Status.SUCCEEDED and cfg.evaluate:
            dice = evaluate_trained(tree, data, out, ws, cfg.eval_preprocessing, cfg.unsafe_no_sandbox,
                                    cfg.memory_gb, progress)
    except BaseException as exc:
        tracing.flush()
        loop.out.status = Status.HARNESS_ERROR
        tree.root.tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
        _log_summary(tree, loop.out, ws, {})
        tree.finish(failed=True)
        raise
    _log_summary(tree, out, ws, extra)
    tracing.flush()
    tree.finish()
    progress(f"pipeline {tree.cohort.run_name}: {out.status.value}")
    return GenerateResult(run_id, out.status.value, sum(out.errors.values()), dice)

