"""Anthropic Messages API: Claude models, with extended thinking where the catalog sets a thinking budget.

Environment:
  LLMSEG_ANTHROPIC_BASE_URL  if set, replaces the endpoint of every `anthropic` model (a proxy, a gateway, the
                             tests' fake server), e.g. http://127.0.0.1:8000 (the SDK appends /v1/messages)
  the model's api_key_env    the API key (ANTHROPIC_API_KEY when the entry names none)
  LLMSEG_LLM_TIMEOUT_S, LLMSEG_LLM_MAX_RETRIES, LLMSEG_LLM_RETRY_BASE_S: see llmseg_mlflow.llm.retry

Settings (catalog `settings:`): max_tokens (required by the API; default 8192; includes the thinking budget),
thinking_budget (sends thinking={"type": "enabled", "budget_tokens": N}), temperature (sent only when set and
thinking is off: the API refuses it with thinking; sent in the body, as anthropic>=1.0 has no argument for it),
extra_body (sent verbatim).
The reply text is the text blocks joined, the reasoning the thinking blocks joined. output_tokens includes the
thinking tokens (billed as output); tokens_reasoning is usage.output_tokens_details.thinking_tokens where the API
reports it (recent API versions), else 0.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import anthropic

from llmseg_mlflow.llm.base import LLMError, Message, Reply
from llmseg_mlflow.llm.retry import call_with_retries, request_timeout_s, sdk_classifier

if TYPE_CHECKING:
    from llmseg_mlflow.catalog.models import ModelSpec

BASE_URL_ENV = "LLMSEG_ANTHROPIC_BASE_URL"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
DEFAULT_MAX_TOKENS = 8192
SETTINGS = ("temperature", "max_tokens", "thinking_budget", "extra_body")


def request_params(spec: ModelSpec) -> dict[str, Any]:
    """The messages.create arguments for a model's settings, without the messages."""
    unknown = sorted(set(spec.settings) - set(SETTINGS))
    if unknown:
        raise LLMError(
            f"model {spec.key!r}: setting {unknown[0]!r} does not apply to provider 'anthropic'; valid settings: "
            f"{', '.join(SETTINGS)} (use thinking_budget instead of reasoning_effort)"
        )
    settings = spec.settings
    max_tokens = int(settings.get("max_tokens") or DEFAULT_MAX_TOKENS)
    params: dict[str, Any] = {"model": spec.api_model, "max_tokens": max_tokens}
    budget = settings.get("thinking_budget")
    if budget:
        if int(budget) >= max_tokens:
            raise LLMError(
                f"model {spec.key!r}: thinking_budget ({budget}) must be below max_tokens ({max_tokens}), which "
                f"includes it; raise max_tokens or lower thinking_budget"
            )
        params["thinking"] = {"type": "enabled", "budget_tokens": int(budget)}
    extra = settings.get("extra_body") or {}
    if not isinstance(extra, dict):
        raise LLMError(f"model {spec.key!r}: setting 'extra_body' must be a mapping of request fields")
    extra = dict(extra)
    if settings.get("temperature") is not None and "thinking" not in params:
        # anthropic>=1.0 dropped the temperature argument; the API still takes it in the body.
        extra["temperature"] = settings["temperature"]
    if extra:
        params["extra_body"] = extra
    return params


class AnthropicProvider:
    """Answers through Anthropic's Messages API, with counted retries."""

    def __init__(self, spec: ModelSpec, *, dataset: str, repeat: int) -> None:
        if not spec.api_model:
            raise LLMError(f"model {spec.key!r} has no api_model; set the Claude model id in the catalog")
        self.spec, self.dataset, self.repeat = spec, dataset, repeat
        self.key_env = spec.api_key_env or DEFAULT_KEY_ENV
        api_key = os.environ.get(self.key_env, "").strip()
        if not api_key:
            raise LLMError(
                f"model {spec.key!r} needs an API key: set {self.key_env}=... (your Anthropic key) in the "
                f"environment, or run the model's recorded replies with replay:DIR"
            )
        self.base_url = os.environ.get(BASE_URL_ENV, "").strip() or _endpoint(spec)
        self.timeout_s = request_timeout_s()
        self.params = request_params(spec)
        # A short connect timeout: an unreachable host should not cost the whole request timeout.
        self.timeout = anthropic.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0))
        self.client = anthropic.Anthropic(api_key=api_key, base_url=self.base_url, timeout=self.timeout, max_retries=0)
        self.classify = sdk_classifier(anthropic, key_env=self.key_env, timeout_s=self.timeout_s)
        where = self.base_url or "api.anthropic.com"
        self.what = f"the anthropic call for model {spec.key!r} ({spec.api_model} at {where})"

    def complete(self, messages: list[Message]) -> Reply:
        """Send the conversation; the reply with its thinking, tokens and cost."""
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        params = {
            **self.params,
            "messages": [{"role": m.role, "content": m.content} for m in messages if m.role != "system"],
        }
        if system:
            params["system"] = system  # the Messages API takes no system role inside messages
        start = time.perf_counter()
        # An explicit per-call timeout also stops the SDK from refusing large max_tokens without streaming.
        outcome = call_with_retries(
            lambda: self.client.messages.create(**params, timeout=self.timeout), self.classify, what=self.what
        )
        message = outcome.result
        texts = [b.text for b in message.content if b.type == "text"]
        thoughts = [b.thinking for b in message.content if b.type == "thinking"]
        redacted = sum(1 for b in message.content if b.type == "redacted_thinking")
        usage = message.usage
        return Reply(
            text="".join(texts),
            reasoning="\n\n".join(thoughts) if thoughts else None,
            tokens_in=usage.input_tokens,
            tokens_out=usage.output_tokens,
            tokens_reasoning=_thinking_tokens(usage),
            latency_s=outcome.latency_s,
            cost_usd=self.spec.cost_usd(usage.input_tokens, usage.output_tokens),
            raw={
                "provider": "anthropic",
                "id": message.id,
                "model": message.model,
                "finish_reason": message.stop_reason,
                "usage": usage.model_dump(mode="json", exclude_none=True),
                "retries": outcome.retries,
                "retry_reasons": outcome.retry_reasons,
                "wall_s": time.perf_counter() - start,
                "base_url": self.base_url,
                "redacted_thinking_blocks": redacted,
                "request": {k: v for k, v in params.items() if k not in ("messages", "system")},
            },
        )


def _thinking_tokens(usage: Any) -> int:
    """Thinking tokens within output_tokens, where reported (older SDKs and API versions have no such field)."""
    details = getattr(usage, "output_tokens_details", None)
    return int(getattr(details, "thinking_tokens", 0) or 0)


def _endpoint(spec: ModelSpec) -> str | None:
    """The catalog's base URL for the model; LLMError when it comes from an unset environment variable."""
    try:
        return spec.endpoint()
    except ValueError as exc:
        raise LLMError(str(exc)) from exc
