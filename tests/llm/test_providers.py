"""The OpenAI and Anthropic providers against a local server speaking their wire protocols, through the real SDKs.

Real-API smoke tests at the end run only with LLMSEG_REAL_LLM_TESTS=1 and the vendor's key set (one tiny call).
"""

from __future__ import annotations

import os
import time

import pytest

from llmseg_mlflow.catalog.models import ModelSpec, get_model
from llmseg_mlflow.llm.anthropic_provider import AnthropicProvider
from llmseg_mlflow.llm.base import LLMError, Message, make_provider
from llmseg_mlflow.llm.openai_provider import OpenAIProvider
from llmseg_mlflow.llm.retry import Failure, RetryPolicy, call_with_retries, retry_after_seconds
from tests.llm.fake_llm_server import ANTHROPIC, OPENAI, error, fake_llm, hang, reply  # noqa: F401 (fixture)

CONVERSATION = [
    Message("user", "Write dataset.py"),
    Message("assistant", "```python\nx = 1\n```"),
    Message("user", "Traceback: NameError"),
]
# One catalog model per wire protocol, for tests that behave the same on both.
FAMILIES = [pytest.param("gpt-4o", OPENAI, id="openai"), pytest.param("claude-3.5-sonnet", ANTHROPIC, id="anthropic")]


def provider(key: str, **settings):
    """The registered provider for a catalog model, settings optionally replaced."""
    spec = get_model(key)
    if settings:
        spec = spec.model_copy(update={"settings": settings})
    return make_provider(spec, dataset="bagls", repeat=1)


def test_o4_mini_high_sends_max_completion_tokens_and_effort(fake_llm):
    fake_llm.script(OPENAI, reply("Here is dataset.py", tokens_in=1200, tokens_out=900, tokens_reasoning=700))
    spec = get_model("gpt-o4-mini-high")
    got = provider("gpt-o4-mini-high").complete(CONVERSATION)

    assert (got.text, got.reasoning) == ("Here is dataset.py", None)
    assert (got.tokens_in, got.tokens_out, got.tokens_reasoning) == (1200, 900, 700)
    # completion_tokens already include the reasoning tokens: billed once, as output
    assert got.cost_usd == pytest.approx((1200 * 1.1 + 900 * 4.4) / 1e6)
    assert got.cost_usd == pytest.approx(spec.cost_usd(1200, 900))
    assert got.raw["retries"] == 0 and got.raw["finish_reason"] == "stop" and got.raw["id"] == "chatcmpl-fake1"
    (sent,) = fake_llm.requests(OPENAI)
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer test-key-openai_api_key"
    assert sent.body["model"] == "o4-mini"
    assert sent.body["max_completion_tokens"] == 32768 and sent.body["reasoning_effort"] == "high"
    assert "max_tokens" not in sent.body and "temperature" not in sent.body
    assert sent.body["messages"] == [{"role": m.role, "content": m.content} for m in CONVERSATION]


def test_non_reasoning_openai_model_sends_max_tokens_and_temperature(fake_llm):
    fake_llm.script(OPENAI, reply("ok"))
    provider("gpt-4o").complete(CONVERSATION)
    body = fake_llm.requests(OPENAI)[0].body
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("gpt-4o", 16384, 1.0)
    assert "max_completion_tokens" not in body and "reasoning_effort" not in body


def test_deepseek_r1_reasoning_content_becomes_the_reasoning(fake_llm):
    fake_llm.script(
        OPENAI,
        reply("final answer", "Let me think about U-Nets...", tokens_in=50, tokens_out=400, tokens_reasoning=350),
    )
    p = provider("deepseek-r1")
    assert isinstance(p, OpenAIProvider)
    got = p.complete(CONVERSATION)

    assert (got.text, got.reasoning) == ("final answer", "Let me think about U-Nets...")
    assert (got.tokens_in, got.tokens_out, got.tokens_reasoning) == (50, 400, 350)
    assert got.cost_usd == pytest.approx((50 * 0.55 + 400 * 2.19) / 1e6)
    sent = fake_llm.requests(OPENAI)[0]
    assert sent.headers["authorization"] == "Bearer test-key-deepseek_api_key"  # the entry's api_key_env
    assert sent.body["model"] == "deepseek-reasoner" and sent.body["max_tokens"] == 32768
    assert got.raw["base_url"] == fake_llm.openai_url  # LLMSEG_OPENAI_BASE_URL beat https://api.deepseek.com


def test_extra_body_is_sent_verbatim(fake_llm):
    fake_llm.script(OPENAI, reply("ok"))
    provider("qwen3-235b").complete(CONVERSATION)
    assert fake_llm.requests(OPENAI)[0].body["enable_thinking"] is True


def test_claude_4_sonnet_thinking_blocks_become_the_reasoning(fake_llm):
    fake_llm.script(
        ANTHROPIC,
        reply(
            "```python\nimport torch\n```",
            "The user wants a U-Net.",
            tokens_in=3000,
            tokens_out=5000,
            tokens_reasoning=4200,
        ),
    )
    p = provider("claude-4-sonnet")
    assert isinstance(p, AnthropicProvider)
    got = p.complete(CONVERSATION)

    assert got.text == "```python\nimport torch\n```" and got.reasoning == "The user wants a U-Net."
    assert (got.tokens_in, got.tokens_out, got.tokens_reasoning) == (3000, 5000, 4200)
    assert got.cost_usd == pytest.approx((3000 * 3.0 + 5000 * 15.0) / 1e6)  # thinking is within output_tokens
    assert got.raw["finish_reason"] == "end_turn" and got.raw["id"] == "msg_fake1"
    (sent,) = fake_llm.requests(ANTHROPIC)
    assert sent.path == "/v1/messages" and "anthropic-version" in sent.headers
    assert sent.headers["authorization"] == "Bearer test-key-anthropic_api_key"
    assert sent.body["model"] == "claude-sonnet-4-20250514" and sent.body["max_tokens"] == 32000
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 16000}
    assert "temperature" not in sent.body  # the API refuses a temperature with thinking on
    assert sent.body["messages"] == [{"role": m.role, "content": m.content} for m in CONVERSATION]


def test_claude_without_thinking_sends_temperature_and_system_apart(fake_llm):
    fake_llm.script(ANTHROPIC, reply("plain"))
    got = provider("claude-3.5-sonnet").complete([Message("system", "Be terse."), *CONVERSATION])
    body = fake_llm.requests(ANTHROPIC)[0].body
    assert got.reasoning is None and got.text == "plain"
    assert body["temperature"] == 1.0 and "thinking" not in body and body["max_tokens"] == 8192
    assert body["system"] == "Be terse." and [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("key, protocol", FAMILIES)
def test_429_with_retry_after_then_success_counts_one_retry(fake_llm, key, protocol):
    fake_llm.script(protocol, error(429, "Rate limit reached", retry_after=0), reply("after the wait"))
    got = provider(key).complete(CONVERSATION)
    assert got.text == "after the wait"
    assert got.raw["retries"] == 1 and got.raw["retry_reasons"] == ["HTTP 429"]
    assert fake_llm.count(protocol) == 2


def test_retry_after_header_sets_the_wait(fake_llm, monkeypatch):
    monkeypatch.setenv("LLMSEG_LLM_RETRY_BASE_S", "0")  # without the header there would be no wait at all
    fake_llm.script(OPENAI, error(429, retry_after=0.4), reply("ok"))
    start = time.perf_counter()
    provider("gpt-4o").complete(CONVERSATION)
    assert time.perf_counter() - start >= 0.4


@pytest.mark.parametrize("key, protocol", FAMILIES)
def test_two_server_errors_then_success_counts_two_retries(fake_llm, key, protocol):
    fake_llm.script(protocol, error(500), error(503 if protocol == OPENAI else 529), reply("third time"))
    got = provider(key).complete(CONVERSATION)
    assert got.text == "third time" and got.raw["retries"] == 2 and fake_llm.count(protocol) == 3


@pytest.mark.parametrize("key, protocol", FAMILIES)
def test_hung_requests_time_out_are_retried_then_fail(fake_llm, monkeypatch, key, protocol):
    monkeypatch.setenv("LLMSEG_LLM_TIMEOUT_S", "0.5")
    monkeypatch.setenv("LLMSEG_LLM_MAX_RETRIES", "2")
    fake_llm.script(protocol, hang(), hang(), hang(), reply("too late"))
    start = time.perf_counter()
    with pytest.raises(LLMError, match=r"after 3 attempts \(timeout, timeout, timeout\).*0\.5 s"):
        provider(key).complete(CONVERSATION)
    assert fake_llm.count(protocol) == 3
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("key, protocol", FAMILIES)
def test_persistent_server_error_gives_up_with_the_providers_message(fake_llm, monkeypatch, key, protocol):
    monkeypatch.setenv("LLMSEG_LLM_MAX_RETRIES", "1")
    fake_llm.script(protocol, error(502, "upstream down"), error(502, "upstream down"), reply("never"))
    with pytest.raises(LLMError, match=r"after 2 attempts \(HTTP 502, HTTP 502\).*upstream down"):
        provider(key).complete(CONVERSATION)
    assert fake_llm.count(protocol) == 2


@pytest.mark.parametrize("key, protocol", FAMILIES)
@pytest.mark.parametrize("status, message", [(401, "invalid x-api-key"), (400, "max_tokens: too large")])
def test_client_errors_fail_at_once(fake_llm, key, protocol, status, message):
    fake_llm.script(protocol, error(status, message), reply("never"))
    with pytest.raises(LLMError, match=f"HTTP {status}") as caught:
        provider(key).complete(CONVERSATION)
    assert message in str(caught.value) and fake_llm.count(protocol) == 1
    if status == 401:
        assert get_model(key).api_key_env in str(caught.value)


@pytest.mark.parametrize(
    "key, variable",
    [("gpt-o3", "OPENAI_API_KEY"), ("deepseek-v3", "DEEPSEEK_API_KEY"), ("claude-4-sonnet", "ANTHROPIC_API_KEY")],
)
def test_missing_key_fails_at_construction_naming_the_variable(fake_llm, monkeypatch, key, variable):
    monkeypatch.delenv(variable)
    with pytest.raises(LLMError, match=f"set {variable}="):
        provider(key)
    assert fake_llm.count(OPENAI) + fake_llm.count(ANTHROPIC) == 0


def test_endpoint_from_unset_variable_fails_at_construction(monkeypatch):
    monkeypatch.delenv("LLMSEG_OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("LLAMA_BASE_URL", raising=False)
    monkeypatch.setenv("LLAMA_API_KEY", "k")
    with pytest.raises(LLMError, match="export LLAMA_BASE_URL="):
        provider("llama-4-maverick")


@pytest.mark.parametrize("key, setting", [("claude-4-sonnet", "reasoning_effort"), ("gpt-o3", "thinking_budget")])
def test_setting_of_the_other_family_is_refused(fake_llm, key, setting):
    with pytest.raises(LLMError, match=f"setting '{setting}' does not apply"):
        provider(key, **{setting: 1000, "max_tokens": 4096})


def test_keyless_openai_compatible_server_needs_no_key(fake_llm):
    spec = ModelSpec(
        key="local-llm",
        title="Local",
        provider="openai-compatible",
        api_model="qwen2.5-coder",
        base_url="http://127.0.0.1:9/v1",
    )
    fake_llm.script(OPENAI, reply("local answer"))
    assert make_provider(spec, dataset="bagls", repeat=1).complete(CONVERSATION).text == "local answer"
    assert fake_llm.requests(OPENAI)[0].body["model"] == "qwen2.5-coder"


def test_bad_retry_setting_names_the_variable(fake_llm, monkeypatch):
    monkeypatch.setenv("LLMSEG_LLM_MAX_RETRIES", "lots")
    fake_llm.script(OPENAI, reply("ok"))
    with pytest.raises(LLMError, match="LLMSEG_LLM_MAX_RETRIES='lots' is not a whole number"):
        provider("gpt-4o").complete(CONVERSATION)


# ---------------------------------------------------------------- retry mechanics without HTTP


def test_backoff_doubles_with_jitter_and_is_capped():
    policy = RetryPolicy(max_retries=10, base_s=1.0, max_delay_s=60.0)
    for retry, full in [(1, 1.0), (2, 2.0), (3, 4.0), (8, 60.0)]:
        assert 0.75 * full <= policy.delay_s(retry, None) <= full
    assert policy.delay_s(1, 7.0) == 7.0 and policy.delay_s(1, 3600.0) == 60.0


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert 0 <= retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 1  # a past date
    assert retry_after_seconds({}) is None and retry_after_seconds({"retry-after": "soon"}) is None


def test_unclassified_exceptions_propagate_untouched():
    def broken():
        raise KeyError("a bug, not an API failure")

    with pytest.raises(KeyError):
        call_with_retries(broken, lambda exc: None, what="x", policy=RetryPolicy(max_retries=3))


def test_sleeps_follow_the_policy():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "done"

    outcome = call_with_retries(
        flaky,
        lambda exc: Failure(True, "connection error", str(exc), retry_after_s=0.5),
        what="x",
        policy=RetryPolicy(max_retries=5),
        sleep=sleeps.append,
    )
    assert (outcome.result, outcome.retries, sleeps) == ("done", 2, [0.5, 0.5])
    assert outcome.retry_reasons == ["connection error", "connection error"] and outcome.waited_s == 1.0


# ---------------------------------------------------------------- real APIs (opt-in, one tiny call each)

REAL = os.environ.get("LLMSEG_REAL_LLM_TESTS") == "1"


@pytest.mark.parametrize(
    "key, variable, settings",
    [
        ("gpt-4o", "OPENAI_API_KEY", {"max_tokens": 16}),
        ("claude-4-sonnet", "ANTHROPIC_API_KEY", {"max_tokens": 16}),
        ("deepseek-v3", "DEEPSEEK_API_KEY", {"max_tokens": 16}),
    ],
)
def test_real_api_answers(monkeypatch, key, variable, settings):
    if not (REAL and os.environ.get(variable)):
        pytest.skip(f"real API call: set LLMSEG_REAL_LLM_TESTS=1 and {variable} to run it (costs under a cent)")
    for name in ("LLMSEG_OPENAI_BASE_URL", "LLMSEG_ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMSEG_LLM_TIMEOUT_S", "120")
    got = provider(key, **settings).complete([Message("user", "Reply with the single word: pong")])
    assert "pong" in got.text.lower()
    assert got.tokens_in > 0 and got.tokens_out > 0 and got.cost_usd > 0
