"""The provider interface: messages in, one reply out."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llmseg_mlflow.catalog.models import ModelSpec


@dataclass(frozen=True)
class Message:
    """One chat message; role is 'user' or 'assistant'."""

    role: str
    content: str


@dataclass(frozen=True)
class Reply:
    """What one LLM call returned, with what it cost."""

    text: str
    reasoning: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_reasoning: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


class LLMError(RuntimeError):
    """An LLM call that failed for good (after retries), or a provider that cannot be used."""


class RecordingEnded(LLMError):
    """A replay was asked for a reply its recording does not have: the recorded conversation ends there."""


class Provider(Protocol):
    """Anything that answers a conversation."""

    def complete(self, messages: list[Message]) -> Reply:
        """Send the whole conversation, return the assistant's next reply."""


# name -> "module:factory"; imported only when a model of that provider is used.
_REGISTRY: dict[str, str] = {
    "replay": "llmseg_mlflow.llm.replay:ReplayProvider",
    "openai": "llmseg_mlflow.llm.openai_provider:OpenAIProvider",
    "openai-compatible": "llmseg_mlflow.llm.openai_provider:OpenAIProvider",
    "anthropic": "llmseg_mlflow.llm.anthropic_provider:AnthropicProvider",
}


def register_provider(name: str, target: str) -> None:
    """Register a provider factory by dotted path 'module:callable' (lazy import)."""
    _REGISTRY[name] = target


def provider_names() -> list[str]:
    """Names of the registered providers."""
    return sorted(_REGISTRY)


def make_provider(spec: ModelSpec, *, dataset: str, repeat: int) -> Provider:
    """Build the provider for a catalog model; imports its module on first use."""
    target = _REGISTRY.get(spec.provider)
    if target is None:
        note = f" ({spec.notes.strip()})" if spec.notes else ""
        raise LLMError(
            f"model {spec.key!r} uses provider {spec.provider!r}, which is not available here{note}; "
            f"known providers: {', '.join(provider_names())}"
        )
    module_name, _, attr = target.partition(":")
    factory: Callable[..., Provider] = getattr(importlib.import_module(module_name), attr)
    return factory(spec, dataset=dataset, repeat=repeat)
