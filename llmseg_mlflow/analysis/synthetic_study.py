"""A synthetic study written to a tracking server exactly per docs/tracking.md (tests and the benchmark).

Numbers are made up but shaped like a study: each model has a quality per dataset, repeats scatter
around it, 2025/reasoning models are better on average, a few pipelines never ran. The per-pipeline
held-out Dice written is returned, so tests can compute their expectations independently.
"""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from llmseg_mlflow.evaluation.compliance import ITEMS as COMPLIANCE_ITEMS
from llmseg_mlflow.pipeline.inspection import NetworkRow
from llmseg_mlflow.tracking.runs import ensure_experiment
from llmseg_mlflow.tracking.schema import Cohort, Kind, Status
from llmseg_mlflow.tracking.summary import (
    choice_params,
    compliance_metrics,
    heldout_metrics,
    loop_metrics,
    training_metrics,
)

ERROR_TYPES = ("NameError", "RuntimeError", "ValueError", "TypeError", "ImportError", "Timeout")
_BATCH = 900


@dataclass(frozen=True)
class SynthModel:
    """One model of the synthetic study and its true quality (mean held-out Dice)."""

    key: str
    year: int | None
    reasoning: bool | None
    quality: float
    provider: str = "replay"


@dataclass(frozen=True)
class SynthPipeline:
    """What was written for one pipeline (the expectations of tests)."""

    run_id: str
    model: str
    dataset: str
    repeat: int
    status: str
    image_dice: tuple[float, ...]  # empty when the pipeline never ran
    errors: dict[str, int]
    epochs: int
    baseline: bool = False
    budget: int | None = None

    @property
    def dice_mean(self) -> float | None:
        """The pipeline's held-out Dice mean as logged (None when it never ran)."""
        return float(np.mean(self.image_dice)) if self.image_dice else None


@dataclass(frozen=True)
class SynthStudySpec:
    """What to write: models x datasets x repeats, plus a baseline, budget reruns and failures."""

    study: str
    models: tuple[SynthModel, ...]
    datasets: tuple[str, ...]
    repeats: int = 1
    epochs: int = 50
    n_heldout: int = 20
    baseline: bool = True
    budget_epochs: int | None = None  # forced-epoch reruns of every model on the first dataset
    failures: tuple[tuple[str, str, int], ...] = ()  # (model, dataset, repeat) that gave up
    children: bool = True  # generation/debug/training/evaluation runs
    artifacts: bool = True  # per_image.csv and predictions.npz on each evaluation run
    mask_size: int = 64
    gt_masks: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)  # dataset -> (name, mask)
    dice_override: dict[tuple[str, str, int], tuple[float, ...]] = field(default_factory=dict)
    seed: int = 0
    threads: int = 8


def paper_models() -> tuple[SynthModel, ...]:
    """Nineteen models named and grouped like the paper's (2024: 8, 2025: 11)."""
    rows = [
        ("gpt-4", 2024, False, 0.78),
        ("gpt-4o", 2024, False, 0.80),
        ("gpt-o1-preview", 2024, True, 0.84),
        ("claude-3.5-sonnet", 2024, False, 0.83),
        ("copilot", 2024, False, 0.62),
        ("bing-copilot", 2024, False, 0.58),
        ("llama-3.1-405b", 2024, False, 0.66),
        ("gemini-1.5-pro", 2024, False, 0.74),
        ("gpt-o3", 2025, True, 0.88),
        ("gpt-o4-mini-high", 2025, True, 0.89),
        ("deepseek-v3", 2025, False, 0.84),
        ("deepseek-r1", 2025, True, 0.85),
        ("claude-4-sonnet", 2025, True, 0.88),
        ("gemini-2.5-pro", 2025, True, 0.87),
        ("grok-3-mini", 2025, True, 0.83),
        ("grok-3", 2025, False, 0.86),
        ("llama-4-maverick", 2025, True, 0.80),
        ("mistral-medium-3", 2025, True, 0.86),
        ("qwen-3-235b", 2025, True, 0.85),
    ]
    return tuple(SynthModel(k, y, r, q) for k, y, r, q in rows)


def _metrics(values: dict[str, float], now: int, step: int = 0) -> list[Metric]:
    return [Metric(k, float(v), now, step) for k, v in values.items() if v is not None]


def _curve(key: str, values: np.ndarray, now: int, first_step: int = 1) -> list[Metric]:
    return [Metric(key, float(v), now, first_step + i) for i, v in enumerate(values)]


class _Writer:
    """Writes run trees with create_run + log_batch + set_terminated (the fast path through a server)."""

    def __init__(self, client: MlflowClient, experiment_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id

    def run(
        self,
        tags: dict[str, str],
        name: str,
        metrics: Sequence[Metric] = (),
        params: dict[str, object] | None = None,
        parent: str | None = None,
        status: str = "FINISHED",
    ) -> str:
        all_tags = {**tags, MLFLOW_RUN_NAME: name}
        if parent:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent
        run_id = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name).info.run_id
        metrics = list(metrics)
        plist = [Param(k, str(v)) for k, v in (params or {}).items() if v is not None]
        first = True
        while first or metrics:
            self.client.log_batch(run_id, metrics=metrics[:_BATCH], params=plist if first else [])
            metrics, first = metrics[_BATCH:], False
        if status != "RUNNING":
            self.client.set_terminated(run_id, status)
        return run_id

    def upload(self, run_id: str, files: dict[str, bytes]) -> None:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            for rel, data in files.items():
                path = Path(tmp, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            self.client.log_artifacts(run_id, tmp)


def _predictions(
    rng: np.random.Generator, dice: np.ndarray, spec: SynthStudySpec, dataset: str
) -> dict[str, np.ndarray]:
    """One 0/1 mask per held-out image: the ground truth shifted (when known) or a disk, worse when Dice is low."""
    gts = spec.gt_masks.get(dataset)
    out = {}
    for i, d in enumerate(dice):
        if gts is not None and i < len(gts):
            name, gt = gts[i][0], gts[i][1].astype(bool)
            shift = int(round((1.0 - d) * max(gt.shape) / 4))
            out[name] = np.roll(gt, (shift, shift), axis=(0, 1)).astype(np.uint8)
        else:
            n = spec.mask_size
            yy, xx = np.mgrid[:n, :n]
            r = n / 4 * (0.5 + d)
            out[f"img_{i:03d}.png"] = (((yy - n / 2) ** 2 + (xx - n / 2 - (1 - d) * n / 4) ** 2) < r * r).astype(
                np.uint8
            )
    return out


def _per_image_csv(dice: np.ndarray, masks: dict[str, np.ndarray]) -> bytes:
    lines = ["index,image,dice,iou,hd95,gt_pixels,pred_pixels"]
    for i, (name, mask) in enumerate(masks.items()):
        d = float(dice[i])
        iou = d / (2 - d) if d < 2 else 1.0
        lines.append(f"{i},{name},{d:.6f},{iou:.6f},{(1 - d) * 20:.3f},{int(mask.sum())},{int(mask.sum())}")
    return ("\n".join(lines) + "\n").encode()


def _write_pipeline(
    w: _Writer,
    spec: SynthStudySpec,
    model: SynthModel,
    dataset: str,
    repeat: int,
    ds_index: int,
    baseline: bool = False,
    budget: int | None = None,
    source_run: str | None = None,
    source_epochs: int | None = None,
) -> SynthPipeline:
    key = (model.key, dataset, repeat)
    rng = np.random.default_rng(zlib.crc32(repr((spec.seed, *key, baseline, budget)).encode()))
    cohort = Cohort(model.key, model.year, model.reasoning, dataset, repeat, spec.study, model.provider)
    tags = cohort.tags(Kind.PIPELINE)
    failed = key in spec.failures and budget is None
    # Errors until the code ran: more for weaker models; none for the baseline.
    n_err = 0 if baseline else int(rng.poisson(max(0.2, (0.9 - model.quality) * 12)))
    errors: dict[str, int] = {}
    for _ in range(n_err):
        t = ERROR_TYPES[int(rng.integers(0, len(ERROR_TYPES)))]
        errors[t] = errors.get(t, 0) + 1
    chosen = source_epochs or (spec.epochs if baseline else int(rng.choice([10, 20, 25, 30, spec.epochs])))
    epochs = budget or min(chosen, spec.epochs)  # what was trained; a budget rerun trains `budget` epochs
    if failed:
        status, dice = Status.GAVE_UP.value, np.array([])
    else:
        status = Status.SUCCEEDED.value
        if key in spec.dice_override and not baseline and budget is None:
            dice = np.asarray(spec.dice_override[key], dtype=float)
        else:
            difficulty = np.random.default_rng(ds_index).normal(0, 0.08, spec.n_heldout)  # same images are hard
            dice = np.clip(model.quality - 0.03 * ds_index + difficulty + rng.normal(0, 0.05, spec.n_heldout), 0, 1)
    tags.update(status=status)
    if baseline:
        tags.update(baseline="true")
    if budget is not None:
        tags.update(budget=str(budget), source_run=source_run or "")
    name = cohort.run_name + (f"/budget{budget}" if budget else "")
    now = int(time.time() * 1000)
    # Every number goes through the builders generate uses (tracking/summary.py), under the same names.
    usage = {
        "tokens_in": 3000 + 2500 * n_err,
        "tokens_out": 4000 + 1500 * n_err,
        "tokens_reasoning": 2000 if model.reasoning else 0,
        "calls": n_err + 1,
    }
    summary = loop_metrics(errors, n_err, usage, round(0.01 * (n_err + 1) * (2 if model.reasoning else 1), 4), 0)
    params: dict[str, object] = {}
    metrics: list[Metric] = []
    if not failed:
        loss_floor = 0.05 + (1 - model.quality) * 0.5
        ep = np.arange(1, epochs + 1)
        val = loss_floor + 0.6 * np.exp(-ep / (3 + 10 * (1 - model.quality))) + rng.normal(0, 0.01, epochs)
        train = val * 0.9
        vdice = np.clip(1 - val, 0, 1)
        items = {f"compliance.{k}": int(rng.random() > 0.2) for k in COMPLIANCE_ITEMS}
        summary.update(
            training_metrics(
                float(rng.uniform(300, 3000) * (epochs / 25)),
                int(rng.choice([7_700_000, 31_000_000])),
                epochs,
                float(min(1, dice.mean() + 0.03)),
            )
        )
        summary.update(heldout_metrics(dice, dice / (2 - dice), (1 - dice) * 20))
        summary.update(compliance_metrics(items))
        metrics += _curve("train_loss", train, now) + _curve("val_loss", val, now) + _curve("val_dice", vdice, now)
        metrics += _curve("heldout_image_dice", dice, now, first_step=0)
        stages = int(rng.choice([4, 4, 5]))
        widths = tuple(64 * 2**i for i in range(stages))
        network = NetworkRow(
            encoder_stages=stages,
            decoder_stages=stages,
            conv_block="DoubleConv (Conv->BN->ReLU)x2",
            encoder_channels=widths,
            decoder_channels=widths[::-1],
            bottleneck_channels=(widths[-1] * 2,),
            final_layer="Conv2d(64->1)",
        )
        chosen_params = {
            "epochs": str(chosen),
            "batch_size": str(int(rng.choice([8, 16, 32]))),
            "lr": str(rng.choice(["1e-3", "1e-4"])),
            "weight_decay": str(rng.choice(["0", "1e-5"])),
            "optimizer": "Adam",
            "loss": str(rng.choice(["BCEWithLogitsLoss", "BCELoss", "DiceBCE"])),
            "input_size": "256x256",
            "final_activation": str(rng.choice(["sigmoid", "none"])),
        }
        params = dict(choice_params(chosen_params, network.as_params()))
        if budget is not None:
            params["override.epochs"] = budget
    metrics += _metrics(summary, now)
    root = w.run(tags, name, metrics, params)
    if spec.children:
        child_tags = {k: v for k, v in cohort.tags(Kind.GENERATION).items()}
        w.run(child_tags, "generation", _metrics({"tokens_in": 3000, "tokens_out": 4000}, now), parent=root)
        for k, t in enumerate([t for t, c in errors.items() for _ in range(c)][:2], start=1):
            w.run(
                {**cohort.tags(Kind.DEBUG), "iteration": str(k), "error_type": t, "phase": "full"},
                f"debug-{k}",
                parent=root,
            )
        if not failed:
            w.run(
                cohort.tags(Kind.TRAINING),
                "training",
                _curve("val_loss", val, now)
                + _curve("train_loss", train, now)
                + _curve("val_dice", vdice, now)
                + _metrics({"train_time_s": summary["train_time_s"]}, now),
                parent=root,
            )
            ev_metrics = _curve("heldout_image_dice", dice, now, first_step=0) + _metrics(
                {k: v for k, v in summary.items() if k.startswith("heldout_")}, now
            )
            ev = w.run(
                {**cohort.tags(Kind.EVALUATION), "eval_preprocessing": "generic", "eval_output": "logits"},
                "evaluation",
                ev_metrics,
                parent=root,
            )
            w.client.set_tag(root, "evaluation_run_id", ev)
            if spec.artifacts:
                masks = _predictions(rng, dice, spec, dataset)
                buf = io.BytesIO()
                # numpy's stub fears a key filling allow_pickle; the keys are image file names.
                np.savez_compressed(buf, **masks)  # type: ignore[arg-type]
                w.upload(
                    ev,
                    {"heldout/per_image.csv": _per_image_csv(dice, masks), "heldout/predictions.npz": buf.getvalue()},
                )
    return SynthPipeline(
        root, model.key, dataset, repeat, status, tuple(float(x) for x in dice), errors, epochs, baseline, budget
    )


def write_synthetic_study(
    client: MlflowClient, spec: SynthStudySpec, progress: Callable[[str], None] | None = None
) -> list[SynthPipeline]:
    """Write the whole study into the experiment named `spec.study`; returns what each pipeline logged."""
    exp = ensure_experiment(client, spec.study)
    w = _Writer(client, exp)
    jobs = [(m, d, r, i) for i, d in enumerate(spec.datasets) for m in spec.models for r in range(1, spec.repeats + 1)]
    from tqdm import tqdm

    out: list[SynthPipeline] = []
    with ThreadPoolExecutor(spec.threads) as pool:
        futures = [pool.submit(_write_pipeline, w, spec, m, d, r, i) for m, d, r, i in jobs]
        if spec.baseline:
            nn = SynthModel("nnunet-v2", None, None, 0.9, provider="nnunet")
            futures += [pool.submit(_write_pipeline, w, spec, nn, d, 1, i, True) for i, d in enumerate(spec.datasets)]
        for f in tqdm(futures, desc="synthetic pipelines", unit="pipeline", disable=progress is None):
            out.append(f.result())
    if spec.budget_epochs:
        first = spec.datasets[0]
        sources = [p for p in out if p.dataset == first and p.repeat == 1 and p.status == Status.SUCCEEDED.value]
        models = {m.key: m for m in spec.models}
        models["nnunet-v2"] = SynthModel("nnunet-v2", None, None, 0.9, provider="nnunet")
        with ThreadPoolExecutor(spec.threads) as pool:
            futures = [
                pool.submit(
                    _write_pipeline,
                    w,
                    spec,
                    models[p.model],
                    first,
                    1,
                    0,
                    p.baseline,
                    spec.budget_epochs,
                    p.run_id,
                    p.epochs,
                )
                for p in sources
            ]
            out += [f.result() for f in futures]
    if progress:
        progress(f"wrote {len(out)} synthetic pipelines to experiment {spec.study!r}")
    return out


def reevaluate(client: MlflowClient, pipeline: SynthPipeline, dice: tuple[float, ...], study: str) -> SynthPipeline:
    """A second held-out evaluation of a pipeline, as `llmseg evaluate` logs it: new evaluation run, new
    per-image values on the root (later timestamps, same steps) and summary metrics."""
    run = client.get_run(pipeline.run_id)
    cohort = Cohort.from_tags(run.data.tags)
    arr = np.asarray(dice, dtype=float)
    now = int(time.time() * 1000) + 1000  # strictly later than the first evaluation
    summary = {
        "heldout_dice_mean": float(arr.mean()),
        "heldout_dice_median": float(np.median(arr)),
        "heldout_n": len(arr),
    }
    w = _Writer(client, run.info.experiment_id)
    ev = w.run(
        cohort.tags(Kind.EVALUATION),
        "evaluation",
        _curve("heldout_image_dice", arr, now, first_step=0) + _metrics(summary, now),
        parent=pipeline.run_id,
    )
    client.log_batch(
        pipeline.run_id,
        metrics=_curve("heldout_image_dice", arr, now, first_step=0) + _metrics(summary, now),
        tags=[RunTag("evaluation_run_id", ev)],
    )
    return SynthPipeline(
        pipeline.run_id,
        pipeline.model,
        pipeline.dataset,
        pipeline.repeat,
        pipeline.status,
        tuple(float(x) for x in arr),
        pipeline.errors,
        pipeline.epochs,
        pipeline.baseline,
        pipeline.budget,
    )
