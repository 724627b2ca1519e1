"""`llmseg promote`: the best LLM pipeline of a dataset into the Model Registry as `llmseg-<dataset>@champion`.

Ranked by a held-out metric of the LoggedModels a study's evaluations logged, never by anything the LLM
saw (its validation Dice, its own printed numbers). A new champion moves the alias; older versions stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.tracking.runs import baseline_roots, check_tracking_server

ALIAS = "champion"
HELDOUT = "heldout_"  # the prefix of every metric the evaluator computed on the held-out split
VERSION_TAGS = ("model", "year", "reasoning", "repeat", "study", "pipeline_run_id")


@dataclass(frozen=True)
class Promotion:
    """What promote did."""

    name: str
    version: str
    model_id: str
    score: float
    previous: str | None  # the version the alias pointed at before (None: first champion)
    new_version: bool  # False when the best model was already registered

    @property
    def uri(self) -> str:
        """The URI `predict` takes."""
        return f"models:/{self.name}@{ALIAS}"


def registered_name(dataset: str) -> str:
    """The registry name of a dataset's champion."""
    return f"llmseg-{dataset}"


def _metric(model: LoggedModel, key: str) -> float | None:
    values = [m for m in model.metrics or [] if m.key == key]
    return max(values, key=lambda m: (m.timestamp, m.step)).value if values else None


def candidates(client: MlflowClient, experiment_id: str, dataset: str, by: str) -> list[tuple[float, LoggedModel]]:
    """The READY LLM pipeline models of the dataset with the metric, best first (ties: the older model)."""
    found: list[LoggedModel] = []
    token = None
    while True:
        page = client.search_logged_models(
            [experiment_id],
            filter_string=f"tags.dataset = '{dataset}'",  # (a status filter matches nothing in MLflow 3.17)
            page_token=token,
        )
        found += page
        token = page.token
        if not token:
            break
    ready = [m for m in found if m.model_type == "llm-pipeline" and m.status == LoggedModelStatus.READY]
    scored = [(v, m) for m in ready if (v := _metric(m, by)) is not None]
    scored.sort(key=lambda vm: (-vm[0], vm[1].creation_timestamp, vm[1].model_id))
    return scored


def promote(
    study: str, dataset: str, by: str = "heldout_dice_mean", progress: Callable[[str], None] = lambda _: None
) -> Promotion:
    """Register the dataset's best pipeline of the study and point `champion` at it."""
    if not by.startswith(HELDOUT):
        raise UsageError(
            f"--by {by!r} is not a held-out metric: promote ranks by what the evaluator measured on the held-out "
            "split (heldout_dice_mean, heldout_dice_median, heldout_iou_mean, ...), never by numbers the LLM saw"
        )
    check_tracking_server()
    client = MlflowClient()
    exp = client.get_experiment_by_name(study)
    if exp is None:
        raise UsageError(f"no study {study!r} on the tracking server; pick it with --study")
    ranked = candidates(client, exp.experiment_id, dataset, by)
    if not ranked:
        raise UsageError(
            f"no evaluated pipeline of dataset {dataset!r} in study {study!r} has a logged model with {by}: "
            "run `llmseg generate` (or a sweep) for it first"
        )
    score, best = ranked[0]
    name = registered_name(dataset)
    _ensure_registered(client, name, dataset)
    previous = _alias_version(client, name)
    version, new = _version_of(client, name, best, score, study, by)
    client.set_registered_model_alias(name, ALIAS, version)
    moved = "kept" if previous == version else f"moved from version {previous}" if previous else "set"
    progress(
        f"{name} version {version} ({best.tags.get('model')}, repeat {best.tags.get('repeat')}, {by} {score:.4f}) "
        f"is the champion (alias {moved}); {len(ranked)} candidate(s)"
    )
    return Promotion(name, version, best.model_id, score, previous, new)


def _ensure_registered(client: MlflowClient, name: str, dataset: str) -> None:
    try:
        client.create_registered_model(name, description=f"The best LLM-written U-Net pipeline for {dataset}.")
    except MlflowException as exc:  # a registered name already there (or registered by a parallel promote)
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _alias_version(client: MlflowClient, name: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, ALIAS).version
    except MlflowException:
        return None


def _version_of(
    client: MlflowClient, name: str, model: LoggedModel, score: float, study: str, by: str
) -> tuple[str, bool]:
    """The version holding this model: the existing one, else a new one with the pipeline's tags."""
    for mv in client.search_model_versions(f"name = '{name}'"):
        if model.model_id in (mv.model_id, mv.tags.get("model_id")):  # (the server may not return model_id)
            return mv.version, False
    tags = {k: model.tags[k] for k in VERSION_TAGS if k in model.tags} | {
        by: f"{score:.6f}",
        "model_id": model.model_id,
    }
    baseline = _baseline_score(client, model, by)
    if baseline is not None:
        tags[f"nnunet_{by}"] = f"{baseline:.6f}"
    mv = client.create_model_version(
        name, f"models:/{model.model_id}", run_id=model.source_run_id, tags=tags, model_id=model.model_id
    )
    return mv.version, True


def _baseline_score(client: MlflowClient, model: LoggedModel, by: str) -> float | None:
    """nnU-Net's held-out metric on the same split (its root in the same experiment with the same data_digest)."""
    digest, dataset = model.params.get("data_digest"), model.tags.get("dataset")
    runs = baseline_roots(client, model.experiment_id, dataset, digest) if digest and dataset else []
    return next((r.data.metrics[by] for r in runs if by in r.data.metrics), None)
