"""The replay provider: recorded replies in order, per-dataset folders, .py-only folders, running out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from llmseg_mlflow.catalog.models import ModelSpec, get_model, load_models
from llmseg_mlflow.llm.base import LLMError, Message, make_provider
from llmseg_mlflow.llm.replay import ReplayProvider

PIPELINE_FILES = {"dataset.py", "model.py", "train.py", "main.py"}
PYTHON_BLOCK = re.compile(r"```python\n(.*?)\n```", re.S)


def provider_for(folder: Path, dataset: str = "bagls") -> ReplayProvider:
    return ReplayProvider(get_model(f"replay:{folder}"), dataset=dataset, repeat=1)


def conversation(assistant_turns: int) -> list[Message]:
    messages = [Message("user", "write the pipeline")]
    for i in range(assistant_turns):
        messages += [Message("assistant", f"reply {i + 1}"), Message("user", f"Traceback {i + 1}")]
    return messages


def test_replies_in_numeric_order_with_reasoning(tmp_path):
    for name in ("1.md", "02.md", "10.md"):  # numbered, not sorted as text
        (tmp_path / name).write_text(f"answer {int(name.split('.')[0])}")
    (tmp_path / "02.reasoning.md").write_text("thinking about reply 2")
    provider = provider_for(tmp_path)
    first = provider.complete(conversation(0))
    second = provider.complete(conversation(1))
    third = provider.complete(conversation(2))
    assert [first.text, second.text, third.text] == ["answer 1", "answer 2", "answer 10"]
    assert first.reasoning is None and second.reasoning == "thinking about reply 2"
    assert second.tokens_reasoning == len("thinking about reply 2") // 4


def test_reply_reports_estimated_tokens_and_no_cost(tmp_path):
    (tmp_path / "01.md").write_text("x" * 400)
    messages = [Message("user", "y" * 80)]
    reply = provider_for(tmp_path).complete(messages)
    assert (reply.tokens_in, reply.tokens_out, reply.cost_usd) == (20, 100, 0.0)
    assert reply.raw["estimated_tokens"] is True
    assert reply.raw["replay_file"].endswith("01.md")
    assert reply.latency_s >= 0.0


def test_dataset_subfolder_is_chosen(tmp_path):
    for dataset in ("bagls", "retina"):
        (tmp_path / dataset).mkdir()
        (tmp_path / dataset / "01.md").write_text(f"pipeline for {dataset}")
    assert provider_for(tmp_path, "retina").complete(conversation(0)).text == "pipeline for retina"
    assert provider_for(tmp_path, "bagls").complete(conversation(0)).text == "pipeline for bagls"


def test_top_level_replies_serve_datasets_without_subfolder(tmp_path):
    (tmp_path / "01.md").write_text("generic pipeline")
    (tmp_path / "retina").mkdir()
    (tmp_path / "retina" / "01.md").write_text("retina pipeline")
    assert provider_for(tmp_path, "bolus").complete(conversation(0)).text == "generic pipeline"


def test_dataset_without_replies_names_the_ones_recorded(tmp_path):
    (tmp_path / "bagls").mkdir()
    (tmp_path / "bagls" / "01.md").write_text("x")
    with pytest.raises(LLMError, match="no replies for dataset 'retina'.*bagls"):
        provider_for(tmp_path, "retina")


def test_py_only_folder_becomes_one_markdown_reply(tmp_path):
    names = ["main.py", "train.py", "model.py", "dataset.py"]
    sources = {name: f"# {name}\nVALUE = {i}\n" for i, name in enumerate(names)}
    sources["utils.py"] = 'DOC = """```not a fence```"""\n'
    for name, code in sources.items():
        (tmp_path / name).write_text(code)
    (tmp_path / "README.txt").write_text("ignored")
    reply = provider_for(tmp_path).complete(conversation(0))
    headings = re.findall(r"^## (\S+\.py)$", reply.text, re.M)
    assert headings == ["dataset.py", "model.py", "train.py", "main.py", "utils.py"]
    # Each file's code sits verbatim in its own fenced python block, even when it contains backticks.
    for name, code in sources.items():
        fence = "````" if "```" in code else "```"
        assert f"## {name}\n\n{fence}python\n{code}{fence}\n" in reply.text
    assert "ignored" not in reply.text


def test_running_out_of_replies_raises(tmp_path):
    (tmp_path / "01.md").write_text("one")
    (tmp_path / "02.md").write_text("two")
    provider = provider_for(tmp_path)
    provider.complete(conversation(1))
    with pytest.raises(LLMError, match=r"has 2 replies; the pipeline asked for reply 3"):
        provider.complete(conversation(2))


def test_missing_folder_raises_llm_error(tmp_path):
    spec = ModelSpec(key="my-chat", title="My chat", provider="replay", replay_dir=tmp_path / "gone")
    with pytest.raises(LLMError, match="no replay folder.*01.md"):
        ReplayProvider(spec, dataset="bagls", repeat=1)


def test_catalog_fixture_through_provider_registry():
    spec = get_model("demo-2024-a")
    provider = make_provider(spec, dataset="synthetic-gray-suffix", repeat=1)
    first = provider.complete(conversation(0))
    fix = provider.complete(conversation(1))
    assert "```python" in first.text and "dataset.py" in fix.text
    with pytest.raises(LLMError):
        provider.complete(conversation(2))


def _python_blocks_by_file(markdown: str) -> dict[str, str]:
    """Map each python block to the last pipeline file named between it and the previous block."""
    files, last_end = {}, 0
    for block in PYTHON_BLOCK.finditer(markdown):
        names = re.findall(r"\b(dataset|model|train|main)\.py\b", markdown[last_end : block.start()])
        assert names, f"python block without a file heading: {block.group(1)[:60]!r}"
        files[f"{names[-1]}.py"] = block.group(1)
        last_end = block.end()
    return files


@pytest.mark.parametrize("key", ["demo-2024-a", "demo-2024-b", "demo-2025-a", "demo-2025-b"])
@pytest.mark.parametrize("dataset", ["synthetic-gray-suffix", "synthetic-rgb-folders"])
def test_demo_fixture_replies_hold_the_four_files(key, dataset):
    folder = load_models()[key].replay_dir / dataset
    replies = sorted(folder.glob("[0-9][0-9].md"))
    first = _python_blocks_by_file(replies[0].read_text())
    assert set(first) == PIPELINE_FILES
    for reply in replies:
        for name, code in _python_blocks_by_file(reply.read_text()).items():
            ast.parse(code, filename=f"{reply}:{name}")  # every recorded file is valid Python
    assert ("Agg" in first["train.py"]) and ("torchinfo" in first["main.py"])
    for excel in ("train_losses.xlsx", "val_losses.xlsx", "validation_dice_scores", "test_dice_scores"):
        assert excel in first["train.py"], (key, dataset, excel)


def test_demo_fixture_fix_replies_resend_only_fixed_files():
    models = load_models()
    second = {
        (key, d.name): set(_python_blocks_by_file((d / "02.md").read_text()))
        for key in ("demo-2024-a", "demo-2025-b")
        for d in sorted(models[key].replay_dir.iterdir())
        if (d / "02.md").is_file()
    }
    assert second == {
        ("demo-2024-a", "synthetic-gray-suffix"): {"dataset.py"},
        ("demo-2024-a", "synthetic-rgb-folders"): {"dataset.py"},
        ("demo-2025-b", "synthetic-rgb-folders"): {"train.py"},
    }
    reasoning = sorted(p.parent.name for p in models["demo-2025-a"].replay_dir.glob("*/01.reasoning.md"))
    assert reasoning == ["synthetic-gray-suffix", "synthetic-rgb-folders"]
