"""Extracting the pipeline's files from LLM replies written the way real models write them."""

from __future__ import annotations

import pytest

from llmseg_mlflow.pipeline.extract import CODE_FILES, NoCodeError, extract_files, find_blocks, merge_reply

DATASET = """import os
from PIL import Image
from torch.utils.data import Dataset


class SegmentationDataset(Dataset):
    def __init__(self, root, transform=None):
        self.files = sorted(f for f in os.listdir(root) if f.endswith(".png") and "_seg" not in f)

    def __len__(self):
        return len(self.files)
"""
MODEL = """import torch
import torch.nn as nn


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1):
        super().__init__()
        self.inc = DoubleConv(in_channels, 64)
"""
TRAIN = """import pandas as pd
from tqdm import tqdm


def train_one_epoch(model, loader, optimizer, criterion, device):
    model.train()
    for images, masks in tqdm(loader, desc="Train"):
        optimizer.zero_grad()
    return 0.0


def validate(model, loader, criterion, device):
    for images, masks in tqdm(loader, desc="Validation"):
        pass
"""
MAIN = """import torch
from torch.utils.data import DataLoader, Subset
from dataset import SegmentationDataset
from model import UNet
from train import train_one_epoch, validate

if __name__ == "__main__":
    dataset = SegmentationDataset("/data")
    train_loader = DataLoader(Subset(dataset, [0, 1]), batch_size=8, shuffle=True)
"""
SOURCES = {"dataset.py": DATASET, "model.py": MODEL, "train.py": TRAIN, "main.py": MAIN}


def fence(code: str, info: str = "python", indent: str = "") -> str:
    """A fenced block as Markdown, optionally indented inside a list item."""
    body = "".join(indent + line if line.strip() else line for line in code.splitlines(keepends=True))
    return f"{indent}```{info}\n{body}{indent}```\n"


def names(reply: str) -> list[tuple[str | None, str]]:
    return [(b.name, b.how) for b in find_blocks(reply)]


# --- naming forms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "comment",
    [
        "# model.py",
        "# File: model.py",
        "# UNET_Segmentation/model.py",
        "# --- model.py ---",
        "# ===== Model.py =====",
        "# filename: model.py",
    ],
)
def test_first_line_comment_names_the_block(comment: str) -> None:
    reply = "Here you go:\n\n" + fence(f"{comment}\n{DATASET}")  # content says dataset: the comment wins
    assert names(reply) == [("model.py", "comment")]


def test_comment_after_shebang_and_ruler_lines_counts() -> None:
    code = "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n# ==========\n# train.py\n# ==========\n" + TRAIN
    assert names(fence(code)) == [("train.py", "comment")]


@pytest.mark.parametrize("info", ['python title="model.py"', "model.py", "python:model.py", "py filename=model.py"])
def test_fence_info_names_the_block(info: str) -> None:
    assert names("Code:\n" + fence(DATASET, info)) == [("model.py", "fence")]


@pytest.mark.parametrize(
    "before",
    [
        "### model.py",
        "## 2. `model.py`",
        "**model.py**",
        "**File: model.py**",
        "Here is `model.py`:",
        "model.py",
        "### 2. Model (`model.py`)",
        "1. **`model.py`**",
    ],
)
def test_text_before_the_block_names_it(before: str) -> None:
    reply = f"Intro text.\n\n{before}\n\n" + fence(TRAIN)
    assert names(reply) == [("model.py", "heading")]


def test_heading_above_a_paragraph_still_names_the_block() -> None:
    reply = "### train.py\n\nThis file holds the loops. It is imported by main.py.\n\nThe code:\n\n" + fence(TRAIN)
    assert names(reply) == [("train.py", "heading")]


def test_text_after_a_block_does_not_name_the_next_one_past_a_new_heading() -> None:
    reply = (
        "### dataset.py\n" + fence(DATASET) + "\n### Notes on `dataset.py`\nIt loads pairs.\n\n"
        "### The network\n\n" + fence(MODEL)
    )
    assert names(reply) == [("dataset.py", "heading"), ("model.py", "content")]


def test_line_naming_several_files_picks_the_one_the_code_is() -> None:
    reply = "Finally, `main.py` ties `dataset.py`, `model.py` and `train.py` together:\n" + fence(MAIN)
    assert names(reply)[0] == ("main.py", "heading")


def test_precedence_comment_over_fence_over_heading() -> None:
    reply = "### dataset.py\n" + fence("# model.py\n" + MODEL, 'python title="train.py"')
    reply += "### dataset.py\n" + fence(MODEL, 'python title="train.py"')
    assert names(reply) == [("model.py", "comment"), ("train.py", "fence")]


# --- fences -------------------------------------------------------------------------------------


def test_tilde_fences_and_untagged_fences_are_read() -> None:
    reply = "**dataset.py**\n~~~\n" + DATASET + "~~~\n\n**model.py**\n```\n" + MODEL + "```\n"
    blocks = find_blocks(reply)
    assert [(b.name, b.language) for b in blocks] == [("dataset.py", ""), ("model.py", "")]
    assert blocks[0].code == DATASET


def test_blocks_indented_in_a_list_are_dedented() -> None:
    reply = (
        "1. **dataset.py**\n\n" + fence(DATASET, indent="   ") + "\n2. **model.py**\n\n" + fence(MODEL, indent="    ")
    )
    files = {b.name: b.code for b in find_blocks(reply)}
    assert files == {"dataset.py": DATASET, "model.py": MODEL}
    compile(files["model.py"], "model.py", "exec")  # the indentation is Python's again


def test_longer_fence_keeps_inner_backticks_as_code() -> None:
    code = 'def usage():\n    """Run:\n```\npython main.py\n```\n"""\n' + TRAIN
    reply = "### train.py\n````python\n" + code + "````\n"
    assert [b.code for b in find_blocks(reply)] == [code]


def test_answer_wrapped_in_a_markdown_fence_is_unwrapped() -> None:
    inner = "### dataset.py\n" + fence(DATASET) + "### model.py\n" + fence(MODEL)
    reply = "Sure!\n````markdown\n" + inner + "````\n"
    assert names(reply) == [("dataset.py", "heading"), ("model.py", "heading")]


def test_unclosed_last_fence_runs_to_the_end_of_the_reply() -> None:
    reply = "### main.py\n```python\n" + MAIN
    assert find_blocks(reply)[0].code == MAIN


def test_one_block_with_several_marked_files_is_split() -> None:
    code = (
        "# dataset.py\n"
        + DATASET
        + "\n# ---- model.py ----\n"
        + MODEL
        + "\n# File: train.py\n"
        + TRAIN
        + "\n# ===== main.py =====\n"
        + MAIN
    )  # main.py imports model: still a new file at model.py
    assert names(fence(code)) == [(n, "comment") for n in CODE_FILES]
    assert extract_files(fence(code))["main.py"] == "# ===== main.py =====\n" + MAIN


def test_a_plain_comment_mentioning_a_file_does_not_split_code() -> None:
    code = "# main.py\nimport torch\n# model.py\nfrom model import UNet\n"
    assert [b.code for b in find_blocks(fence(code))] == [code]


# --- what is not Python ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "info,body",
    [
        ("bash", "pip install torch torchvision torchinfo openpyxl\n"),
        ("", "pip install torch torchvision\n"),
        ("", "UNET_Segmentation/\n|-- dataset.py\n|-- model.py\n|-- train.py\n|-- main.py\n"),
        ("python", "UNET_Segmentation/\n├── dataset.py\n└── main.py\n"),
        ("text", "torch>=2.0\npandas\nopenpyxl\n"),
        ("", "torch\ntorchvision\npandas\n"),
        ("", "python main.py --epochs 50\n"),
        ("", "Epoch 1/50: train loss 0.41, val loss 0.38\n"),
        ("json", '{"lr": 0.001}\n'),
    ],
)
def test_non_python_blocks_are_ignored(info: str, body: str) -> None:
    assert find_blocks("### main.py\n" + fence(body, info)) == []


# --- unnamed blocks, by content ------------------------------------------------------------------


def test_unnamed_blocks_are_assigned_by_what_they_define() -> None:
    reply = "".join("Next:\n" + fence(code) for code in (MAIN, TRAIN, MODEL, DATASET))
    assert names(reply) == [
        ("main.py", "content"),
        ("train.py", "content"),
        ("model.py", "content"),
        ("dataset.py", "content"),
    ]
    assert extract_files(reply) == SOURCES


def test_content_rules_for_harder_cases() -> None:
    only_module = "import torch.nn as nn\nclass SegNet(nn.Module):\n    pass\n"
    train_with_loss = "import torch.nn as nn\nclass DiceLoss(nn.Module):\n    pass\n" + TRAIN
    model_with_selftest = MODEL + '\nif __name__ == "__main__":\n    print(UNet()(torch.zeros(1, 1, 64, 64)).shape)\n'
    broken_dataset = "from torch.utils.data import Dataset\nclass Seg(Dataset)\n    pass\n"  # SyntaxError
    reply = "".join("x\n" + fence(c) for c in (only_module, train_with_loss, model_with_selftest, broken_dataset))
    assert [b.name for b in find_blocks(reply)] == ["model.py", "train.py", "model.py", "dataset.py"]


def test_unclassifiable_unnamed_block_has_no_name() -> None:
    assert names("Usage:\n" + fence("import torch\nprint(torch.__version__)\n")) == [(None, "content")]


def test_extra_python_files_are_kept() -> None:
    reply = "".join(f"### {n}\n" + fence(c) for n, c in SOURCES.items())
    reply += "### utils.py\n" + fence("def dice(a, b):\n    return 1.0\n")
    files = extract_files(reply)
    assert set(files) == {*CODE_FILES, "utils.py"}


def test_the_last_block_for_a_file_wins_and_named_beats_guessed() -> None:
    reply = "".join(f"### {n}\n" + fence(c) for n, c in SOURCES.items())
    reply += "Correction, use this model.py:\n" + fence(MODEL + "# v2\n")
    reply += "Example:\n" + fence(DATASET + "# only an example\n")  # unnamed: must not replace dataset.py
    files = extract_files(reply)
    assert files["model.py"].endswith("# v2\n")
    assert files["dataset.py"] == DATASET


# --- errors ------------------------------------------------------------------------------------


def test_reply_without_code_raises_no_code_error() -> None:
    with pytest.raises(NoCodeError) as err:
        extract_files("I'm sorry, I can't help with that.\n\n```bash\npip install torch\n```\n")
    assert str(err.value) == (
        "NoCodeError: the reply contains no Python code block for dataset.py, model.py, train.py, main.py"
    )


def test_first_reply_missing_files_names_them() -> None:
    reply = "### dataset.py\n" + fence(DATASET) + "### model.py\n" + fence(MODEL)
    with pytest.raises(NoCodeError) as err:
        extract_files(reply)
    assert str(err.value) == "NoCodeError: the reply is missing main.py, train.py"
    assert err.value.missing == ("main.py", "train.py")


def test_blocks_that_name_no_file_are_reported_as_such() -> None:
    with pytest.raises(NoCodeError, match="do not say which of dataset.py"):
        merge_reply(SOURCES, "Try:\n" + fence("import torch\nx = torch.zeros(1)\n"))


# --- fix replies ---------------------------------------------------------------------------------


def test_an_unnamed_block_of_imports_goes_to_the_one_file_that_has_most_of_them() -> None:
    # A reply quoting train.py's imports and adding the one it forgot (the study's Grok 3 mini, NameError: os).
    reply = "Add the missing import at the top:\n" + fence("import os\nimport pandas as pd\nfrom tqdm import tqdm\n")
    merged = merge_reply(SOURCES, reply)
    assert merged["train.py"] == TRAIN.replace("from tqdm import tqdm\n", "from tqdm import tqdm\nimport os\n", 1)
    assert {k: v for k, v in merged.items() if k != "train.py"} == {k: v for k, v in SOURCES.items() if k != "train.py"}
    # Imports no file has most of, or two files share equally: still unplaceable, never guessed.
    with pytest.raises(NoCodeError):
        merge_reply(SOURCES, "Try:\n" + fence("import numpy as np\nimport scipy\nimport os\n"))
    with pytest.raises(NoCodeError):
        merge_reply(SOURCES, "Try:\n" + fence("import torch\n"))  # model.py and main.py both have it


def test_fix_reply_resending_one_file_replaces_only_that_file() -> None:
    fixed = TRAIN.replace("return 0.0", "return total / len(loader)")
    reply = "The error comes from `train.py`. Here is the corrected file:\n\n### train.py\n" + fence(fixed)
    reply += "\nRun it again with:\n```bash\npython main.py\n```\n"
    merged = merge_reply(SOURCES, reply)
    assert merged == {**SOURCES, "train.py": fixed}
    assert SOURCES["train.py"] == TRAIN  # the input is not modified


def test_fix_reply_with_one_unnamed_block_replaces_the_file_defining_the_same_names() -> None:
    # train.py again, now with a self-test main guard that builds a DataLoader: by content alone it
    # would pass for main.py, but it defines train.py's functions.
    fixed = (
        TRAIN
        + '\nif __name__ == "__main__":\n    loader = DataLoader(range(4))\n    validate(None, loader, None, "cpu")\n'
    )
    merged = merge_reply(SOURCES, "The loss was not averaged. Fixed version:\n\n" + fence(fixed))
    assert merged == {**SOURCES, "train.py": fixed}


def test_unnamed_fix_of_an_extra_file_is_matched_by_its_names() -> None:
    current = {**SOURCES, "utils.py": "def dice_coefficient(p, t):\n    return 0\n"}
    fixed = "import torch\n\ndef dice_coefficient(p, t, eps=1e-6):\n    return (2 * (p * t).sum() + eps)\n"
    assert merge_reply(current, "Use this:\n" + fence(fixed)) == {**current, "utils.py": fixed}


def test_fix_reply_unnamed_block_without_shared_names_falls_back_to_content() -> None:
    fixed_main = MAIN.replace("batch_size=8", "batch_size=4")  # main.py defines no functions
    assert merge_reply(SOURCES, "Fixed:\n" + fence(fixed_main))["main.py"] == fixed_main


def test_fix_reply_without_code_raises() -> None:
    with pytest.raises(NoCodeError, match="no Python code block"):
        merge_reply(SOURCES, "You need to install openpyxl:\n```bash\npip install openpyxl\n```")


# --- realistic full replies -------------------------------------------------------------------------

CHATGPT_REPLY = f"""Below is a complete, modular implementation of a U-Net segmentation pipeline in PyTorch.

---

### 📁 Directory Structure

```
UNET_Segmentation/
|-- dataset.py
|-- model.py
|-- train.py
|-- main.py
```

---

### 1. `dataset.py`

This module defines the custom `Dataset` class for loading grayscale images and their masks.

{fence(DATASET)}
---

### 2. `model.py`

{fence(MODEL)}
---

### 3. `train.py`

Training, validation and testing procedures, with Excel logging:

{fence(TRAIN)}
---

### 4. `main.py`

{fence(MAIN)}
---

### ✅ How to Run

```bash
pip install torch torchvision torchinfo openpyxl pandas tqdm scikit-learn
python main.py
```

Let me know if you want data augmentation or mixed precision added!
"""

CLAUDE_REPLY = f"""I'll create a complete U-Net implementation for binary segmentation of grayscale images.

## Project Structure

```
UNET_Segmentation/
├── dataset.py
├── model.py
├── train.py
└── main.py
```

## Installation

```bash
pip install torch torchvision torchinfo pandas openpyxl tqdm scikit-learn matplotlib
```

Let me build each component:

{fence("# dataset.py" + chr(10) + DATASET)}
{fence("# model.py" + chr(10) + MODEL)}
The training module handles all three phases:

{fence("# train.py" + chr(10) + TRAIN)}
Finally, the main script that ties everything together:

{fence("# main.py" + chr(10) + MAIN)}
## Key Features

1. **Data handling**: loads only `.png` files and skips `_seg` masks.
2. **Architecture**: a classic U-Net with skip connections (see `model.py`).
"""


@pytest.mark.parametrize("reply,how", [(CHATGPT_REPLY, "heading"), (CLAUDE_REPLY, "comment")])
def test_realistic_full_replies_yield_the_four_files(reply: str, how: str) -> None:
    blocks = find_blocks(reply)
    assert [(b.name, b.how) for b in blocks] == [(n, how) for n in CODE_FILES]
    files = extract_files(reply)
    assert set(files) == set(CODE_FILES)
    for name, source in SOURCES.items():
        assert files[name].endswith(source)
        compile(files[name], name, "exec")
