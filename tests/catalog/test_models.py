"""The model catalog: the paper's 19 models and cohorts, demo fixtures, user YAML, replay:DIR, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llmseg_mlflow.catalog.models import (
    ModelSpec,
    UnknownModelError,
    get_model,
    load_models,
)

# (year, reasoning) exactly as the paper classifies the models (Sections 3.1 and 3.8).
PAPER = {
    "gpt-4": (2024, False),
    "gpt-4o": (2024, False),
    "gpt-o1-preview": (2024, True),
    "claude-3.5-sonnet": (2024, False),
    "gemini-1.5-pro": (2024, False),
    "github-copilot": (2024, False),
    "bing-copilot": (2024, False),
    "llama-3.1-405b": (2024, False),
    "claude-4-sonnet": (2025, True),
    "deepseek-r1": (2025, True),
    "deepseek-v3": (2025, False),
    "gpt-o3": (2025, True),
    "gpt-o4-mini-high": (2025, True),
    "gemini-2.5-pro": (2025, True),
    "grok-3-mini": (2025, True),
    "grok-3": (2025, False),
    "llama-4-maverick": (2025, True),
    "mistral-medium-3": (2025, True),
    "qwen3-235b": (2025, True),
}
DEMO_DATASETS = ("synthetic-gray-suffix", "synthetic-rgb-folders")


@pytest.fixture(autouse=True)
def _no_user_models_file(monkeypatch):
    monkeypatch.delenv("LLMSEG_MODELS_FILE", raising=False)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_all_paper_models_with_the_papers_cohorts():
    models = load_models()
    paper = {k: m for k, m in models.items() if not m.fixture}
    assert set(paper) == set(PAPER)
    assert {k: (m.year, m.reasoning) for k, m in paper.items()} == PAPER
    assert sum(m.reasoning for m in paper.values()) == 10
    assert sum(not m.reasoning for m in paper.values()) == 9
    assert sum(m.year == 2024 for m in paper.values()) == 8
    assert sum(m.year == 2025 for m in paper.values()) == 11


def test_api_models_say_how_to_reach_them():
    models = load_models()
    assert models["gpt-o4-mini-high"].api_model == "o4-mini"
    assert models["gpt-o4-mini-high"].settings["reasoning_effort"] == "high"
    assert models["claude-4-sonnet"].api_model == "claude-sonnet-4-20250514"
    assert models["claude-4-sonnet"].settings["thinking_budget"] < models["claude-4-sonnet"].settings["max_tokens"]
    assert models["deepseek-r1"].api_model == "deepseek-reasoner"
    for spec in models.values():
        if spec.provider in ("openai", "anthropic", "openai-compatible"):
            assert spec.api_model and spec.api_key_env, spec.key
            assert spec.price_in_per_mtok is not None and spec.price_out_per_mtok is not None, spec.key
        if spec.provider == "openai-compatible":
            assert spec.base_url, spec.key
        if spec.provider in ("openai", "anthropic") or (spec.reasoning and spec.provider != "replay"):
            # o-series and Claude thinking refuse a temperature; reasoning budgets must be generous
            assert spec.settings.get("max_tokens", 0) >= 4096, spec.key
    for key in ("gpt-o1-preview", "gpt-o3", "gpt-o4-mini-high", "claude-4-sonnet"):
        assert "temperature" not in models[key].settings, key


def test_chat_only_models_point_to_replay():
    models = load_models()
    for key in ("github-copilot", "bing-copilot"):
        assert models[key].provider == "none"
        assert "replay:DIR" in models[key].notes or "replay:" in models[key].notes


def test_demo_fixtures_cover_both_cohorts_and_both_datasets():
    fixtures = [m for m in load_models().values() if m.fixture]
    assert sorted(m.key for m in fixtures) == ["demo-2024-a", "demo-2024-b", "demo-2025-a", "demo-2025-b"]
    assert sorted((m.year, m.reasoning) for m in fixtures) == [(2024, False)] * 2 + [(2025, True)] * 2
    for spec in fixtures:
        assert spec.provider == "replay" and spec.title.startswith("Demo fixture")
        assert spec.replay_dir is not None and spec.replay_dir.is_absolute()
        for dataset in DEMO_DATASETS:
            assert (spec.replay_dir / dataset / "01.md").is_file(), (spec.key, dataset)


def test_cost_from_list_prices_and_zero_when_unknown():
    spec = load_models()["gpt-4o"]
    assert spec.cost_usd(1_000_000, 0) == pytest.approx(spec.price_in_per_mtok)
    assert spec.cost_usd(2000, 1000) == pytest.approx((2000 * 2.5 + 1000 * 10.0) / 1e6)
    assert load_models()["github-copilot"].cost_usd(5000, 5000) == 0.0


def test_unknown_model_lists_names_replay_and_how_to_add():
    with pytest.raises(UnknownModelError) as err:
        get_model("gpt-5-turbo-ultra")
    message = str(err.value)
    assert "gpt-o4-mini-high" in message and "claude-4-sonnet" in message
    assert "replay:DIR" in message and "LLMSEG_MODELS_FILE" in message
    assert isinstance(err.value, LookupError)


def test_unknown_model_suggests_close_name():
    with pytest.raises(UnknownModelError, match="Did you mean: .*claude-4-sonnet"):
        get_model("claude-4-sonet")


def test_user_yaml_adds_and_overrides(tmp_path):
    user = write_yaml(
        tmp_path / "mine.yaml",
        """
models:
  - key: my-local-coder
    title: My local coder
    provider: openai-compatible
    api_model: qwen2.5-coder:7b
    base_url: http://127.0.0.1:11434/v1
    api_key_env: OLLAMA_KEY
    year: 2025
    reasoning: false
  - key: gpt-o1-preview
    api_model: o1
""",
    )
    models = load_models(user)
    mine = models["my-local-coder"]
    assert (mine.provider, mine.api_model, mine.base_url, mine.year, mine.reasoning) == (
        "openai-compatible",
        "qwen2.5-coder:7b",
        "http://127.0.0.1:11434/v1",
        2025,
        False,
    )
    assert mine.cost_usd(1000, 1000) == 0.0
    o1 = models["gpt-o1-preview"]
    assert o1.api_model == "o1"
    assert (o1.year, o1.reasoning, o1.title) == (2024, True, "GPT o1-Preview")  # untouched fields stay
    assert len(models) == len(load_models()) + 1


def test_user_yaml_from_environment(tmp_path, monkeypatch):
    user = write_yaml(tmp_path / "env.yaml", "models:\n  - {key: gpt-4o, api_model: gpt-4o-2024-08-06}\n")
    monkeypatch.setenv("LLMSEG_MODELS_FILE", str(user))
    assert get_model("gpt-4o").api_model == "gpt-4o-2024-08-06"


def test_user_replay_dir_is_relative_to_its_yaml(tmp_path):
    (tmp_path / "chats" / "copilot").mkdir(parents=True)
    (tmp_path / "chats" / "copilot" / "01.md").write_text("reply")
    user = write_yaml(
        tmp_path / "m.yaml", "models:\n  - {key: github-copilot, provider: replay, replay_dir: chats/copilot}\n"
    )
    spec = get_model("github-copilot", user)
    assert spec.provider == "replay" and spec.replay_dir == tmp_path / "chats" / "copilot"
    assert (spec.year, spec.reasoning) == (2024, False)


@pytest.mark.parametrize(
    "entry, problem",
    [
        ("{key: x1, provider: openai, api_model: m, year: twenty}", "year: expected a whole number, got 'twenty'"),
        ("{key: x2, provider: openai, api_model: m, reasoning: maybe}", "reasoning: expected true or false"),
        (
            "{key: x3, provider: openai, api_model: m, reasonning: true}",
            "reasonning: unknown field (did you mean reasoning?); allowed: key, title,",
        ),
        ("{key: x4, provider: openai}", "api_model: missing, required for provider 'openai'"),
        ("{key: x5, provider: openai-compatible, api_model: m}", "base_url: missing, required for provider"),
        (
            "{key: x6, provider: openai, api_model: m, price_in_per_mtok: -1}",
            "price_in_per_mtok: expected a number >= 0",
        ),
        ("{key: x7, provider: replay}", "replay_dir: missing, required for provider 'replay'"),
        ("{key: x8, provider: openai, api_model: m, api_key_env: 'my key'}", "api_key_env: expected the name of an"),
        ("{key: x9, provider: openai, api_model: m, settings: [1, 2]}", "settings: expected a mapping, got [1, 2]"),
        ("{key: x10, provider: openai, api_model: m, year: 1850}", "year: expected a number >= 1990, got 1850"),
        ("{key: x11, provider: openai, api_model: m, title: [a]}", "title: expected text, got ['a']"),
        ("{key: x12, provider: openai, api_model: m, fixture: 1}", "fixture: expected true or false, got 1"),
        (
            "{key: x13, provider: openai-compatible, api_model: m, base_url: host:80}",
            "base_url: expected an http(s) URL",
        ),
        ("{key: x14, api_model: m}", "provider: missing (required)"),
    ],
)
def test_bad_user_yaml_names_file_entry_field_and_value(tmp_path, entry, problem):
    user = write_yaml(tmp_path / "bad.yaml", f"models:\n  - {entry}\n")
    with pytest.raises(ValueError) as err:
        load_models(user)
    key = entry.split(",")[0].split(":")[1].strip()
    assert f"bad.yaml: model entry {key!r} has 1 problem(s):\n  {problem}" in str(err.value)


def test_every_problem_of_an_entry_at_once(tmp_path):
    user = write_yaml(tmp_path / "bad.yaml", "models:\n  - {key: x, provider: openai, year: '2025', reasoning: 1}\n")
    with pytest.raises(ValueError) as err:
        load_models(user)
    assert str(err.value).endswith(
        "model entry 'x' has 3 problem(s):\n"
        "  api_model: missing, required for provider 'openai'\n"
        "  year: expected a whole number, got '2025'\n"
        "  reasoning: expected true or false, got 1"
    )


@pytest.mark.parametrize("entry", ["{key: 'my model', provider: openai}", "{provider: openai}", "{key: 'replay:x'}"])
def test_bad_key_names_the_entry_by_number(tmp_path, entry):
    user = write_yaml(tmp_path / "bad.yaml", f"models:\n  - {{key: ok, provider: none}}\n  - {entry}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: model entry #2: key: expected a name like 'my-model'"):
        load_models(user)


def test_text_fields_stripped_numbers_as_text_title_defaults_to_key(tmp_path):
    user = write_yaml(
        tmp_path / "m.yaml",
        "models:\n  - {key: m1, provider: ' openai ', api_model: 4, parameters: 405, notes: '  n  ', settings: null}\n",
    )
    spec = load_models(user)["m1"]
    assert (spec.title, spec.provider, spec.api_model, spec.parameters, spec.notes) == ("m1", "openai", "4", "405", "n")
    assert spec.settings == {} and spec.price_in_per_mtok is None and spec.fixture is False


def test_override_keeps_the_builtin_replay_dir_and_a_new_one_is_relative_to_its_yaml(tmp_path):
    builtin = load_models()["demo-2024-a"].replay_dir
    user = write_yaml(
        tmp_path / "m.yaml",
        "models:\n  - {key: demo-2024-a, title: Mine}\n  - {key: mine, provider: replay, replay_dir: ../chats}\n",
    )
    models = load_models(user)
    assert (models["demo-2024-a"].title, models["demo-2024-a"].replay_dir) == ("Mine", builtin)
    assert models["mine"].replay_dir == tmp_path / ".." / "chats"


def test_user_base_url_from_environment(tmp_path, monkeypatch):
    user = write_yaml(
        tmp_path / "m.yaml",
        "models:\n  - {key: mine, provider: openai-compatible, api_model: m, base_url: '${MY_LLM_URL}'}\n",
    )
    monkeypatch.delenv("MY_LLM_URL", raising=False)
    with pytest.raises(ValueError, match="export MY_LLM_URL=https://"):
        load_models(user)["mine"].endpoint()
    monkeypatch.setenv("MY_LLM_URL", "http://10.0.0.1:8000/v1")
    assert load_models(user)["mine"].endpoint() == "http://10.0.0.1:8000/v1"


def test_spec_is_frozen_and_built_in_code_like_a_catalog_entry():
    spec = ModelSpec(key="replay:my chat", provider="replay", replay_dir="/tmp/my chat")
    assert (spec.title, spec.replay_dir, spec.settings) == ("replay:my chat", Path("/tmp/my chat"), {})
    with pytest.raises(ValidationError):
        spec.year = 2025  # type: ignore[misc]
    with pytest.raises(ValueError, match="api_model: missing"):
        ModelSpec(key="k", provider="anthropic")


def test_bad_user_yaml_shape(tmp_path):
    with pytest.raises(ValueError, match="models:"):
        load_models(write_yaml(tmp_path / "a.yaml", "- key: x\n"))
    with pytest.raises(ValueError, match="not valid YAML"):
        load_models(write_yaml(tmp_path / "b.yaml", "models: [\n"))
    with pytest.raises(ValueError, match="repeats"):
        load_models(write_yaml(tmp_path / "c.yaml", "models:\n  - {key: gpt-4o}\n  - {key: gpt-4o}\n"))
    with pytest.raises(ValueError, match="does not exist"):
        load_models(tmp_path / "missing.yaml")


def test_base_url_from_environment(monkeypatch):
    monkeypatch.delenv("LLAMA_BASE_URL", raising=False)
    spec = get_model("llama-4-maverick")
    with pytest.raises(ValueError, match="LLAMA_BASE_URL"):
        spec.endpoint()
    monkeypatch.setenv("LLAMA_BASE_URL", "https://llama.example/v1")
    assert get_model("llama-4-maverick").endpoint() == "https://llama.example/v1"
    assert get_model("deepseek-r1").endpoint() == "https://api.deepseek.com"


def test_replay_dir_model(tmp_path):
    folder = tmp_path / "my-chat"
    folder.mkdir()
    (folder / "01.md").write_text("```python\nprint(1)\n```\n")
    spec = get_model(f"replay:{folder}")
    assert isinstance(spec, ModelSpec)
    assert (spec.key, spec.provider, spec.replay_dir) == ("replay:my-chat", "replay", folder.resolve())
    assert spec.year is None and spec.reasoning is None


def test_replay_dir_with_dataset_subfolders_only(tmp_path):
    (tmp_path / "chat" / "bagls").mkdir(parents=True)
    (tmp_path / "chat" / "bagls" / "main.py").write_text("print(1)\n")
    assert get_model(f"replay:{tmp_path / 'chat'}").replay_dir == (tmp_path / "chat").resolve()


def test_replay_dir_missing_or_empty(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*01.md"):
        get_model(f"replay:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a reply")
    with pytest.raises(ValueError, match="holds no replies.*01.md.*dataset.py"):
        get_model(f"replay:{tmp_path / 'empty'}")
    with pytest.raises(ValueError, match="needs a folder"):
        get_model("replay:")
