"""`generate` through the real openai and anthropic SDKs, against a local server speaking their wire protocols."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.generate import GenerateConfig, run_generate
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.llm.fake_llm_server import ANTHROPIC, OPENAI, error, fake_llm, reply  # noqa: F401 (fixture)
from tests.replies import FILES, as_reply, with_bug

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")
DATASET = "synthetic-gray-suffix"
BUGGY = as_reply(with_bug(FILES, "main.py", "import os\n", ""))  # NameError: name 'os' is not defined
FIX = "Sorry, I forgot an import.\n\n```python\n# main.py\n" + FILES["main.py"] + "```\n"


def _kids(client, run_id):
    root = client.get_run(run_id)
    return client.search_runs(
        [root.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", order_by=["attributes.start_time ASC"]
    )


@pytest.mark.parametrize("model,protocol", [("deepseek-r1", OPENAI), ("claude-4-sonnet", ANTHROPIC)])
def test_generate_fix_train_through_each_sdk_family(model, protocol, fake_llm, tracking, llmseg_home, tmp_path):
    fake_llm.script(
        protocol,
        reply(BUGGY, "The user wants a U-Net...", tokens_in=1500, tokens_out=3000),
        reply(FIX, "The traceback says os is missing.", tokens_in=4800, tokens_out=400),
    )
    # The SDKs, the fix loop and the training are the point: the bug surfaces in the (1-epoch, 2-batch) full
    # run without a preflight of the same size before it, and the held-out evaluation is tested elsewhere.
    cfg = GenerateConfig(
        model=model,
        dataset=DATASET,
        study=f"t-api-{model}",
        epochs=1,
        max_batches=2,
        cache_dir=tmp_path / "cache",
        preflight=False,
        evaluate=False,
    )
    result = run_generate(cfg)
    client = MlflowClient()
    root = client.get_run(result.run_id)
    assert result.status == "succeeded" and result.errors_total == 1
    assert root.data.tags["provider"] in ("openai-compatible", "anthropic")
    assert root.data.metrics["tokens_in"] == 6300 and root.data.metrics["tokens_out"] == 3400
    assert root.data.metrics["cost_usd"] > 0 and root.data.metrics["llm_calls"] == 2
    sent = fake_llm.requests(protocol)
    assert len(sent) == 2
    last_user = [m for m in sent[1].body["messages"] if m["role"] == "user"][-1]
    assert str(last_user["content"]).startswith("Traceback (most recent call last):")
    gen, debug = _kids(client, result.run_id)[:2]
    trace = open(client.download_artifacts(gen.info.run_id, "reasoning.md", str(tmp_path))).read()
    assert trace == "The user wants a U-Net..."
    assert gen.data.tags["cache_hit"] == "false" and gen.data.metrics["tokens_out"] == 3000
    assert gen.data.params["request.model"] == sent[0].body["model"]  # the raw request settings
    assert debug.data.tags["error_type"] == "NameError"

    # The same pipeline again: answered from the cache, no request, same outcome.
    again = run_generate(cfg)
    assert len(fake_llm.requests(protocol)) == 2
    assert again.status == "succeeded" and again.errors_total == 1
    gen2 = _kids(client, again.run_id)[0]
    assert gen2.data.tags["cache_hit"] == "true" and gen2.data.metrics["cost_usd"] == 0.0


def test_repeats_do_not_share_replies_and_no_cache_calls_again(fake_llm, tracking, llmseg_home, tmp_path):
    # Only the calls matter here: a reply without code (and no fix round) ends each pipeline before any
    # sandboxed run; the cache stores and answers it like any other reply.
    words = "I would rather describe the U-Net than write it."
    fake_llm.script(ANTHROPIC, reply(words), reply(words), reply(words))
    base = dict(
        model="claude-4-sonnet",
        dataset=DATASET,
        study="t-api-repeat",
        cache_dir=tmp_path / "cache",
        max_fix_rounds=0,
    )
    assert run_generate(GenerateConfig(**base, repeat=1)).status == "no_code"
    run_generate(GenerateConfig(**base, repeat=2))
    assert len(fake_llm.requests(ANTHROPIC)) == 2
    run_generate(GenerateConfig(**base, repeat=1, no_cache=True))
    assert len(fake_llm.requests(ANTHROPIC)) == 3


def test_a_call_that_finally_fails_leaves_the_pipeline_failed_with_reason(fake_llm, tracking, llmseg_home, tmp_path):
    fake_llm.script(OPENAI, *[error(500, "upstream exploded")] * 4)  # 1 try + 3 retries (fixture's setting)
    cfg = GenerateConfig(model="gpt-o3", dataset=DATASET, study="t-api-fail", cache_dir=tmp_path / "cache")
    result = run_generate(cfg)  # the platform failed, not the pipeline: a result, not an exception
    assert result.status == "harness_error" and "upstream exploded" in result.error
    client = MlflowClient()
    exp = client.get_experiment_by_name("t-api-fail")
    (root,) = client.search_runs([exp.experiment_id], "tags.kind = 'pipeline'")
    assert root.info.status == "FAILED" and root.data.tags["status"] == "harness_error"
    assert "upstream exploded" in root.data.tags["error"]
    assert "prompt.md" in {a.path for a in client.list_artifacts(root.info.run_id)}  # logged before the call stays
    (gen,) = _kids(client, root.info.run_id)
    assert gen.info.status == "FAILED" and gen.data.tags["kind"] == "generation"


def test_missing_key_is_named_before_any_run_exists(fake_llm, tracking, llmseg_home, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(UsageError, match="ANTHROPIC_API_KEY"):
        run_generate(GenerateConfig(model="claude-4-sonnet", dataset=DATASET, study="t-api-nokey"))
    assert MlflowClient().get_experiment_by_name("t-api-nokey") is None
    assert fake_llm.requests(ANTHROPIC) == []


def test_chat_log_keeps_the_whole_conversation(fake_llm, tracking, llmseg_home, tmp_path):
    fake_llm.script(OPENAI, reply(as_reply(FILES), tokens_in=100, tokens_out=50))
    result = run_generate(
        GenerateConfig(
            model="gpt-4o",
            dataset=DATASET,
            study="t-api-chat",
            epochs=1,
            max_batches=2,
            preflight=False,
            evaluate=False,
            cache_dir=tmp_path / "cache",
        )
    )
    chat = json.load(open(MlflowClient().download_artifacts(result.run_id, "chat/chat.json", str(tmp_path))))
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert chat[0]["content"] == fake_llm.requests(OPENAI)[0].body["messages"][0]["content"]
