"""Response cache: content-addressed JSON files, so rerunning a pipeline makes no API call.

The key covers everything that shapes the answer: provider, endpoint, API model id, request settings, the
whole message list and the repeat number (repeats must never share replies). Entries are plain, indented
JSON a person can read: the request's identity and the reply as it came.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from llmseg_mlflow.llm.base import Message, Provider, Reply, make_provider
from llmseg_mlflow.paths import cache_root

if TYPE_CHECKING:
    from llmseg_mlflow.catalog.models import ModelSpec

FORMAT = 1  # bump when the entry layout changes; old entries are then simply not found


def normalise_endpoint(base_url: str | None) -> str | None:
    """The endpoint as one string per server (no blanks, no trailing slash, lower-case scheme and host, no
    user:password@); None for the provider's default endpoint."""
    url = (base_url or "").strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2].lower()  # credentials in the URL never reach the cache files
    return urlunsplit((parts.scheme.lower(), host, parts.path, parts.query, parts.fragment))


def cache_key(spec: ModelSpec, repeat: int, messages: list[Message], endpoint: str | None = None) -> dict[str, object]:
    """The request identity that is hashed (and stored beside the reply); `endpoint` is the URL actually
    called (a provider may take it from the environment), else the catalog's base_url."""
    identity: dict[str, object] = {
        "format": FORMAT,
        "provider": spec.provider,
        "api_model": spec.api_model,
        "settings": spec.settings,
        "repeat": repeat,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
    # Two servers answering for the same model name must not share replies. The provider's default
    # endpoint adds nothing, so entries cached before the endpoint was part of the key still match it.
    base_url = normalise_endpoint(endpoint if endpoint is not None else spec.base_url)
    if base_url is not None:
        identity["base_url"] = base_url
    return identity


def digest(identity: dict[str, object]) -> str:
    """sha256 of the canonical JSON of a request identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class CachedProvider:
    """Wraps a provider: answers from the cache when it can, stores every fresh reply."""

    def __init__(self, inner: Provider, spec: ModelSpec, repeat: int, root: Path, *, read: bool = True) -> None:
        self.inner, self.spec, self.repeat, self.read = inner, spec, repeat, read
        # The URL the provider really calls (LLMSEG_*_BASE_URL may override the catalog's); None: its default.
        self.endpoint = getattr(inner, "base_url", spec.base_url)
        self.folder = root / spec.provider / (spec.api_model or spec.key).replace("/", "_")

    def path_for(self, messages: list[Message]) -> Path:
        """Where the reply to this conversation is (or would be) stored."""
        return self.folder / f"{digest(self._key(messages))}.json"

    def _key(self, messages: list[Message]) -> dict[str, object]:
        return cache_key(self.spec, self.repeat, messages, self.endpoint)

    def complete(self, messages: list[Message]) -> Reply:
        """A cached reply (cached=True, cost 0) or a fresh one, which is then stored."""
        path = self.path_for(messages)
        if self.read and path.exists():
            stored = json.loads(path.read_text())["reply"]
            return Reply(**{**stored, "cached": True, "cost_usd": 0.0, "latency_s": 0.0})
        reply = self.inner.complete(messages)
        entry = {"request": self._key(messages), "reply": asdict(reply)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, indent=2, ensure_ascii=False, default=str))
        tmp.replace(path)  # atomic: a crash never leaves half an entry
        return reply


def build_provider(
    model: ModelSpec, dataset: str, repeat: int, cache_dir: Path | None = None, no_cache: bool = False
) -> Provider:
    """The model's provider; API providers answer through the response cache (replays need none)."""
    provider = make_provider(model, dataset=dataset, repeat=repeat)
    if model.provider == "replay":
        return provider
    return CachedProvider(provider, model, repeat, cache_root(cache_dir), read=not no_cache)
