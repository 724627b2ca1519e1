"""`llmseg import-chat`: transcripts pasted from Poe, ChatGPT, Gemini, Copilot and plain logs become replay folders.

The transcripts are written here in each interface's shape (lost fences, button labels, timestamps, model
headers, reasoning, traceback user turns), around code whose recovery is checked byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmseg_mlflow.catalog.models import get_model
from llmseg_mlflow.cli import main
from llmseg_mlflow.errors import UsageError
from llmseg_mlflow.llm.base import Message
from llmseg_mlflow.llm.replay import ReplayProvider
from llmseg_mlflow.pipeline.chat_import import detect_format, import_chat
from llmseg_mlflow.pipeline.extract import extract_files, merge_reply

DATASET = '''import os

from torch.utils.data import Dataset


class SegDataset(Dataset):
    """Images and their masks."""

    def __init__(self, root):
        self.files = sorted(
            f for f in os.listdir(root) if f.endswith(".png")
        )

    def __len__(self):
        return len(self.files)
'''

MODEL = """import torch.nn as nn


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
"""

TRAIN = '''import torch


def train_one_epoch(model, loader, optimizer):
    model.train()
    for images, masks in loader:
        optimizer.zero_grad()
    return 0.0


def validate(model, loader):
    """Mean loss over the loader.

Some models write docstrings flush left."""
    return 0.0
'''

MAIN = """from dataset import SegDataset
from model import UNet
from train import train_one_epoch

BATCH_SIZE = 8
config = dict(
    lr=1e-3,
)

if __name__ == "__main__":
    model = UNet()
    print("ready")
"""

MAIN_FIXED = "import numpy as np\n" + MAIN

TRAIN_FIXED = TRAIN.replace(
    "    return 0.0\n\n\ndef validate", '    print("loss", 0.0)\n    return 0.0\n\n\ndef validate'
)

TRACEBACK = """Traceback (most recent call last):
  File "D:\\\\runs\\\\main.py", line 12, in <module>
    x = np.zeros(3)
NameError: name 'np' is not defined

Process finished with exit code 1"""

PROMPT = """provide a complete ready-to-run Python implementation for a U-Net architecture using PyTorch.
The directory structure should only be:
unet_segmentation/
├── dataset.py
├── model.py
├── train.py
├── main.py
"""


def chatgpt_transcript() -> str:
    def block(code: str) -> str:
        return f"python\nCopy\nEdit\n{code}"

    return (
        f"{PROMPT}\n\nChatGPT said:\n\nThought for 12s\nThe user wants four modules; keep the U-Net small.\nDone\n"
        "Below is a complete implementation. The layout is:\n\ncss\nCopy\nEdit\nunet_segmentation/\n├── dataset.py\n"
        "├── model.py\nEach file is shown in turn.\n\ndataset.py\n"
        f"{block(DATASET)}model.py\n{block(MODEL)}train.py\n{block(TRAIN)}main.py\n{block(MAIN)}"
        "How to run\nbash\nCopy\nEdit\npython main.py \\\n  --data /path\nThat's all.\n\n\n\n"
        f"You said:\n{TRACEBACK}\n\n\nChatGPT said:\n\nThought for 4s\nIt seems numpy is missing. "
        f"Replace your main.py with this corrected version:\n\n{block(MAIN_FIXED)}Key changes:\n\nAdded the import.\n\n"
        "You said:\nThanks! Can you also print the loss in train_one_epoch?\n\n"
        f"ChatGPT said:\nSure, here is train.py:\n\n{block(TRAIN_FIXED)}Let me know how it goes.\n"
    )


def poe_transcript() -> str:
    def block(code: str) -> str:
        return f"python\n\nRun\n\nCopy\n{code}"

    bot = "Claude-3.7-Sonnet-Reasoning"
    return (
        f"{PROMPT}\nView more\n1:29 PM\n\n{bot}\nThinking...\n\n> The user wants four files.\n> Keep the model small.\n\n"
        "Here is the implementation.\n\nDirectory Structure\nmarkdown\n\nCopy\nunet_segmentation/\n├── dataset.py\n"
        f"dataset.py\n{block(DATASET)}model.py\n{block(MODEL)}train.py\n{block(TRAIN)}main.py\n{block(MAIN)}"
        f"Make sure to replace the paths.\n\n1:29 PM\nYesterday\n\n{TRACEBACK}\n\n1:53 AM\n\n{bot}\n\n"
        f"The error is due to a missing import. Here is the corrected main.py:\n\n{block(MAIN_FIXED)}1:53 AM\n"
    )


def gemini_transcript() -> str:
    def section(n: int, name: str, code: str) -> str:
        return f"{n}. {name}\nThis script holds the {name[:-3]} code.\n\nPython\n\n# unet_segmentation/{name}\n\n{code}"

    return (
        f"{PROMPT}\n\n\nShow thinking\n> Planning the modules.\n> Each file gets a path comment.\n\n"
        "Of course. Here is a complete, ready-to-run implementation.\n\n"
        f"{section(1, 'dataset.py', DATASET)}{section(2, 'model.py', MODEL)}"
        f"{section(3, 'train.py', TRAIN)}{section(4, 'main.py', MAIN)}"
        f"You said\n{TRACEBACK}\n\nShow thinking\nYou are right, numpy is not imported.\n\n"
        f"Python\n\n# unet_segmentation/main.py\n\n{MAIN_FIXED}This resolves the NameError.\n"
    )


def copilot_transcript() -> str:
    def fenced(name: str, code: str) -> str:
        return f"#### `{name}`\n```python\n{code}```\n\nCopy\n\n"

    return (
        f"You said\n{PROMPT}\nCopilot said\nReasoned for 9 seconds\n> Four modules, fenced.\n\n"
        "### Code Implementation\n\n"
        f"{fenced('dataset.py', DATASET)}{fenced('model.py', MODEL)}{fenced('train.py', TRAIN)}"
        f"{fenced('main.py', MAIN)}### Directory Structure\n```\nunet_segmentation/\n├── dataset.py\n```\n\n"
        f"You said\n{TRACEBACK}\nCopilot said\nAdd the missing import:\n\n{fenced('main.py', MAIN_FIXED)}"
    )


def plain_transcript() -> str:
    return (
        f"User:\n{PROMPT}\nAssistant:\nThinking...\n> Plain logs quote the reasoning.\n\n"
        f"Here are the files.\n\n# dataset.py\n{DATASET}\n# model.py\n{MODEL}\n# train.py\n{TRAIN}\n# main.py\n{MAIN}\n"
        f"Run main.py to train.\n\nUser:\n{TRACEBACK}\n\nAssistant:\nHere is main.py again:\n\n# main.py\n{MAIN_FIXED}"
    )


FOUR = {"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN, "main.py": MAIN}


def _imported(tmp_path: Path, text: str, fmt: str):
    """The transcript written to chat.txt, recognised as fmt and imported into tmp_path/out."""
    source = tmp_path / "chat.txt"
    source.write_text(text, encoding="utf-8")
    assert detect_format(text) == fmt
    return import_chat(source, tmp_path / "out", "auto")


def _comment(name: str, code: str) -> str:
    return f"# unet_segmentation/{name}\n\n{code}"


CASES = {
    "chatgpt": (
        chatgpt_transcript,
        [
            {"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN, "main.py": MAIN},
            {"main.py": MAIN_FIXED},
            {"train.py": TRAIN_FIXED},
        ],
        ["prompt", "traceback", "other"],
    ),
    "poe": (
        poe_transcript,
        [{"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN, "main.py": MAIN}, {"main.py": MAIN_FIXED}],
        ["prompt", "traceback"],
    ),
    "gemini": (
        gemini_transcript,
        [
            {n: _comment(n, c) for n, c in {"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN}.items()}
            | {"main.py": _comment("main.py", MAIN)},
            {"main.py": _comment("main.py", MAIN_FIXED)},
        ],
        ["prompt", "traceback"],
    ),
    "copilot": (
        copilot_transcript,
        [{"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN, "main.py": MAIN}, {"main.py": MAIN_FIXED}],
        ["prompt", "traceback"],
    ),
    "plain": (
        plain_transcript,
        [
            {f"{n}": f"# {n}\n{c}" for n, c in {"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN}.items()}
            | {"main.py": f"# main.py\n{MAIN}"},
            {"main.py": f"# main.py\n{MAIN_FIXED}"},
        ],
        ["prompt", "traceback"],
    ),
}


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_each_format_recovers_the_files_written(tmp_path: Path, fmt: str):
    make, expected, kinds = CASES[fmt]
    source = tmp_path / "chat.txt"
    source.write_text(make(), encoding="utf-8")
    assert detect_format(make()) == fmt
    out = tmp_path / "replay"
    result = import_chat(source, out, "auto")
    assert result.format == fmt and len(result.replies) == len(expected)

    # The replay reads exactly what import.json promises, through the pipeline's own extractor.
    provider = ReplayProvider(get_model(f"replay:{out}"), dataset="bagls", repeat=1)
    messages = [Message("user", "prompt")]
    current: dict[str, str] = {}
    for k, files in enumerate(expected):
        reply = provider.complete(messages)
        current = extract_files(reply.text) if k == 0 else merge_reply(current, reply.text)
        assert {n: current[n] for n in files} == files
        messages += [Message("assistant", reply.text), Message("user", "error")]
        if k == 0:
            assert reply.reasoning and "Thinking" not in reply.reasoning and ">" not in reply.reasoning

    manifest = json.loads((out / "import.json").read_text())
    assert manifest["format"] == fmt and manifest["source"] == str(source)
    records = manifest["replies"]
    assert [r["files"] for r in records] == [sorted(f) for f in expected]
    assert [r["user_turn"]["kind"] for r in records] == kinds
    assert records[0]["reasoning_file"] == "01.reasoning.md" and (out / "01.reasoning.md").is_file()
    assert records[0]["missing_after"] == [] and records[0]["guessed_by_content"] == []
    traceback = records[1]["user_turn"]
    assert traceback["error"] == "NameError: name 'np' is not defined"
    assert "Traceback (most recent call last)" in (out / traceback["file"]).read_text()
    assert "PyTorch" in (out / "01.user.md").read_text()
    text = (out / "01.md").read_text()
    for noise in ("\nCopy\n", "\nRun\n", "\nEdit\n", "Show thinking", "ChatGPT said:", "1:29 PM"):
        assert noise not in text


def test_chatgpt_keeps_non_python_blocks_and_names_how(tmp_path: Path):
    source = tmp_path / "chat.txt"
    source.write_text(chatgpt_transcript(), encoding="utf-8")
    records = import_chat(source, tmp_path / "out", "chatgpt").replies
    assert {b["language"] for b in records[0]["other_blocks"]} == {"css", "bash"}
    assert set(records[0]["named_by"].values()) == {"heading"}
    assert records[2]["user_turn"]["error"] is None
    assert "```css\nunet_segmentation/\n├── dataset.py\n├── model.py\n```" in (tmp_path / "out" / "01.md").read_text()
    # A collapsed "Thought for 4s" has no reasoning to keep: the header goes, and import.json says so.
    assert "Thought for" not in (tmp_path / "out" / "02.md").read_text()
    assert records[1]["notes"] == [
        "line 114: reasoning header 'Thought for 4s' dropped; no quoted or closed reasoning after it"
    ]


def test_no_code_is_a_usage_error(tmp_path: Path):
    source = tmp_path / "chat.txt"
    source.write_text(f"{PROMPT}\nChatGPT said:\nI cannot help with that.\n", encoding="utf-8")
    with pytest.raises(UsageError, match="none of the 1 assistant replies holds Python code"):
        import_chat(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    source.write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no assistant replies"):
        import_chat(source, tmp_path / "out")


def test_unnamed_code_stops_the_import_at_that_reply(tmp_path: Path):
    good = chatgpt_transcript().split("\n\n\n\nYou said:")[0]
    lines_before = good.count("\n") + 1
    unnamed = "python\nCopy\nEdit\nx = compute()\nprint(x)\nThat should do it.\n"
    source = tmp_path / "chat.txt"
    source.write_text(f"{good}\nYou said:\n{TRACEBACK}\nChatGPT said:\nTry this:\n{unnamed}", encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        import_chat(source, tmp_path / "out")
    message = str(caught.value)
    start = lines_before + 1 + TRACEBACK.count("\n") + 1 + 2 + 3 + 1  # the x = compute() line
    assert message.startswith("reply 2 ") and f"lines {start}-{start + 1}" in message
    assert not (tmp_path / "out").exists()

    # --partial: the replies before it are written, and the error the person pasted is the trailing turn
    result = import_chat(source, tmp_path / "out", partial=True)
    assert len(result.replies) == 1 and result.stopped_at["reply"] == 2 and result.stopped_at["reason"] == message
    assert not (tmp_path / "out" / "02.md").exists() and (tmp_path / "out" / "trailing.user.md").is_file()
    assert result.trailing_user_turn["error"] == "NameError: name 'np' is not defined"
    assert json.loads((tmp_path / "out" / "import.json").read_text())["stopped_at"]["reply"] == 2


def test_one_block_holding_two_files_is_not_guessed(tmp_path: Path):
    both = f"python\nCopy\nEdit\n{DATASET}\n\n{MODEL}Done.\n"
    source = tmp_path / "chat.txt"
    source.write_text(f"{PROMPT}\nChatGPT said:\nHere you go:\n{both}", encoding="utf-8")
    with pytest.raises(UsageError, match="one unnamed block holding dataset and model code"):
        import_chat(source, tmp_path / "out")


def test_out_folder_must_be_new_or_empty(tmp_path: Path):
    source = tmp_path / "chat.txt"
    source.write_text(poe_transcript(), encoding="utf-8")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "01.md").write_text("old")
    with pytest.raises(UsageError, match="not an empty folder"):
        import_chat(source, tmp_path / "out")


def test_cli_end_to_end(tmp_path: Path):
    source = tmp_path / "poe chat.txt"
    source.write_text(poe_transcript(), encoding="utf-8")
    out = tmp_path / "replay"
    result = CliRunner().invoke(main, ["import-chat", str(source), "--out", str(out), "--format", "poe"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary == {"folder": str(out), "format": "poe", "replies": 2, "stopped_at": None}
    assert "02.md: main.py (after traceback)" in result.output
    assert get_model(f"replay:{out}").provider == "replay"

    empty = tmp_path / "empty.txt"
    empty.write_text(f"{PROMPT}\nChatGPT said:\nNo code today.\n", encoding="utf-8")
    failed = CliRunner().invoke(main, ["import-chat", str(empty), "--out", str(tmp_path / "x")])
    assert failed.exit_code == 2 and "holds Python code" in failed.output


def test_poe_page_header_is_dropped_and_the_prompt_is_the_first_user_turn(tmp_path: Path):
    bot = "Claude-3.7-Sonnet-Reasoning"
    header = f"\n{bot}\nBy\n\n@anthropic\n681 followers\n·\n907+ points\nHistory\n\nRates\n\nShare app\n"
    header += "Anthropic's hybrid reasoning model.\nView more\nOFFICIAL\nThursday\n\n"
    source = tmp_path / "chat.txt"
    source.write_text(header + poe_transcript(), encoding="utf-8")
    result = import_chat(source, tmp_path / "out", "auto")
    assert result.format == "poe" and len(result.replies) == 2
    assert [r["user_turn"]["kind"] for r in result.replies] == ["prompt", "traceback"]
    prompt = (tmp_path / "out" / "01.user.md").read_text()
    assert "PyTorch" in prompt and "@anthropic" not in prompt and "followers" not in prompt
    assert "@anthropic" not in (tmp_path / "out" / "01.md").read_text()


def test_an_older_poe_page_marks_only_the_bot_and_the_pasted_run_opens_the_users_turn(tmp_path: Path):
    bot = "Llama-3.1-405B"
    header = "The pinnacle of Meta's Llama 3.1 family.\n\n350per message\n·\nView details\nOFFICIAL\n"
    first = "\n".join(f"{name}\n\n{code}" for name, code in (("dataset.py", DATASET), ("model.py", MODEL)))
    first += "\n" + "\n".join(f"{name}\n\n{code}" for name, code in (("train.py", TRAIN), ("main.py", MAIN)))
    run = (
        'C:\\Users\\me\\envs\\seg\\python.exe "D:/seg/main.py"\n'
        + TRACEBACK
        + "\n\nProcess finished with exit code 1\n"
    )
    text = (
        f"{header}{PROMPT}\n\n{bot}\n\nPoe\nBelow is the implementation.\n\n{first}\nThat is all.\n\n{run}\n\n"
        f"{bot}\n\nPoe\nThe error means numpy was not imported. Here is main.py:\n\nmain.py\n\n{MAIN_FIXED}\n"
    )
    source = tmp_path / "chat.txt"
    source.write_text(text, encoding="utf-8")
    assert detect_format(text) == "poe"
    result = import_chat(source, tmp_path / "out", "auto")
    assert [r["files"] for r in result.replies] == [
        sorted(["dataset.py", "model.py", "train.py", "main.py"]),
        ["main.py"],
    ]
    assert [r["user_turn"]["kind"] for r in result.replies] == ["prompt", "traceback"]
    assert result.replies[1]["user_turn"]["error"] == "NameError: name 'np' is not defined"
    prompt = (tmp_path / "out" / "01.user.md").read_text()
    assert "PyTorch" in prompt and "per message" not in prompt
    assert "python.exe" not in (tmp_path / "out" / "01.md").read_text()


def test_a_claude_page_ends_the_prompt_at_its_edit_button(tmp_path: Path):
    files = FOUR
    reply = "\n".join(f"{name}:\n\n{code}" for name, code in files.items())
    text = f"{PROMPT}\nEdit\nI'll create a complete U-Net implementation.\n\n{reply}\nRetry\n"
    source = tmp_path / "chat.txt"
    source.write_text(text, encoding="utf-8")
    assert detect_format(text) == "claude"
    result = import_chat(source, tmp_path / "out", "auto")
    assert [r["files"] for r in result.replies] == [sorted(files)]
    assert "PyTorch" in (tmp_path / "out" / "01.user.md").read_text()


def test_a_signature_quoted_in_prose_is_a_fragment_not_unplaced_code(tmp_path: Path):
    quoted = "Here is the implementation.\n\npython\n\nRun\n\nCopy\ndef forward(self, x):\nThat is the signature.\n"
    text = poe_transcript().replace("Here is the implementation.\n", quoted, 1)
    source = tmp_path / "chat.txt"
    source.write_text(text, encoding="utf-8")
    record = import_chat(source, tmp_path / "out", "poe").replies[0]
    assert record["files"] == sorted(["dataset.py", "model.py", "train.py", "main.py"])
    assert "fragment" in [b["language"] for b in record["other_blocks"]]


def test_a_copy_without_any_turn_markers_ends_the_prompt_at_its_directory_tree(tmp_path: Path):
    # DeepSeek's web page: the prompt, then its reasoning and answer with no marker between; fences lost.
    def block(n: int, name: str, code: str) -> str:
        return f"{n}. {name}\npython\n{code}"

    reasoning = "We are going to create 4 files: dataset.py, model.py, train.py, main.py\n\nmask = (mask > 0).float()\n"
    main_py = MAIN.replace("    model = UNet()", "    # Model\n    model = UNet()")  # a comment, not a turn marker
    files = {"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN, "main.py": main_py}
    answer = "".join(block(i + 1, n, c) for i, (n, c) in enumerate(files.items()))
    text = (
        f"\t{PROMPT}{reasoning}\nHere's the complete implementation:\n\n{answer}Run main.py.\n"
        f"{TRACEBACK}\nThe import is missing; here is main.py:\n\npython\n{MAIN_FIXED}"
    )
    result = _imported(tmp_path, text, "plain")
    assert [r["files"] for r in result.replies] == [sorted(files), ["main.py"]]
    assert [r["user_turn"]["kind"] for r in result.replies] == ["prompt", "traceback"]
    assert result.replies[1]["user_turn"]["error"] == "NameError: name 'np' is not defined"
    assert merge_reply({}, (tmp_path / "out" / "01.md").read_text())["main.py"].strip() == main_py.strip()
    prompt = (tmp_path / "out" / "01.user.md").read_text()
    assert prompt.rstrip().endswith("├── main.py") and "We are going" not in prompt
    assert "exit code 1" in (tmp_path / "out" / "02.user.md").read_text()
    assert "exit code" not in (tmp_path / "out" / "02.md").read_text()
    assert merge_reply({}, (tmp_path / "out" / "02.md").read_text())["main.py"].strip() == MAIN_FIXED.strip()

    source = tmp_path / "chat.txt"
    source.write_text(text.replace("├── main.py", "and a main script"), encoding="utf-8")
    with pytest.raises(UsageError, match="no assistant replies found"):  # no tree: no guess where the prompt ends
        import_chat(source, tmp_path / "out2", "auto")


def test_bings_bare_you_and_copilot_lines_are_its_turn_markers(tmp_path: Path):
    files = FOUR
    answer = "".join(f"{name}\n```python\n{code}```\n\nCopy\n\n" for name, code in files.items())
    text = (
        f"Microsoft Copilot\nCopilot\nWhat's on your mind?\n\nYou\n{PROMPT}\nCopilot\nHere it is:\n\n{answer}"
        f"You\n{TRACEBACK}\nCopilot\nAdd the import:\n\nmain.py\n```python\n{MAIN_FIXED}```\n"
    )
    result = _imported(tmp_path, text, "copilot")
    # The greeting before the prompt is a reply without code; the prompt and the traceback stay the person's.
    assert [r["files"] for r in result.replies] == [[], sorted(files), ["main.py"]]
    assert [r["user_turn"]["kind"] for r in result.replies][1:] == ["other", "traceback"]
    assert "PyTorch" in (tmp_path / "out" / "02.user.md").read_text()


def test_github_copilot_marks_only_its_later_replies_and_the_ide_exit_line_closes_each_paste(tmp_path: Path):
    # The first answer follows the prompt unmarked; each paste lost its line breaks and may start mid-output.
    files = FOUR
    answer = "".join(f"#### `{name}`\n```python\n{code}```\n\n" for name, code in files.items())
    flat = " ".join(line.strip() for line in TRACEBACK.splitlines()[:-2])
    mid = 'Testing: 100%| 4/4 File "D:\\\\seg\\\\train.py", line 3, in f x.numpy() RuntimeError: call detach() first'
    text = (
        f"{PROMPT}\nHere is the implementation:\n\n{answer}That is all.\n{flat}\n\nProcess finished with exit code 1\n"
        f"GitHub Copilot\nAdd the import:\n\n#### `main.py`\n```python\n{MAIN_FIXED}```\n\n{mid}\n\n"
        f"Process finished with exit code 1\nGitHub Copilot\nDetach first:\n\n#### `train.py`\n```python\n{TRAIN_FIXED}```\n"
    )
    result = _imported(tmp_path, text, "copilot")
    assert [r["files"] for r in result.replies] == [sorted(files), ["main.py"], ["train.py"]]
    assert [r["user_turn"].get("error") for r in result.replies] == [
        None,
        "NameError: name 'np' is not defined",
        "RuntimeError: call detach() first",
    ]
    assert "exit code" not in (tmp_path / "out" / "01.md").read_text()
    assert "Testing: 100%" in (tmp_path / "out" / "03.user.md").read_text()


def test_qwens_page_opens_replies_with_profile_and_its_code_carries_a_line_number_gutter(tmp_path: Path):
    def block(code: str) -> str:
        gutter = "\n".join(str(n + 1) for n in range(len(code.splitlines())))
        return f"python\n\n\n{gutter}\n⌄\n{code}"

    files = FOUR
    answer = "".join(f"✅ {n + 1}. {name}\n{block(code)}" for n, (name, code) in enumerate(files.items()))
    text = (
        f"{PROMPT}\nprofile\nQwen3-235B-A22B\nBelow is the implementation.\n\n{answer}Happy coding!\n\n"
        f"{TRACEBACK}\n\nprofile\nQwen3-235B-A22B\nThe fix, in main.py:\n{block(MAIN_FIXED)}"
    )
    result = _imported(tmp_path, text, "qwen")
    assert [r["files"] for r in result.replies] == [sorted(files), ["main.py"]]
    assert [r["user_turn"]["kind"] for r in result.replies] == ["prompt", "traceback"]
    current = merge_reply({}, (tmp_path / "out" / "01.md").read_text())
    assert current == files  # no gutter number or fold marker left in the code
    assert merge_reply(current, (tmp_path / "out" / "02.md").read_text())["main.py"] == MAIN_FIXED


def test_an_older_poe_pages_bot_messages_stay_apart_and_sketches_and_alternatives_are_listed(tmp_path: Path):
    # Gemini 1.5 Pro's page: the bot asks for the shapes with a `# ...` sketch, the person pastes printed shapes
    # (no traceback, so nothing marks their turn), and the next bot message is a reply of its own
    bot = "Gemini-1.5-Pro"
    first = "\n".join(f"{name}\n\n{code}" for name, code in FOUR.items())
    sketch = "def forward(self, x):\n    # ...\n    print('x shape:', x.shape)\n    # ...\n"
    alternative = "model = UNet()\nmodel.half()\n"
    text = (
        f"{PROMPT}\n\n{bot}\n\nPoe\nBelow is the implementation.\n\n{first}\n\n{TRACEBACK}\n\n"
        f"{bot}\n\nPoe\nPrint the shapes in forward:\n\npython\n\nCopy\n{sketch}Then send me the output.\n\n"
        "x shape: torch.Size([2, 1, 64, 64])\n\n"
        f"{bot}\n\nPoe\nnumpy is missing. Here is main.py:\n\nmain.py\n\n{MAIN_FIXED}\n"
        f"Alternatively, build the model in half precision:\n\npython\n\nCopy\n{alternative}\n"
    )
    source = tmp_path / "chat.txt"
    source.write_text(text, encoding="utf-8")
    result = import_chat(source, tmp_path / "out", "poe")
    assert [r["files"] for r in result.replies] == [sorted(FOUR), [], ["main.py"]]
    assert [(r["user_turn"] or {}).get("kind") for r in result.replies] == ["prompt", "traceback", None]
    assert [b["language"] for b in result.replies[1]["other_blocks"]] == ["sketch"]
    assert [b["language"] for b in result.replies[2]["other_blocks"]] == ["alternative"]
    assert "x shape: torch.Size" in (tmp_path / "out" / "02.md").read_text()  # the person's paste stays in it
    files = merge_reply(FOUR, (tmp_path / "out" / "03.md").read_text())
    assert files["main.py"] == MAIN_FIXED  # what the replay applies: the file, not the alternative


def test_an_older_poe_paste_that_starts_mid_traceback_is_found_from_its_exit_line(tmp_path: Path):
    # Llama 3.1 405B's page: the person copied from a `File "..."` line, so no command line or Traceback opens it
    bot = "Llama-3.1-405B"
    first = "\n".join(f"{name}\n\n{code}" for name, code in FOUR.items())
    paste = TRACEBACK.split("\n", 1)[1]  # from its first File line to the exit line
    text = (
        f"{PROMPT}\n\n{bot}\n\nPoe\nBelow is the implementation.\n\n{first}\nThat is all.\n\n{paste}\n\n\n"
        f"{bot}\n\nPoe\nnumpy is missing. Here is main.py:\n\nmain.py\n\n{MAIN_FIXED}\n"
    )
    source = tmp_path / "chat.txt"
    source.write_text(text, encoding="utf-8")
    result = import_chat(source, tmp_path / "out", "poe")
    assert result.replies[1]["user_turn"]["error"] == "NameError: name 'np' is not defined"
    assert 'File "D:' not in (tmp_path / "out" / "01.md").read_text()
