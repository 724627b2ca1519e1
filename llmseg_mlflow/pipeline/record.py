"""What a finished attempt loop logs on its run tree: the training run, the network's Tables 1-2 columns,
the LLM's choices read from its code, and the root's summary. Shared by `generate` and `train`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from llmseg_mlflow.catalog.prepare import PreparedDataset
from llmseg_mlflow.pipeline import architecture, knobs, sandbox, usage_sampler
from llmseg_mlflow.pipeline.loop import LoopOutcome, chat_json, chat_markdown
from llmseg_mlflow.pipeline.results import ResultsError, read_results
from llmseg_mlflow.pipeline.workspace import Workspace
from llmseg_mlflow.tracking import summary
from llmseg_mlflow.tracking.runs import RunTree
from llmseg_mlflow.tracking.schema import Kind, Status


def choices(files: dict[str, str]) -> dict[str, str]:
    """What the LLM chose (Tables 1-2), read from its code."""
    found = knobs.read_hyperparameters(files)
    if "model.py" in files:
        found["final_activation"] = architecture.final_activation(files["model.py"])
    return found


def log_training(tree: RunTree, out: LoopOutcome) -> dict[str, float]:
    """The training run: curves, outputs, logs, model summary. Returns the root's share of metrics."""
    attempt = out.success
    assert attempt is not None
    stdout = attempt.result.stdout_text()
    table = architecture.torchinfo_summary(stdout)
    root_metrics = summary.training_metrics(attempt.result.duration_s, architecture.params_total(stdout))
    with tree.child(Kind.TRAINING, "training", {"attempt": attempt.number}) as run:
        run.metrics(
            {
                **root_metrics,
                "peak_rss_gb": attempt.result.peak_rss_gb,
                "peak_memory_gb": attempt.result.peak_memory_gb,
                "preflight_s": out.preflight.result.duration_s if out.preflight else None,
            }
        )
        run.points(usage_sampler.as_metrics(attempt.result.usage))  # the UI's "System metrics" tab
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
        run.json(
            {
                "missing": results.missing,
                "problems": results.problems,
                "layouts": results.layouts,
                "files": {k: str(v) for k, v in results.files.items()},
            },
            "results.json",
        )
        run.tags({f"layout.{name.removesuffix('.xlsx')}": where for name, where in results.layouts.items()})
        if not results.train_loss or not results.val_loss:
            out.status = Status.FAILED_TRAINING
            run.tags({"results_error": f"missing loss files: {', '.join(results.missing) or 'empty'}"})
        for key, values in (
            ("train_loss", results.train_loss),
            ("val_loss", results.val_loss),
            ("val_dice", results.val_dice),
        ):
            run.curve(key, values)
            tree.root.curve(key, values)
        trained = summary.training_metrics(
            attempt.result.duration_s,
            epochs_trained=len(results.train_loss),
            own_test_dice_mean=results.own_test_dice_mean,
        )
        root_metrics.update(trained)
        if results.own_test_dice_mean is not None:
            run.metrics({"own_test_dice_mean": results.own_test_dice_mean})
    return root_metrics


def log_network(
    tree: RunTree,
    folder: Path,
    data: PreparedDataset,
    limits: sandbox.Limits,
    unsafe_no_sandbox: bool,
    progress: Callable[[str], None],
) -> dict[str, float]:
    """Tables 1-2's network columns on the root, from the final code built in the sandbox (`llmseg inspect`);
    returns the root's params_total (the built network's count beats the printed one)."""
    from llmseg_mlflow.pipeline.inspection import DEFAULT_LIMITS, NoModelClassError, inspect_pipeline

    try:
        row = inspect_pipeline(
            folder,
            replace(DEFAULT_LIMITS, memory_gb=min(DEFAULT_LIMITS.memory_gb, limits.memory_gb)),
            unsafe_no_sandbox,
            channels=3 if data.spec.colour == "rgb" else 1,
        )
    except NoModelClassError as exc:
        tree.root.params({"network_unavailable": str(exc)[:500]})
        return {}
    tree.root.params(row.as_params())
    progress(
        f"network: {row.encoder_stages} encoder / {row.decoder_stages} decoder stages, "
        f"{row.params_total or '?'} parameters"
        if not row.unavailable
        else f"network: unavailable ({row.unavailable})"
    )
    return {"params_total": float(row.params_total)} if row.params_total else {}


def log_summary(tree: RunTree, out: LoopOutcome, ws: Workspace, extra: dict[str, float]) -> None:
    """Root summary: status, error counts, usage, the LLM's choices, chat and code history."""
    root = tree.root
    root.tags({"status": out.status.value})
    if out.replay_compared:  # an imported chat: how often its recorded user turns matched what the harness sent
        extra = {**extra, "replay_compared": out.replay_compared, "replay_divergences": out.replay_divergences}
    if out.preflight_cap_errors:
        extra = {**extra, "preflight_cap_errors": out.preflight_cap_errors}
    root.metrics(
        {**summary.loop_metrics(out.errors, out.fix_rounds, out.usage, out.cost_usd, out.interventions), **extra}
    )
    root.text(chat_json(out.messages), "chat/chat.json")
    root.text(chat_markdown(out.messages), "chat/chat.md")
    if out.files:
        root.params(choices(out.files))
        root.files(out.files, "code")
        with tempfile.TemporaryDirectory() as tmp:
            root.artifact(ws.bundle(Path(tmp) / "code_history.bundle"))
