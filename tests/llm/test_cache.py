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
