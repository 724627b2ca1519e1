"""`llmseg`: the command line, with the same names as the MLproject entry points."""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import click

from llmseg_mlflow import config
from llmseg_mlflow.analysis.config import AnalyzeConfig
from llmseg_mlflow.pipeline.chat_turns import FORMATS

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # the client would otherwise call an outside host
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout ends with our JSON line

EXIT_OK, EXIT_HARNESS, EXIT_USAGE, EXIT_NO_PIPELINE = 0, 1, 2, 3


def _say(message: str) -> None:
    click.echo(f"[llmseg] {message}", err=True)


def _none_if_negative(value: int | None) -> int | None:
    return None if value is None or value < 0 else value


@click.group()
def main() -> None:
    """Benchmark LLMs at writing U-Net segmentation pipelines, tracked in MLflow."""


# Options several commands share, declared once.
_DATA_ROOT = click.option(
    "--data-root", type=click.Path(path_type=Path), help="Prepared datasets (default $LLMSEG_HOME/data)."
)
_WORK_ROOT = click.option(
    "--work-root", type=click.Path(path_type=Path), help="Pipeline folders (default $LLMSEG_HOME/pipelines)."
)
_MODELS_FILE = click.option(
    "--models-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Your model YAML, added to the catalog (default $LLMSEG_MODELS_FILE).",
)
_UNSAFE = click.option(
    "--unsafe-no-sandbox", is_flag=True, help="Run generated code WITHOUT bubblewrap (it can read your keys)."
)


def _field(model, name: str, *decls: str, **extra):
    """An option whose default and help are the job config's field: one copy of each default."""
    info = model.model_fields[name]
    if info.is_required():
        extra.setdefault("required", True)
    elif config.default_of(model, name) is not None:
        extra.setdefault("default", config.default_of(model, name))
        extra.setdefault("show_default", True)
    extra.setdefault("help", info.description)
    return click.option(*(decls or (f"--{name.replace('_', '-')}",)), **extra)


_GEN, _TRAIN, _EVAL, _BASE = config.GenerateConfig, config.TrainConfig, config.EvaluateConfig, config.BaselineConfig
UNSET = -1  # integer options: -1 means "not set" (MLproject has no null)


@main.command()
@_field(_GEN, "model")
@_field(_GEN, "dataset")
@_field(_GEN, "repeat")
@_field(
    _GEN, "epochs", type=int, default=UNSET, show_default=True, help="Force the epoch count; -1 keeps the LLM's choice."
)
@_field(
    _GEN,
    "max_batches",
    type=int,
    default=UNSET,
    show_default=True,
    help="Cap batches per epoch of every DataLoader; -1: no cap.",
)
@_field(_GEN, "max_fix_rounds")
@_field(_GEN, "stuck_after")
@click.option(
    "--loop-hint",
    is_flag=False,
    flag_value="default",
    default=None,
    help="In a repeated error loop, send one supplementary message after the traceback (the paper's "
    "additional interaction) instead of stopping: the documented default text, or --loop-hint TEXT "
    "('off': stop, the default).",
)
@_field(_GEN, "timeout_s")
@_field(_GEN, "memory_gb")
@click.option(
    "--disk-gb",
    default=None,
    type=float,
    help="Cap on what one execution writes to its folder [default: max(20, 10x the pool size)].",
)
@click.option(
    "--eval-timeout-s",
    default=None,
    type=float,
    help="Wall-clock limit of the held-out evaluation [default: a quarter of --timeout-s, >= 300].",
)
@_field(_GEN, "study")
@_DATA_ROOT
@_WORK_ROOT
@_MODELS_FILE
@click.option("--no-cache", is_flag=True, help="Call the LLM even when the reply is cached (it is stored again).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Response cache (default $LLMSEG_HOME/cache).")
@click.option("--no-preflight", is_flag=True, help="Skip the 1-epoch, 2-batch check before the full run.")
@_UNSAFE
def generate(**opts) -> None:
    """Ask a model for a pipeline, run and fix it until it trains; log the run tree. Last line: JSON."""
    from llmseg_mlflow.generate import run_generate

    def job():
        cfg = _GEN(
            **{k: v for k, v in opts.items() if k not in ("epochs", "max_batches", "loop_hint", "no_preflight")},
            epochs=_none_if_negative(opts["epochs"]),
            max_batches=_none_if_negative(opts["max_batches"]),
            loop_hint=None if opts["loop_hint"] in (None, "off") else opts["loop_hint"],
            preflight=not opts["no_preflight"],
        )
        return run_generate(cfg, progress=_say)

    result = _guarded(job)
    click.echo(json.dumps(result.as_dict()))
    sys.exit(_exit_code(result.status))


@main.command()
@_field(_EVAL, "run_id")
@_field(_EVAL, "preprocessing", type=click.Choice(["auto", "generic"]))
@_DATA_ROOT
@_field(_EVAL, "timeout_s")
@_field(_EVAL, "memory_gb")
@click.option("--unsafe-no-sandbox", is_flag=True, help="Import the generated model WITHOUT bubblewrap.")
def evaluate(**opts) -> None:
    """Score a logged pipeline on the held-out set again, as a new evaluation run. Last line: JSON."""
    from llmseg_mlflow.evaluation.run import run_evaluate

    scores = _guarded(lambda: run_evaluate(_EVAL(**opts), progress=_say))
    summary = scores.summary() if scores else {"error": "evaluation failed"}
    click.echo(json.dumps({"run_id": opts["run_id"], **summary}))
    sys.exit(EXIT_OK if scores else EXIT_HARNESS)


@main.command()
@_field(config.PredictConfig, "model")
@_field(config.PredictConfig, "images", type=click.Path(path_type=Path))
@_field(config.PredictConfig, "out", type=click.Path(path_type=Path))
@_field(config.PredictConfig, "timeout_s")
@_field(config.PredictConfig, "memory_gb")
@click.option("--unsafe-no-sandbox", is_flag=True, help="Import the generated model WITHOUT bubblewrap.")
def predict(**opts) -> None:
    """Segment a folder of images with a logged pipeline, in the sandbox. Last line: JSON."""
    from llmseg_mlflow.predict import run_predict

    out = _guarded(lambda: run_predict(config.PredictConfig(**opts), progress=_say))
    click.echo(json.dumps({"model": opts["model"], "out": str(out)}))


@main.command()
@click.option("--study", required=True, help="The study (experiment) whose pipelines compete.")
@click.option("--dataset", required=True, help="Catalog key of the dataset.")
@click.option("--by", default="heldout_dice_mean", show_default=True, help="Held-out metric that ranks the pipelines.")
def promote(study: str, dataset: str, by: str) -> None:
    """Register the dataset's best pipeline as llmseg-<dataset>, alias champion. Last line: JSON."""
    from llmseg_mlflow.promote import promote as run_promote

    done = _guarded(lambda: run_promote(study, dataset, by, progress=_say))
    click.echo(json.dumps({"name": done.name, "version": done.version, "uri": done.uri, by: done.score}))


@main.command()
@_field(_TRAIN, "run_id")
@_field(_TRAIN, "epochs", type=int)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    help="Retrain K times with seeds 0..K-1 (Python, NumPy, torch; a seed the code sets itself wins), "
    "one root each: the variance between trainings of the same code.",
)
@_field(_TRAIN, "max_batches", type=int, default=UNSET, show_default=True, help="Cap batches per epoch; -1: no cap.")
@_field(_TRAIN, "study")
@_field(_TRAIN, "timeout_s")
@_field(_TRAIN, "memory_gb")
@_DATA_ROOT
@_WORK_ROOT
@_UNSAFE
def train(seeds: int | None, **opts) -> None:
    """Re-train a pipeline's final code (a forced epoch budget, K seeds, or both), then evaluate it.

    Last line: JSON (with --seeds, a list: one object per seed)."""
    from llmseg_mlflow.train import run_train

    def job(seed: int | None):
        cfg = _TRAIN(**{**opts, "max_batches": _none_if_negative(opts["max_batches"]), "seed": seed})
        return run_train(cfg, progress=_say)

    results = [_guarded(partial(job, seed)) for seed in (range(seeds) if seeds else [None])]
    if seeds:
        click.echo(json.dumps([r.as_dict() for r in results]))
    else:
        click.echo(json.dumps(results[0].as_dict()))
    failed = [r.status for r in results if r.status != "succeeded"]
    sys.exit(_exit_code(failed[0] if failed else "succeeded"))


_REFINE = config.RefineConfig


@main.command()
@_field(_REFINE, "run_id")
@_field(_REFINE, "rounds", type=click.IntRange(min=1))
@_field(_REFINE, "budget_minutes", type=float)
@_field(_REFINE, "feedback")
@_field(_REFINE, "model")
@click.option(
    "--show-baseline", is_flag=True, help="Tell the LLM nnU-Net's validation Dice on the same pool (never held-out)."
)
@click.option("--no-preflight", is_flag=True, help="Skip the 1-epoch, 2-batch check before each round's full run.")
@click.option("--no-cache", is_flag=True, help="Call the LLM even when the reply is cached (it is stored again).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Response cache (default $LLMSEG_HOME/cache).")
@_MODELS_FILE
@_DATA_ROOT
@_WORK_ROOT
@_UNSAFE
def refine(**opts) -> None:
    """Feed a pipeline's own results back to its LLM, in rounds under its root; the best round by validation
    Dice. Last line: JSON."""
    from llmseg_mlflow.refine import run_refine

    def job():
        feedback = opts["feedback"]
        if feedback != "default" and not Path(feedback).is_file():
            raise click.BadParameter(
                f"{feedback} is not a file (give a template file or 'default')", param_hint="--feedback"
            )
        cfg = _REFINE(
            **{k: v for k, v in opts.items() if k != "no_preflight"},
            preflight=not opts["no_preflight"],
        )
        return run_refine(cfg, progress=_say)

    result = _guarded(job)
    click.echo(json.dumps(result.as_dict()))


def _exit_code(status: str) -> int:
    """0: a working pipeline; 1: the platform failed (harness_error); 3: the pipeline did not work."""
    return EXIT_OK if status == "succeeded" else EXIT_HARNESS if status == "harness_error" else EXIT_NO_PIPELINE


def _guarded(job):
    """Run a job; bad input exits 2 with its message, a platform failure exits 1.

    Jobs that run pipelines convert their own input errors up front, so a failure
    mid-pipeline is never mistaken for a usage error.
    """
    from llmseg_mlflow.errors import UsageError, bad_input

    try:
        with bad_input():
            return job()
    except UsageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - the message is the product here; the run holds the rest
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_HARNESS)


@main.command()
@click.option(
    "--workdir",
    default="demo-work",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Everything goes here: data, mlflow.db, artifacts, pipeline folders.",
)
@click.option("--unsafe-no-sandbox", is_flag=True, help="Run generated code without bubblewrap.")
def demo(workdir: Path, unsafe_no_sandbox: bool) -> None:
    """The study in miniature, offline: studies/demo.yaml swept into a local store, then the report."""
    from llmseg_mlflow.demo import run_demo

    result = _guarded(lambda: run_demo(workdir.resolve(), unsafe_no_sandbox=unsafe_no_sandbox, progress=_say))
    sys.exit(EXIT_HARNESS if result.summary.count("failed") else EXIT_OK)


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_cmd(as_json: bool) -> None:
    """List the model catalog."""
    from llmseg_mlflow.catalog.models import load_models

    models = _guarded(load_models)
    if as_json:
        click.echo(
            json.dumps(
                [m.model_dump(mode="json") for m in models.values()],
                indent=2,
            )
        )
        return
    for m in models.values():
        cohort = (
            f"{m.year or '-'} {'reasoning' if m.reasoning else 'non-reasoning' if m.reasoning is not None else '-'}"
        )
        click.echo(f"{m.key:24} {m.provider:18} {cohort:20} {m.title}")


@main.group()
def datasets() -> None:
    """Dataset catalog and preparation."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def datasets_list(as_json: bool) -> None:
    """List the dataset catalog."""
    from llmseg_mlflow.catalog.datasets import load_datasets

    specs = _guarded(load_datasets)
    if as_json:
        click.echo(json.dumps([s.model_dump() for s in specs.values()], indent=2, default=str))
        return
    for s in specs.values():
        click.echo(f"{s.key:24} {s.colour:9} {s.layout:8} {s.title}")


@datasets.command("prepare")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path), help="Data root (default $LLMSEG_HOME/data).")
@click.option(
    "--source",
    type=click.Path(path_type=Path, exists=True),
    help="The downloaded dataset (not needed for synthetic ones; see docs/datasets.md).",
)
@click.option(
    "--seed",
    default=None,
    type=int,
    help="Seed of the subset and the held-out split [default: the existing preparation's, else 0].",
)
@click.option("--force", is_flag=True, help="Rebuild even if a prepared copy exists.")
@click.option(
    "--split-by",
    type=click.Choice(["patient", "slice"]),
    help="Hold out whole patients (volumes), or slices at random as the paper did (default: the catalog entry's).",
)
@click.option("--mask-suffix", help="How masks are named in the source: <name><SUFFIX>.<ext>.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Leave out unreadable, mismatched or non-binary pairs (listed in the summary) instead of failing.",
)
@click.option(
    "--datasets-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Your datasets YAML (default $LLMSEG_DATASETS_FILE, else $LLMSEG_HOME/datasets.yaml).",
)
def datasets_prepare(
    name: str,
    out: Path | None,
    source: Path | None,
    seed: int | None,
    force: bool,
    split_by: str | None,
    mask_suffix: str | None,
    skip_invalid: bool,
    datasets_file: Path | None,
) -> None:
    """Split a dataset into pool/ (visible to generated code) and heldout/ (10%), with a manifest."""

    from llmseg_mlflow.catalog.datasets import get_dataset
    from llmseg_mlflow.catalog.prepare import prepare_dataset
    from llmseg_mlflow.paths import data_root

    def job():
        spec = get_dataset(name, datasets_file)
        if split_by is not None:
            spec = spec.model_copy(update={"split_by": split_by})
        return prepare_dataset(
            spec,
            data_root(out),
            source=source,
            seed=seed,
            force=force,
            skip_invalid=skip_invalid,
            mask_suffix=mask_suffix,
            progress=_say,
        )

    prepared = _guarded(job)
    _print_prepared(prepared)


def _print_prepared(prepared) -> None:
    """The summary of a preparation, then the count line and the JSON line (last)."""
    if prepared.summary is not None:
        for line in prepared.summary.lines():
            click.echo(line)
    click.echo(f"{prepared.spec.key}: {prepared.n_pool} pool, {prepared.n_heldout} held-out -> {prepared.root}")
    click.echo(json.dumps({"root": str(prepared.root), "digest": prepared.digest}))


@datasets.command("add")
@click.argument("name")
@click.option(
    "--source",
    required=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Folder with your images and masks (or NIfTI volumes).",
)
@click.option("--title", help="Title of the entry (default: NAME).")
@click.option("--modality", default="unknown", show_default=True, help="Imaging modality, e.g. MRI, endoscopy.")
@click.option(
    "--foreground-value", type=int, help="The mask or label value to segment, when masks hold more than two values."
)
@click.option("--subset-size", type=int, help="Use a seeded random subset of this many pairs (default: all).")
@click.option(
    "--datasets-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the entry (default $LLMSEG_DATASETS_FILE, else $LLMSEG_HOME/datasets.yaml).",
)
@click.option("--out", type=click.Path(path_type=Path), help="Data root (default $LLMSEG_HOME/data).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the subset and the held-out split.")
@click.option("--force", is_flag=True, help="Replace an entry of the same name and rebuild its prepared copy.")
@click.option(
    "--skip-invalid", is_flag=True, help="Leave out unusable pairs (listed in the summary) instead of failing."
)
@click.option("--no-prepare", is_flag=True, help="Only write the catalog entry.")
@click.option(
    "--normalize",
    is_flag=True,
    help="Store masks as 0/255 PNG under uniform names instead of the source's files as they are "
    "(code written for the real dataset expects those); recorded in the entry.",
)
def datasets_add(
    name: str,
    source: Path,
    title: str | None,
    modality: str,
    foreground_value: int | None,
    subset_size: int | None,
    datasets_file: Path | None,
    out: Path | None,
    seed: int,
    force: bool,
    skip_invalid: bool,
    no_prepare: bool,
    normalize: bool,
) -> None:
    """Add your own dataset: detect its layout, write a catalog entry to your YAML, prepare it."""
    from llmseg_mlflow.catalog.datasets import (
        check_user_entry,
        load_datasets,
        parse_user_entry,
        render_user_entry,
        user_datasets_file,
        write_user_entry,
    )
    from llmseg_mlflow.catalog.detect import detect_layout
    from llmseg_mlflow.catalog.prepare import prepare_dataset
    from llmseg_mlflow.paths import data_root

    path = user_datasets_file(datasets_file)

    def job():
        check_user_entry(path, name, replace=force)
        found = detect_layout(source, foreground=foreground_value)
        for line in found.describe():
            click.echo(f"detected: {line}")
        entry, comments = found.entry(title or name, modality, subset_size, normalize=normalize)
        spec = parse_user_entry(name, entry)
        prepared = None
        if not no_prepare:
            prepared = prepare_dataset(
                spec, data_root(out), source=source, seed=seed, force=force, skip_invalid=skip_invalid, progress=_say
            )
        header = f"detected in {found.source}: " + found.describe()[0].removeprefix("found ")
        write_user_entry(path, name, render_user_entry(name, entry, comments, header), replace=force)
        load_datasets(path)  # what was written must read back
        return spec, prepared

    spec, prepared = _guarded(job)
    click.echo(f"wrote entry {name!r} to {path} (edit it to change the title, modality or what the prompt says)")
    if prepared is None:
        click.echo(
            f"prepare it with: llmseg datasets prepare {name}" + (f" --datasets-file {path}" if datasets_file else "")
        )
        return
    for key, value in prepared.prompt_fills().items():
        click.echo(f"prompt {key}: {value}")
    _print_prepared(prepared)


@main.command()
@click.argument("study_file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="List the jobs, which are done, and the expected API cost; run nothing.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: a process pool on this machine; ray: Ray tasks on a cluster.",
)
@click.option(
    "--workers", type=int, help="local: jobs at once (default: one per GPU, else 1); ray: CPUs of a new local instance."
)
@click.option("--ray-address", help="Ray cluster to join, e.g. ray://head:10001 or auto (default: start a local one).")
@_DATA_ROOT
@_WORK_ROOT
@_MODELS_FILE
@click.option(
    "--log-dir", type=click.Path(path_type=Path), help="One log per job (default $LLMSEG_HOME/sweeps/<study>/logs)."
)
@click.option(
    "--training-slots",
    type=int,
    help="local: at most N trainings at once, so more --workers overlap LLM calls with training (one GPU per slot).",
)
@click.option(
    "--forward-env",
    multiple=True,
    help="Send this environment variable to every job (e.g. an API key for Ray workers).",
)
@_UNSAFE
def sweep(study_file: Path, dry_run: bool, **opts) -> None:
    """Run a whole study from a YAML file; rerun the same command to finish what is missing."""
    from llmseg_mlflow.sweep.run import SweepOptions, run_sweep
    from llmseg_mlflow.sweep.run import dry_run as plan_only
    from llmseg_mlflow.sweep.study import load_study

    study = _guarded(lambda: load_study(study_file, opts["models_file"]))
    for name in ("workers", "training_slots"):
        if opts[name] is not None and opts[name] < 1:
            click.echo(f"error: --{name.replace('_', '-')} must be at least 1", err=True)
            sys.exit(EXIT_USAGE)
    if dry_run:
        _guarded(lambda: plan_only(study, out=click.echo))
        return
    options = SweepOptions(
        executor=opts["executor"],
        workers=opts["workers"],
        ray_address=opts["ray_address"],
        data_root=opts["data_root"],
        work_root=opts["work_root"],
        models_file=opts["models_file"],
        unsafe_no_sandbox=opts["unsafe_no_sandbox"],
        log_dir=opts["log_dir"],
        forward_env=tuple(opts["forward_env"]),
        training_slots=opts["training_slots"],
    )
    summary = _guarded(lambda: run_sweep(study, options, out=click.echo))
    sys.exit(130 if summary.interrupted else EXIT_HARNESS if summary.count("failed") else EXIT_OK)


def _keys(value: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())


@main.command()
@_field(AnalyzeConfig, "study")
@_field(
    AnalyzeConfig,
    "output",
    type=click.Path(path_type=Path),
)
@click.option("--datasets", "datasets_", help="Comma-separated dataset keys (default: all in the study).")
@click.option("--models", help="Comma-separated model keys (default: all; the baseline is always kept).")
@click.option(
    "--cohorts",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="YAML of the cohort comparisons (default: 2024 vs 2025, non-reasoning vs reasoning); see docs/analysis.md.",
)
@click.option(
    "--recorded-errors",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="CSV (model,errors[,source]) of the error counts a source recorded, e.g. the paper's Fig. 2: shown beside "
    "the platform's (imported chats).",
)
@_field(AnalyzeConfig, "alpha")
@_field(AnalyzeConfig, "bootstrap_resamples")
@click.option(
    "--bonferroni", is_flag=True, help="Bonferroni-correct the cohort tests (over all datasets x comparisons)."
)
@click.option(
    "--variability-models", help="Two models A,B for the run-to-run U tests (default: picked from those with repeats)."
)
@_DATA_ROOT
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    help="Local cache of finished runs (default $LLMSEG_HOME/analysis-cache).",
)
@click.option(
    "--refresh", is_flag=True, help="List every pipeline root again (after deleting runs), not only what is new."
)
@click.option("--no-log", is_flag=True, help="Only write the folder; log no kind=analysis run.")
def analyze(**opts) -> None:
    """Tables, figures and one HTML report of a study, from the tracking server. Last line: the report's path."""
    from llmseg_mlflow.analysis import AnalyzeConfig, run_analyze

    def job():
        cfg = AnalyzeConfig(
            study=opts["study"],
            output=opts["output"],
            datasets=_keys(opts["datasets_"]),
            models=_keys(opts["models"]),
            cohorts_file=opts["cohorts"],
            recorded_errors=opts["recorded_errors"],
            alpha=opts["alpha"],
            bootstrap_resamples=opts["bootstrap_resamples"],
            bonferroni=opts["bonferroni"],
            variability_models=_keys(opts["variability_models"]),
            data_root=opts["data_root"],
            cache_dir=opts["cache_dir"],
            log_run=not opts["no_log"],
            refresh=opts["refresh"],
        )
        return run_analyze(cfg, progress=_say)

    click.echo(str(_guarded(job)))


@main.command()
@_field(_BASE, "dataset")
@_field(_BASE, "epochs")
@_field(_BASE, "iterations")
@click.option("--val-iterations", type=int, help="Validation iterations per epoch (default iterations / 5).")
@click.option(
    "--fold", default="0", show_default=True, help="nnU-Net fold: 0-4 of its 5-fold split of the pool, or all."
)
@click.option("--device", type=click.Choice(["cuda", "cpu"]), help="Default: cuda when available.")
@_field(_BASE, "repeat")
@_field(_BASE, "study")
@_DATA_ROOT
@click.option("--work-root", type=click.Path(path_type=Path), help="nnU-Net folders (default $LLMSEG_HOME/baselines).")
@click.option("--log-checkpoint", is_flag=True, help="Also upload checkpoint_best.pth to the training run.")
def baseline(**opts) -> None:
    """Train nnU-Net v2 (2d) on the pool, score the held-out set, log it beside the LLM pipelines. Last line: JSON."""
    from llmseg_mlflow.baseline.run import BaselineConfig, run_baseline

    def job():
        from llmseg_mlflow.errors import UsageError

        fold = opts.pop("fold")
        if fold != "all" and not fold.isdigit():
            raise UsageError(f"--fold must be 0-4 or all, got {fold!r}")
        given = {k: v for k, v in opts.items() if v is not None}  # unset: BaselineConfig's defaults
        return run_baseline(BaselineConfig(**given, fold=fold if fold == "all" else int(fold)), progress=_say)

    result = _guarded(job)
    click.echo(json.dumps(result.as_dict()))
    sys.exit(_exit_code(result.status))


@main.command("inspect")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print only the row as one JSON object (the last line).")
@click.option(
    "--channels", type=int, help="Image channels, when the model's in-channel argument must be guessed (default 3)."
)
@click.option("--unsafe-no-sandbox", is_flag=True, help="Build the generated network WITHOUT bubblewrap.")
def inspect_cmd(folder: Path, as_json: bool, channels: int | None, unsafe_no_sandbox: bool) -> None:
    """The Tables 1-2 row of a pipeline folder, without training: its choices and its network's shape."""
    from llmseg_mlflow.errors import UsageError
    from llmseg_mlflow.pipeline import inspection, sandbox

    def job():
        if not unsafe_no_sandbox:
            try:
                sandbox.check_available()
            except sandbox.SandboxUnavailable as exc:
                raise UsageError(str(exc)) from None
        return inspection.inspect_pipeline(folder.resolve(), unsafe_no_sandbox=unsafe_no_sandbox, channels=channels)

    row = _guarded(job)  # no model class, no folder: exit 2; a network that cannot be built is in the row
    click.echo(json.dumps(row.as_dict()) if as_json else "\n".join(inspection.render_row(row)))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object (the last line).")
def doctor(as_json: bool) -> None:
    """What generated code finds in the sandbox: Python, torch, CUDA, common modules; bwrap and cgroup caps."""
    from llmseg_mlflow.pipeline import doctor as probe

    report = _guarded(probe.sandbox_report)
    click.echo(json.dumps(report) if as_json else "\n".join(probe.render_report(report)))


@main.command()
@click.option(
    "--dir",
    "folder",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Everything of the server goes here: the store (mlflow.db or postgres/), artifacts, logs.",
)
@click.option(
    "--store",
    type=click.Choice(["sqlite", "postgres"]),
    default="sqlite",
    show_default=True,
    help="postgres: a PostgreSQL cluster in DIR/postgres, started and stopped with the server.",
)
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 lets other machines log to it.")
@click.option("--workers", type=int, default=4, show_default=True, help="Server worker processes.")
@click.option("--pg-user", help="As root: the user who owns and runs PostgreSQL (default: postgres).")
def server(folder: Path, store: str, port: int, host: str, workers: int, pg_user: str | None) -> None:
    """A study's tracking server on this machine (sqlite, or PostgreSQL for a lab's many writers)."""
    from llmseg_mlflow.tracking.local_server import serve_forever, study_server

    srv, pg = _guarded(lambda: study_server(folder, store, port, workers, host, pg_user))
    _guarded(lambda: serve_forever(srv, pg, say=_say))


@main.command("import-chat")
@click.argument("transcript", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New replay folder to write.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="The chat interface the transcript was copied from.",
)
@click.option(
    "--partial",
    is_flag=True,
    help="Import the replies before the first one whose code cannot be placed, instead of nothing.",
)
def import_chat_cmd(transcript: Path, out: Path, fmt: str, partial: bool) -> None:
    """Turn a pasted chat transcript into a replay folder (use it as --model replay:OUT)."""
    from llmseg_mlflow.pipeline.chat_import import import_chat

    result = _guarded(lambda: import_chat(transcript, out, fmt, partial))
    for reply in result.replies:
        user = reply["user_turn"]
        before = f"after {user['kind']}" if user else "no user turn before it"
        _say(f"{reply['file']}: {', '.join(reply['files']) or 'no files'} ({before})")
    if result.stopped_at:
        _say(f"stopped before {result.stopped_at['reason']}")
    summary = {"folder": str(result.folder), "format": result.format, "replies": len(result.replies)}
    click.echo(json.dumps({**summary, "stopped_at": (result.stopped_at or {}).get("reply")}))


if __name__ == "__main__":
    main()
