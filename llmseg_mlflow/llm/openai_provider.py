"""OpenAI chat completions: OpenAI's own models and every OpenAI-compatible endpoint (DeepSeek, Gemini, xAI, ...).

Environment:
  LLMSEG_OPENAI_BASE_URL  if set, replaces the endpoint of every `openai` and `openai-compatible` model
                          (a proxy, a self-hosted server, the tests' fake server), e.g. http://127.0.0.1:8000/v1
  the model's api_key_env the API key (OPENAI_API_KEY for provider `openai` when the entry names none); an
                          `openai-compatible` entry without api_key_env sends a placeholder (local servers)
  LLMSEG_LLM_TIMEOUT_S, LLMSEG_LLM_MAX_RETRIES, LLMSEG_LLM_RETRY_BASE_S: see llmseg_mlflow.llm.retry

Settings (catalog `settings:`): temperature (sent only when set), max_tokens (sent as max_completion_tokens to
o-series and gpt-5 reasoning models, which refuse max_tokens), reasoning_effort, extra_body (sent verbatim).
tokens_out is completion_tokens, which already includes the reasoning tokens (billed as output);
tokens_reasoning is usage.completion_tokens_details.reasoning_tokens where the server reports it. The reasoning
text is DeepSeek's/xAI's `reasoning_content` (or `reasoning`, as some hosts name it); OpenAI returns none.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import openai

from llmseg_mlflow.llm.base import LLMError, Message, Reply
from llmseg_mlflow.llm.retry import call_with_retries, request_timeout_s, sdk_classifier

if TYPE_CHECKING:
    from llmseg_mlflow.catalog.models import ModelSpec

BASE_URL_ENV = "LLMSEG_OPENAI_BASE_URL"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
SETTINGS = ("temperature", "max_tokens", "reasoning_effort", "extra_body")
# Reasoning models take max_completion_tokens (max_tokens is refused) and no temperature.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_NO_KEY = "not-needed"  # the SDK insists on some key; keyless local servers ignore it


def uses_max_completion_tokens(api_model: str) -> bool:
    """Whether OpenAI expects max_completion_tokens instead of max_tokens for this model id."""
    return api_model.lower().startswith(_REASONING_PREFIXES)


def request_params(spec: ModelSpec) -> dict[str, Any]:
    """The chat.completions.create arguments for a model's settings, without the messages."""
    assert spec.api_model is not None
    unknown = sorted(set(spec.settings) - set(SETTINGS))
    if unknown:
        raise LLMError(
            f"model {spec.key!r}: setting {unknown[0]!r} does not apply to provider {spec.provider!r}; "
            f"valid settings: {', '.join(SETTINGS)} (thinking_budget is for anthropic models)"
        )
    settings = spec.settings
    params: dict[str, Any] = {"model": spec.api_model}
    if settings.get("temperature") is not None:
        params["temperature"] = settings["temperature"]
    if settings.get("max_tokens") is not None:
        limit = "max_completion_tokens" if uses_max_completion_tokens(spec.api_model) else "max_tokens"
        params[limit] = int(settings["max_tokens"])
    if settings.get("reasoning_effort") is not None:
        params["reasoning_effort"] = settings["reasoning_effort"]
    if settings.get("extra_body"):
        if not isinstance(settings["extra_body"], dict):
            raise LLMError(f"model {spec.key!r}: setting 'extra_body' must be a mapping of request fields")
        params["extra_body"] = dict(settings["extra_body"])
    return params


class OpenAIProvider:
    """Answers through chat.completions of OpenAI or an OpenAI-compatible server, with counted retries."""

    def __init__(self, spec: ModelSpec, *, dataset: str, repeat: int) -> None:
        if not spec.api_model:
            raise LLMError(f"model {spec.key!r} has no api_model; set the provider's model id in the catalog")
        self.spec, self.dataset, self.repeat = spec, dataset, repeat
        self.key_env, api_key = _api_key(spec)
        self.base_url = os.environ.get(BASE_URL_ENV, "").strip() or _endpoint(spec)
        self.timeout_s = request_timeout_s()
        self.params = request_params(spec)
        # A short connect timeout: an unreachable host should not cost the whole request timeout.
        timeout = openai.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0))
        self.client = openai.OpenAI(api_key=api_key, base_url=self.base_url, timeout=timeout, max_retries=0)
        self.classify = sdk_classifier(openai, key_env=self.key_env, timeout_s=self.timeout_s)
        where = self.base_url or "api.openai.com"
        self.what = f"the {spec.provider} call for model {spec.key!r} ({spec.api_model} at {where})"

    def complete(self, messages: list[Message]) -> Reply:
        """Send the conversation; the reply with its reasoning trace, tokens and cost."""
        params = {**self.params, "messages": [{"role": m.role, "content": m.content} for m in messages]}
        start = time.perf_counter()
        outcome = call_with_retries(
            lambda: self.client.chat.completions.create(**params), self.classify, what=self.what
        )
        response = outcome.result
        if not response.choices:
            raise LLMError(
                f"{self.what} returned no choices (response {response.id!r}); the server may be "
                f"misconfigured or the model id wrong"
            )
        choice = response.choices[0]
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage else 0
        tokens_out = usage.completion_tokens if usage else 0
        details = usage.completion_tokens_details if usage else None
        tokens_reasoning = (details.reasoning_tokens or 0) if details else 0
        return Reply(
            text=choice.message.content or "",
            reasoning=_reasoning_text(choice.message),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            tokens_reasoning=tokens_reasoning,
            latency_s=outcome.latency_s,
            cost_usd=self.spec.cost_usd(tokens_in, tokens_out),  # completion_tokens include reasoning
            raw={
                "provider": self.spec.provider,
                "id": response.id,
                "model": response.model,
                "finish_reason": choice.finish_reason,
                "refusal": choice.message.refusal,  # why the text is empty, when the model declined
                "usage": usage.model_dump(mode="json", exclude_none=True) if usage else None,
                "retries": outcome.retries,
                "retry_reasons": outcome.retry_reasons,
                "wall_s": time.perf_counter() - start,
                "base_url": self.base_url,
                "request": {k: v for k, v in params.items() if k != "messages"},
            },
        )


def _reasoning_text(message: Any) -> str | None:
    """The reasoning trace an OpenAI-compatible server put beside the answer, if any."""
    extra = message.model_extra or {}
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None) or extra.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _api_key(spec: ModelSpec) -> tuple[str | None, str]:
    """(environment variable, key); LLMError naming the variable when it is unset."""
    env = spec.api_key_env or (DEFAULT_KEY_ENV if spec.provider == "openai" else None)
    if env is None:
        return None, _NO_KEY
    key = os.environ.get(env, "").strip()
    if not key:
        raise LLMError(
            f"model {spec.key!r} needs an API key: set {env}=... (your {spec.provider} key) in the environment, "
            f"or run the model's recorded replies with replay:DIR"
        )
    return env, key


def _endpoint(spec: ModelSpec) -> str | None:
    """The catalog's base URL for the model; LLMError when it comes from an unset environment variable."""
    try:
        return spec.endpoint()
    except ValueError as exc:
        raise LLMError(str(exc)) from exc
