"""Each LLM call as an MLflow trace linked to the run that made it (explicit spans, any provider).

mlflow's openai/anthropic autolog links traces to the *active* fluent run (mlflow#13608 reports it
attaching to the wrong one); our runs are made with the client, so the link is set explicitly.
"""
from __future__ import annotations

import mlflow

from llmseg_mlflow.llm.base import Message, Provider, Reply


def traced_complete(provider: Provider, messages: list[Message], *, name: str, run_id: str) -> Reply:
    """Call the provider inside a CHAT_MODEL span whose trace points at `run_id`."""
    with mlflow.start_span(name=name, span_type="CHAT_MODEL") as span:
        mlflow.update_current_trace(metadata={"mlflow.sourceRun": run_id})
        span.set_inputs({"messages": [{"role": m.role, "content": m.content} for m in messages]})
        reply = provider.complete(messages)
        span.set_outputs({"text": reply.text, "reasoning": reply.reasoning})
        span.set_attributes({"tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out,
                             "tokens_reasoning": reply.tokens_reasoning, "cached": reply.cached,
                             "latency_s": reply.latency_s, "cost_usd": reply.cost_usd})
    return reply


def flush() -> None:
    """Wait until traces logged in the background have reached the tracking server."""
    mlflow.flush_trace_async_logging()
