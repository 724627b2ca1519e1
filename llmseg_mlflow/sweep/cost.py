"""Expected API cost of the jobs a sweep still has to run: catalog prices x tokens seen per pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from mlflow.tracking import MlflowClient

from llmseg_mlflow.catalog.models import ModelSpec
from llmseg_mlflow.sweep.jobs import retrying

# Stated default when no finished pipeline of a model is on the server yet: a first reply and a few
# fix rounds, each resending the conversation (the paper's pipelines took 0-10 rounds).
DEFAULT_TOKENS_IN = 40_000
DEFAULT_TOKENS_OUT = 15_000


@dataclass(frozen=True)
class TokenEstimate:
    """Tokens one pipeline of a model is expected to use, and where the number comes from."""

    tokens_in: float
    tokens_out: float
    basis: str  # e.g. "mean of 12 finished pipelines" or "default"


def token_estimates(client: MlflowClient | None, models: list[ModelSpec]) -> dict[str, TokenEstimate]:
    """Per model: mean tokens of its finished pipelines on this server (any study), else the default."""
    experiments = (
        retrying(lambda: [e.experiment_id for e in client.search_experiments()], "list experiments")
        if client is not None
        else []
    )
    out = {}
    for model in models:
        if model.provider in ("replay", "none"):
            out[model.key] = TokenEstimate(0, 0, "no API calls")
            continue
        query = f"tags.kind = 'pipeline' and tags.model = '{model.key}' and attributes.status = 'FINISHED'"
        runs = (
            retrying(partial(client.search_runs, experiments, query, max_results=200), "search runs")
            if client is not None and experiments  # experiments are only listed with a client
            else []
        )
        seen = [r.data.metrics for r in runs if "tokens_in" in r.data.metrics and "budget" not in r.data.tags]
        seen = [m for m in seen if m.get("llm_calls", 1) > 0 and m["tokens_in"] > 0]  # cache hits used no tokens
        if seen:
            out[model.key] = TokenEstimate(
                sum(m["tokens_in"] for m in seen) / len(seen),
                sum(m.get("tokens_out", 0) for m in seen) / len(seen),  # incl. reasoning
                f"mean of {len(seen)} finished pipelines",
            )
        else:
            out[model.key] = TokenEstimate(
                DEFAULT_TOKENS_IN, DEFAULT_TOKENS_OUT, f"default {DEFAULT_TOKENS_IN:,} in / {DEFAULT_TOKENS_OUT:,} out"
            )
    return out


def pipeline_cost(model: ModelSpec, estimate: TokenEstimate) -> float | None:
    """USD for one pipeline of model; None when the catalog has no price for it."""
    if model.provider in ("replay", "none"):
        return 0.0
    if model.price_in_per_mtok is None or model.price_out_per_mtok is None:
        return None
    return model.cost_usd(int(estimate.tokens_in), int(estimate.tokens_out))
