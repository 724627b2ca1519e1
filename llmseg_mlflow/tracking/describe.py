"""A pipeline root's description: the Markdown MLflow's UI shows as the run's Description (`mlflow.note.content`).

`build` writes it from what the run carries (tags, params, metrics), its children and the nnU-Net baseline of
the same split; `update` reads those from the tracking server and sets the tag. Every job that ends a
pipeline root calls `update` last; a failure there is a warning, never the job's failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from llmseg_mlflow.tracking.runs import baseline_roots
from llmseg_mlflow.tracking.schema import Kind, Status

EXAMPLES = "heldout/examples.png"  # the evaluation run's figure of the hardest held-out images
_MAX_CHARS = 8000  # MLflow's limit on a tag value


@dataclass(frozen=True)
class ChildRun:
    """One child of the root, as its line in the description."""

    run_id: str
    kind: str
    name: str
    status: str = "FINISHED"  # the run's MLflow status
    note: str = ""  # e.g. a debug run's error type

    @classmethod
    def of(cls, run: Run) -> ChildRun:
        """The line of a child run fetched from the server."""
        tags = run.data.tags
        return cls(
            run.info.run_id,
            tags.get("kind", ""),
            run.info.run_name or tags.get("mlflow.runName", ""),
            run.info.status,
            (tags.get("error_type") or tags.get("eval_error") or tags.get("status", ""))[:100],
        )


@dataclass(frozen=True)
class BaselineDice:
    """The nnU-Net baseline root of the same split and its held-out Dice."""

    run_id: str
    heldout_dice_mean: float


def run_link(experiment_id: str, run_id: str) -> str:
    """The MLflow UI's relative link to a run."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def _dice(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _count(metrics: Mapping[str, float], key: str) -> int:
    return int(metrics.get(key, 0))


def _errors(metrics: Mapping[str, float]) -> str:
    by_type = sorted(
        ((k.removeprefix("errors."), int(v)) for k, v in metrics.items() if k.startswith("errors.") and v),
        key=lambda kv: (-kv[1], kv[0]),
    )
    total = _count(metrics, "errors_total")
    if not total:
        return "none"
    return f"{total} ({', '.join(f'{name} {n}' for name, n in by_type)})" if by_type else str(total)


def _cost(metrics: Mapping[str, float]) -> str:
    if not metrics.get("llm_calls") and not metrics.get("cost_usd"):
        return "no LLM calls"
    tokens = f"{_count(metrics, 'tokens_in'):,} tokens in, {_count(metrics, 'tokens_out'):,} out"
    if metrics.get("tokens_reasoning"):
        tokens += f" ({_count(metrics, 'tokens_reasoning'):,} reasoning)"
    return f"{metrics.get('cost_usd', 0.0):.4f} USD; {tokens}; {_count(metrics, 'llm_calls')} LLM calls"


def _heldout(tags: Mapping[str, str], metrics: Mapping[str, float]) -> str:
    if "heldout_dice_mean" not in metrics:
        why = tags.get("evaluation_error")
        return f"not evaluated ({why})" if why else "not evaluated"
    return (
        f"mean {_dice(metrics['heldout_dice_mean'])}, median {_dice(metrics.get('heldout_dice_median'))} "
        f"(n = {_count(metrics, 'heldout_n')})"
    )


def _versus(experiment_id: str, tags: Mapping[str, str], mean: float | None, baseline: BaselineDice | None) -> str:
    if tags.get("baseline") == "true":
        return "this run is the nnU-Net baseline of this split"
    if baseline is None:
        return "no nnU-Net baseline on this split yet"
    line = (
        f"held-out Dice {_dice(baseline.heldout_dice_mean)} on the same split "
        f"([baseline run]({run_link(experiment_id, baseline.run_id)}))"
    )
    if mean is not None:
        line += f"; this pipeline {_dice(mean)}, difference {mean - baseline.heldout_dice_mean:+.3f}"
    return line


def _figure(experiment_id: str, tags: Mapping[str, str], children: Sequence[ChildRun]) -> list[str]:
    """The latest evaluation's example figure, when that evaluation finished (a failed one drew none)."""
    latest = tags.get("evaluation_run_id")
    found = [c for c in children if c.kind == Kind.EVALUATION.value and c.status == "FINISHED"]
    evaluation = next((c for c in found if c.run_id == latest), found[-1] if found else None)
    if evaluation is None:
        return []
    run = evaluation.run_id
    image = f"get-artifact?path={quote(EXAMPLES, safe='')}&run_uuid={run}"  # the UI's own artifact URL, relative
    return [
        "",
        "## Held-out examples",
        "",
        f"[`{EXAMPLES}` of evaluation run {run}]({run_link(experiment_id, run)}/artifactPath/{EXAMPLES})",
        "",
        f"![held-out examples, evaluation run {run}]({image})",
    ]


def build(
    run_id: str,
    experiment_id: str,
    tags: Mapping[str, str],
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    children: Sequence[ChildRun],
    baseline: BaselineDice | None,
) -> str:
    """The root's description in Markdown: what ran, how it ended, what it scored and cost, where to look."""
    status = tags.get("status", Status.RUNNING.value)
    provider = f" ({tags['provider']})" if tags.get("provider") else ""
    digest = f" (data digest `{params['data_digest'][:12]}`)" if params.get("data_digest") else ""
    lines = [
        f"# {tags.get('model', '?')} on {tags.get('dataset', '?')}, repeat {tags.get('repeat', '?')}: {status}",
        "",
        f"- **Model**: {tags.get('model', '?')}{provider}",
        f"- **Dataset**: {tags.get('dataset', '?')}{digest}",
        f"- **Repeat**: {tags.get('repeat', '?')}",
        f"- **Status**: {status}",
    ]
    if tags.get("error"):
        lines.append(f"- **Error**: {tags['error'].strip().splitlines()[0][:300]}")
    if tags.get("source_run"):
        rerun = ([f"{tags['budget']} epoch{'' if tags['budget'] == '1' else 's'}"] if tags.get("budget") else []) + (
            [f"seed {tags['seed']}"] if tags.get("seed") else []
        )
        lines.append(
            f"- **Retrained from**: [{tags['source_run']}]({run_link(experiment_id, tags['source_run'])})"
            + (f" ({', '.join(rerun)})" if rerun else "")
        )
    mean = metrics.get("heldout_dice_mean")
    lines += [
        f"- **Errors**: {_errors(metrics)}",
        f"- **Fix rounds**: {_count(metrics, 'debug_iterations')}",
        f"- **Held-out Dice**: {_heldout(tags, metrics)}",
        f"- **nnU-Net**: {_versus(experiment_id, tags, mean, baseline)}",
        f"- **Cost**: {_cost(metrics)}",
    ]
    if "refine_rounds" in metrics:
        lines.append(
            f"- **Refinement**: {_count(metrics, 'refine_rounds')} rounds, best round {_count(metrics, 'best_round')} "
            f"(held-out Dice {_dice(metrics.get('heldout_dice_best'))})"
        )
    if tags.get("logged_model_id"):
        model = tags["logged_model_id"]
        lines.append(f"- **Logged model**: [{model}](#/experiments/{experiment_id}/models/{model})")
    figure = _figure(experiment_id, tags, children)
    runs = [
        f"- {c.kind}: [{c.name}]({run_link(experiment_id, c.run_id)})"
        + (f" ({c.note})" if c.note else "")
        + (f", {c.status}" if c.status != "FINISHED" else "")
        for c in children
    ]
    head = "\n".join([*lines, "", "## Runs"]) + "\n\n"
    tail = "\n".join(figure)
    room = _MAX_CHARS - len(head) - len(tail) - 200  # 200: the line saying what was left out
    shown: list[str] = []
    for line in runs:
        if len(line) + 1 > room:
            shown.append(f"- ... and {len(runs) - len(shown)} more: filter `tags.{MLFLOW_PARENT_RUN_ID} = '{run_id}'`")
            break
        shown.append(line)
        room -= len(line) + 1
    return head + ("\n".join(shown) if shown else "(none)") + "\n" + (tail + "\n" if tail else "")


def children_of(client: MlflowClient, root: Run) -> list[ChildRun]:
    """The root's direct children, oldest first."""
    runs = client.search_runs(
        [root.info.experiment_id],
        f"tags.{MLFLOW_PARENT_RUN_ID} = '{root.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=1000,
    )
    return [ChildRun.of(r) for r in runs]


def find_baseline(client: MlflowClient, root: Run) -> BaselineDice | None:
    """The latest succeeded nnU-Net baseline of the root's dataset on the same prepared data (`data_digest`)
    and the same forced budget, in the same experiment, that has a held-out Dice."""
    tags, digest = root.data.tags, root.data.params.get("data_digest")
    if tags.get("baseline") == "true" or not digest or not tags.get("dataset"):
        return None
    for run in baseline_roots(client, root.info.experiment_id, tags["dataset"], digest, tags.get("budget")):
        if "heldout_dice_mean" in run.data.metrics:
            return BaselineDice(run.info.run_id, run.data.metrics["heldout_dice_mean"])
    return None


def describe(client: MlflowClient, run_id: str) -> str:
    """The description of pipeline root `run_id`, from the tracking server."""
    root = client.get_run(run_id)
    data = root.data
    return build(
        run_id,
        root.info.experiment_id,
        data.tags,
        data.params,
        data.metrics,
        children_of(client, root),
        find_baseline(client, root),
    )


def update(client: MlflowClient, run_id: str, warn: Callable[[str], None]) -> str | None:
    """Set the root's description (`mlflow.note.content`); a failure is reported to `warn`, never raised."""
    try:
        text = describe(client, run_id)
        client.set_tag(run_id, MLFLOW_RUN_NOTE, text)
        return text
    except Exception as exc:  # noqa: BLE001 - the description explains a run; it must not fail it
        warn(f"WARNING: run {run_id}: its description ({MLFLOW_RUN_NOTE}) was not written: {type(exc).__name__}: {exc}")
        return None
