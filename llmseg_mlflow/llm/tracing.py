"""Each LLM call as an MLflow trace linked to the run that made it (explicit spans, any provider).

mlflow's openai/anthropic autolog links traces to the *active* fluent run (mlflow#13608 reports it
attaching to the wrong one); our runs are made with the client, so experiment and run are given
explicitly, and no process-wide "active experiment" is set (it would leak into child processes).
"""

from __future__ import annotations

import mlflow
from mlflow.entities import SpanStatusCode

from llmseg_mlflow.llm.base import Message, Provider, Reply


def traced_complete(
    provider: Provider, messages: list[Message], *, name: str, run_id: str, experiment_id: str
) -> Reply:
    """Call the provider inside a CHAT_MODEL span whose trace points at `run_id`."""
    span = mlflow.start_span_no_context(
        name,
        span_type="CHAT_MODEL",
        experiment_id=experiment_id,
        metadata={"mlflow.sourceRun": run_id},
        inputs={"messages": [{"role": m.role, "content": m.content} for m in messages]},
    )
    try:
        reply = provider.complete(messages)
    except BaseException as exc:
        span.end(status=SpanStatusCode.ERROR, attributes={"error": f"{type(exc).__name__}: {exc}"})
        raise
    span.end(
        outputs={"text": reply.text, "reasoning": reply.reasoning},
        attributes={
            "tokens_in": reply.tokens_in,
            "tokens_out": reply.tokens_out,
            "tokens_reasoning": reply.tokens_reasoning,
            "cached": reply.cached,
            "latency_s": reply.latency_s,
            "cost_usd": reply.cost_usd,
        },
    )
    return reply


def flush() -> None:
    """Wait until traces logged in the background have reached the tracking server."""
    mlflow.flush_trace_async_logging()
