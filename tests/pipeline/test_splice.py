"""A fix reply that resends part of a file is pasted into it, as a person would (found in the study's own chats)."""

from __future__ import annotations

import ast

import pytest

from llmseg_mlflow.pipeline.extract import NoCodeError, merge_reply
from llmseg_mlflow.pipeline.splice import is_partial, splice

TRAIN = """import torch
import matplotlib.pyplot as plt


def train_one_epoch(model, loader):
    return 0.5


@torch.no_grad()
def visualize_predictions(model, data):
    plt.imshow(data[0])


def test_model(model, loader):
    return [0.9]
"""
FIXED = """import random


@torch.no_grad()
def visualize_predictions(model, data, n=5):
    for i in random.sample(range(len(data)), n):
        plt.imshow(data[i])
"""


def test_a_resent_function_replaces_only_that_function_and_adds_its_imports():
    merged = merge_reply(
        {"train.py": TRAIN, "main.py": "import train\n"},
        f"You need to fix the visualize_predictions function in train.py:\n\n```python\n{FIXED}```\n",
    )
    train = merged["train.py"]
    ast.parse(train)
    assert "def train_one_epoch" in train and "def test_model" in train  # the rest of the file is kept
    assert "random.sample" in train and train.count("def visualize_predictions") == 1
    assert train.count("@torch.no_grad()") == 1  # the decorator went with its function
    assert train.index("import random") < train.index("def train_one_epoch")
    assert merged["main.py"] == "import train\n"


def test_unnamed_functions_after_a_named_piece_of_the_same_file_are_spliced_too():
    # GPT-4o's last fix: "Modified Training Function (train.py)", then "Similarly, validate and test" unnamed
    reply = (
        "Modified Training Function (train.py)\n\n```python\nimport torch\n\n\ndef train_one_epoch(model, loader):\n"
        "    return 0.25\n```\n\nSimilarly, in the testing function:\n\n```python\ndef test_model(model, loader):\n"
        "    return [0.95]\n```\n"
    )
    train = merge_reply({"train.py": TRAIN}, reply)["train.py"]
    assert "return 0.25" in train and "return [0.95]" in train and "def visualize_predictions" in train


def test_real_code_after_a_named_sketch_that_does_not_parse_wins():
    # Grok 3 mini's page: undelimited reasoning quotes "the provided model.py" as a sketch, then the answer
    model = "import torch.nn as nn\n\n\nclass UNet(nn.Module):\n    def forward(self, x):\n        return x\n"
    reply = (
        "Let me verify the rest of the code. In the provided model.py, it's:\n\n```python\nclass UNet(nn.Module):\n"
        "    def __init__(self, ...):\n        ...\n```\nExactly, missing self.\n\nHere's the updated file:\n\n"
        f"```python\n{model}```\n"
    )
    merged = merge_reply({"model.py": model.replace("self, x", "x"), "train.py": TRAIN}, reply)
    assert merged == {"model.py": model, "train.py": TRAIN}


def test_a_named_block_of_imports_only_adds_the_missing_imports():
    main = (
        "import os\nimport torch\n\n\ndef main():\n    print(os.getcwd())\n\n\nif __name__ == '__main__':\n    main()\n"
    )
    reply = "Here's how the top of your main.py file should look:\n\n```python\n# main.py\nimport os\nimport numpy as np\nimport torch\n```\n"
    merged = merge_reply({"main.py": main}, reply)["main.py"]
    assert merged.startswith("import os\nimport torch\nimport numpy as np\n") and "def main():" in merged
    assert "if __name__ == '__main__':" in merged


def test_imports_only_go_into_a_main_py_that_is_one_bare_main_block():
    # GPT-4o's fix in the study: the import block of a main.py that defines no function at all.
    main = "import os\nimport torch\n\nif __name__ == '__main__':\n    t = T.Compose([])\n    print(os.getcwd())\n"
    reply = "Add this import to main.py:\n\n```python\n# main.py\nimport os\nimport torch\nimport torchvision.transforms as T\n```\n"
    merged = merge_reply({"main.py": main}, reply)["main.py"]
    assert "import torchvision.transforms as T" in merged and "t = T.Compose([])" in merged
    assert not is_partial("import os\n", "import os\nimport sys\n")  # imports for a file of imports: the file


def test_a_whole_file_still_replaces_the_file():
    whole = "import torch\n\n\ndef visualize_predictions(model, data):\n    pass\n\n\nprint('done')\n"
    assert not is_partial(whole, TRAIN)  # module-level code: the reply is the file
    every = TRAIN.replace("return 0.5", "return 0.25")
    assert not is_partial(every, TRAIN)  # it defines every name the file has
    merged = merge_reply({"train.py": TRAIN}, f"```python\n# train.py\n{whole}```\n")
    assert merged["train.py"].endswith(whole) and "def train_one_epoch" not in merged["train.py"]


def test_a_snippet_that_does_not_parse_is_taken_as_written():
    broken = "def visualize_predictions(model, data:\n    pass\n"
    assert not is_partial(broken, TRAIN)  # the run then reports its SyntaxError, verbatim, as it would have
    assert merge_reply({"train.py": TRAIN}, f"```python\n# train.py\n{broken}```\n")["train.py"].endswith(broken)


def test_splice_keeps_everything_around_the_replaced_definitions():
    spliced = splice("def test_model(model, loader):\n    return [1.0]\n", TRAIN)
    assert spliced == TRAIN.replace("    return [0.9]", "    return [1.0]")


def test_a_method_resent_at_module_level_replaces_that_method_in_its_class():
    dataset = (
        "import torch\n\n\nclass Seg(torch.utils.data.Dataset):\n    def __init__(self, files):\n"
        "        self.files = files\n\n    def __getitem__(self, idx):\n        return self.files[idx]\n\n"
        "    def __len__(self):\n        return len(self.files)\n\n\ndef helper():\n    return 1\n"
    )
    snippet = "def __getitem__(self, idx):\n    image = self.files[idx]\n    return image, image\n"
    assert is_partial(snippet, dataset)
    spliced = splice(snippet, dataset)
    tree = ast.parse(spliced)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert [m.name for m in cls.body] == ["__init__", "__getitem__", "__len__"]
    assert "        return image, image" in spliced and "def helper" in spliced


MAIN = """import torch


def main():
    dataset = list(range(10))
    train_set, val_set, test_set = torch.utils.data.random_split(dataset, [8, 1, 1])
    print_summary(model)
    print(len(train_set))


def print_summary(model):
    print(model)


if __name__ == "__main__":
    main()
"""


def test_statements_quoted_from_a_function_replace_the_statement_they_stand_for():
    # Llama 3.1 405B's fix: the split from inside main(), quoted flush left with the sizes it needs first
    reply = (
        "To fix this issue, you can use the following code to split the dataset:\n\n```python\n"
        "train_size = int(0.8 * len(dataset))\nval_size = int(0.1 * len(dataset))\n"
        "test_size = len(dataset) - train_size - val_size\n\n"
        "train_set, val_set, test_set = torch.utils.data.random_split(dataset, [train_size, val_size, test_size])\n"
        "```\n\nAlternatively, you can also use the following code to split the dataset:\n\n```python\n"
        "train_set, val_set, test_set = torch.utils.data.random_split(dataset, [7, 2, 1])\n```\n"
    )
    main = merge_reply({"main.py": MAIN}, reply)["main.py"]
    ast.parse(main)
    body = main[main.index("def main") : main.index("def print_summary")]
    assert "    test_size = len(dataset) - train_size - val_size\n" in body  # indented into main()
    assert "[train_size, val_size, test_size]" in body and "[8, 1, 1]" not in body
    assert "[7, 2, 1]" not in main  # the alternative offered after it is not applied
    assert "print(len(train_set))" in body and "def print_summary" in main


def test_a_helper_resent_with_its_new_call_replaces_both():
    # GPT o3: "replace the old helper in main.py", then "In main() call it like this:" at module level
    reply = (
        "Below is a drop-in replacement for the helper:\n\n```python\n# --- replace the old helper in main.py ---\n"
        "def print_summary(model, device):\n    print(model, device)\n\n\n# In main() call it like this:\n"
        "print_summary(model, device)\n```\n"
    )
    main = merge_reply({"main.py": MAIN}, reply)["main.py"]
    assert "    print_summary(model, device)\n    print(len(train_set))" in main
    assert "def print_summary(model, device):" in main and main.count("def print_summary") == 1
    assert 'if __name__ == "__main__":' in main


def test_only_alternative_code_is_applied():
    # Llama 3.1 405B: "Alternatively, you can also resize the masks" is the only code of that reply
    reply = (
        "Alternatively, you can resize the masks. Here's train.py:\n\n```python\n"
        + TRAIN.replace("n=5", "n=6")
        + "```\n"
    )
    assert merge_reply({"train.py": "x = 1\n"}, reply) == {"train.py": TRAIN.replace("n=5", "n=6")}


def test_a_sketch_that_leaves_code_out_is_not_applied():
    # Gemini 1.5 Pro: "print the shapes in forward" with `# ...` for the rest of the method
    model = "import torch.nn as nn\n\n\nclass UNet(nn.Module):\n    def forward(self, x):\n        e1 = self.enc1(x)\n        return e1\n"
    sketch = "def forward(self, x):\n    # ...\n    e4 = self.enc4(e3)\n    print('e4 shape:', e4.shape)\n    # ...\n"
    with pytest.raises(NoCodeError, match=r"leaves parts out .*'# \.\.\.'.* whole"):
        merge_reply({"model.py": model}, f"Print the shapes:\n\n```python\n{sketch}```\n")
    # DeepSeek V3's "train.py (updated imports)": module-level `# ... rest remains the same` around whole pieces
    imports = "import numpy as np\nimport torch\n\n# ... [rest of the train.py code remains the same] ...\n"
    merged = merge_reply({"train.py": TRAIN}, f"2. train.py (updated imports)\n```python\n{imports}```\n")
    assert "import numpy as np" in merged["train.py"] and "def test_model" in merged["train.py"]


def test_statements_that_fit_two_loops_go_where_their_comment_says():
    train = (
        "import torch\n\n\ndef train(model, loader, criterion):\n    for images, masks in loader:\n"
        "        outputs = model(images)\n        loss = criterion(outputs, masks)\n\n\n"
        "def validate(model, loader, criterion):\n    for images, masks in loader:\n"
        "        outputs = model(images)\n        loss = criterion(outputs, masks)\n"
    )
    fix = (
        "import torch.nn.functional as F\n\noutputs = model(images)\n"
        "masks = F.interpolate(masks, size=outputs.shape[2:])\nloss = criterion(outputs, masks)\n"
    )
    unnamed = {"train.py": train, "main.py": "import train\n"}
    assert not is_partial(fix, train)  # which loop is meant cannot be told
    hinted = merge_reply(unnamed, f"```python\n# ... inside your training loop ...\n{fix}```\n")["train.py"]
    assert hinted.count("F.interpolate(") == 1 and hinted.index("F.interpolate(") < hinted.index("def validate")
    assert "import torch.nn.functional as F" in hinted


def test_an_example_that_reads_names_the_function_lacks_is_not_its_code():
    # Gemini 1.5 Pro's "# In your training loop: images, masks = batch", where the loop unpacks the loader
    train = "def train(model, loader):\n    for images, masks in loader:\n        images, masks = images.cuda(), masks.cuda()\n"
    example = "# In your training loop:\nimages, masks = batch\nprint(images.min(), images.max())\n"
    assert not is_partial(example, train)
    assert is_partial(example.replace("batch", "images, masks"), train)


def test_imports_sent_for_a_name_error_go_to_the_file_that_raised_it():
    # Llama 3.1 405B: "NameError: name 'F' is not defined" in train.py, answered by three import lines that
    # model.py (which has two of them) would otherwise claim
    model = "import torch\nimport torch.nn as nn\n\n\nclass UNet(nn.Module):\n    pass\n"
    train = "import torch\n\n\ndef train(masks, outputs):\n    return F.interpolate(masks, size=outputs.shape[2:])\n"
    reply = "```python\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n```\n"
    files = {"model.py": model, "train.py": train}
    traceback = (
        'Traceback (most recent call last):\n  File "D:\\seg\\main.py", line 43, in main\n    train(m, o)\n'
        '  File "D:\\seg\\train.py", line 5, in train\n    return F.interpolate(masks)\n'
        "NameError: name 'F' is not defined\n"
    )
    assert merge_reply(files, reply)["model.py"] != model  # by the imports alone
    fixed = merge_reply(files, reply, traceback)
    assert fixed["model.py"] == model and "import torch.nn.functional as F" in fixed["train.py"]
    ast.parse(fixed["train.py"])
