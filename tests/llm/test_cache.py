"""The response cache: reruns make no call, repeats never share, entries are readable JSON."""

from __future__ import annotations

import json

from llmseg_mlflow.catalog.models import get_model
from llmseg_mlflow.llm.base import Message, Reply
from llmseg_mlflow.llm.cache import CachedProvider


class Counting:
    """A provider that numbers its answers, so a test can tell fresh replies from cached ones."""

    def __init__(self):
        self.calls = 0

    def complete(self, messages):
        self.calls += 1
        return Reply(text=f"answer {self.calls}", reasoning="thought", tokens_in=10, tokens_out=5, cost_usd=0.25)


def test_rerun_is_served_from_cache_with_zero_calls(tmp_path):
    spec, inner = get_model("claude-4-sonnet"), Counting()
    convo = [Message("user", "write the pipeline")]
    first = CachedProvider(inner, spec, 1, tmp_path).complete(convo)
    again = CachedProvider(inner, spec, 1, tmp_path).complete(convo)
    assert inner.calls == 1
    assert again.text == first.text == "answer 1" and again.reasoning == "thought"
    assert again.cached and not first.cached and again.cost_usd == 0.0 and again.tokens_in == 10
    entry = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert entry["request"]["api_model"] == spec.api_model and entry["reply"]["text"] == "answer 1"


def test_repeats_settings_and_history_change_the_key(tmp_path):
    spec, inner = get_model("claude-4-sonnet"), Counting()
    convo = [Message("user", "write the pipeline")]
    CachedProvider(inner, spec, 1, tmp_path).complete(convo)
    assert CachedProvider(inner, spec, 2, tmp_path).complete(convo).text == "answer 2"
    longer = [*convo, Message("assistant", "answer 1"), Message("user", "NameError: x")]
    assert CachedProvider(inner, spec, 1, tmp_path).complete(longer).text == "answer 3"
    other = get_model("gpt-o3")
    assert CachedProvider(inner, other, 1, tmp_path).complete(convo).text == "answer 4"


def test_no_cache_forces_a_fresh_call_and_stores_it(tmp_path):
    spec, inner = get_model("gpt-4o"), Counting()
    convo = [Message("user", "p")]
    CachedProvider(inner, spec, 1, tmp_path).complete(convo)
    fresh = CachedProvider(inner, spec, 1, tmp_path, read=False).complete(convo)
    assert fresh.text == "answer 2" and not fresh.cached
    assert CachedProvider(inner, spec, 1, tmp_path).complete(convo).text == "answer 2"
    assert inner.calls == 2


def test_the_endpoint_is_part_of_the_key(tmp_path, monkeypatch):
    """Two servers answering for the same model name never share replies; one server spelled twice does."""
    from llmseg_mlflow.llm.cache import cache_key, digest
    from llmseg_mlflow.llm.openai_provider import BASE_URL_ENV, OpenAIProvider

    spec, convo = get_model("gpt-4o"), [Message("user", "write the pipeline")]
    here = spec.model_copy(update={"base_url": "http://127.0.0.1:8001/v1"})
    there = spec.model_copy(update={"base_url": "http://127.0.0.1:8002/v1"})

    def key(s, endpoint=None):
        return digest(cache_key(s, 1, convo, endpoint))

    assert len({key(here), key(there), key(spec)}) == 3
    spelled_otherwise = spec.model_copy(update={"base_url": " HTTP://127.0.0.1:8001/v1/"})
    assert key(here) == key(spelled_otherwise) == key(spec, "http://127.0.0.1:8001/v1")
    # The default endpoint adds nothing: the key is the one used before the endpoint was part of it.
    assert cache_key(spec, 1, convo) == {
        "format": 1,
        "provider": spec.provider,
        "api_model": spec.api_model,
        "settings": spec.settings,
        "repeat": 1,
        "messages": [{"role": "user", "content": "write the pipeline"}],
    }
    inner = Counting()
    CachedProvider(inner, here, 1, tmp_path).complete(convo)
    assert CachedProvider(inner, there, 1, tmp_path).complete(convo).text == "answer 2"
    assert CachedProvider(inner, here, 1, tmp_path).complete(convo).text == "answer 1"
    # What the provider really calls is what counts: here the environment's endpoint over the catalog's.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv(BASE_URL_ENV, "http://127.0.0.1:8002/v1/")
    real = OpenAIProvider(here, dataset="d", repeat=1)
    assert CachedProvider(real, here, 1, tmp_path).path_for(convo) == CachedProvider(
        inner, there, 1, tmp_path
    ).path_for(convo)
