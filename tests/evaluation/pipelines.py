"""Attempt folders of hand-made pipelines for the evaluator: a 1x1-conv threshold 'U-Net', saved as asked.

The weights are set by hand (no training), so each test knows what a correct evaluator must score.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

DATASET_PY = """\
import os
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

ZSCORE = {zscore}
SUFFIX = "{suffix}"


class SegDataset(Dataset):
    def __init__(self, image_dir, mask_dir, rgb={rgb}):
        self.image_dir, self.mask_dir, self.rgb = image_dir, mask_dir, rgb
        self.image_files = sorted(f for f in os.listdir(image_dir) if f.endswith(".png")
                                  and not (SUFFIX and f.endswith(SUFFIX + ".png")))

    def __len__(self):
        return len(self.image_files)

    def __getitem__(self, idx):
        name = self.image_files[idx]
        img = np.asarray(Image.open(os.path.join(self.image_dir, name)).convert("RGB" if self.rgb else "L"),
                         dtype=np.float32) / 255.0
        if ZSCORE:
            img = (img - img.mean()) / (img.std() + 1e-6)  # per-image z-score, as some LLMs do
        mask = np.asarray(Image.open(os.path.join(self.mask_dir, name[:-4] + SUFFIX + ".png")).convert("L")) > 127
        img = torch.from_numpy(img.transpose(2, 0, 1).copy() if self.rgb else img[None].copy())
        return img, torch.from_numpy(mask[None].astype(np.float32))
"""

MODEL_PY = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


class ThresholdNet(nn.Module):
    def __init__(self, in_channels, out_channels, sigmoid=False, half=False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.sigmoid, self.half = sigmoid, half

    def forward(self, x):
        if self.half:
            x = F.avg_pool2d(x, 2)
        y = self.conv(x)
        return torch.sigmoid(y) if self.sigmoid else y
"""

MAIN_PY = """\
import os
from torch.utils.data import DataLoader, Subset
from sklearn.model_selection import train_test_split
from dataset import SegDataset

IMAGE_DIR = "/path/to/images"
MASK_DIR = "/path/to/masks"
SAVE_DIR = "/path/to/save"
NUM_EPOCHS = 5
PROBES = {probes!r}

if __name__ == "__main__":
    os.makedirs(SAVE_DIR, exist_ok=True)
    with open(os.path.join(SAVE_DIR, "probe.txt"), "w") as f:
        for p in PROBES:
            f.write(f"{{p}} {{os.path.exists(p)}}\\n")
    ds = SegDataset(IMAGE_DIR, MASK_DIR)
    idx = list(range(len(ds)))
    train_idx, rest = train_test_split(idx, test_size=0.2, random_state=0)
    val_idx, test_idx = train_test_split(rest, test_size=0.5, random_state=0)
    train_loader = DataLoader(Subset(ds, train_idx), batch_size=4, shuffle=True)
    val_loader = DataLoader(Subset(ds, val_idx), batch_size=4)
    test_loader = DataLoader(Subset(ds, test_idx), batch_size=4)
    for epoch in range(NUM_EPOCHS):
        for images, masks in train_loader:
            pass
"""

ARGPARSE_MAIN_PY = """\
import argparse
from torch.utils.data import DataLoader, Subset
from dataset import SegDataset

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--image_dir", default="/path/to/images")
    parser.add_argument("--mask_dir", default="/path/to/masks")
    parser.add_argument("--save_dir", default="/path/to/save")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    ds = SegDataset(args.image_dir, args.mask_dir)
    test_loader = DataLoader(Subset(ds, list(range(len(ds)))), batch_size=4)
    for images, masks in test_loader:
        pass
"""

SAVE_PY = """\
import torch
from model import ThresholdNet

m = ThresholdNet({channels}, 1, sigmoid={sigmoid}, half={half})
with torch.no_grad():
    m.conv.weight.fill_({weight} / {channels})
    m.conv.bias.fill_({bias})
torch.save({what}, "results/{file}")
"""


def make_attempt(
    folder: Path,
    *,
    rgb: bool = False,
    suffix: str = "_seg",
    zscore: bool = False,
    weight: float = 10.0,
    bias: float = -6.0,
    sigmoid: bool = False,
    half: bool = False,
    save: str = "whole",
    file: str = "model.pth",
    probes: tuple[str, ...] = (),
    argparse: bool = False,
) -> Path:
    """An attempt folder as a finished pipeline leaves it: four files and results/<file>."""
    (folder / "results").mkdir(parents=True)
    files = {
        "dataset.py": DATASET_PY.format(zscore=zscore, rgb=rgb, suffix=suffix),
        "model.py": MODEL_PY,
        "train.py": "def train_model():\n    pass\n",
        "main.py": ARGPARSE_MAIN_PY if argparse else MAIN_PY.format(probes=list(probes)),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    run_save_script(
        folder,
        SAVE_PY.format(
            channels=3 if rgb else 1,
            sigmoid=sigmoid,
            half=half,
            weight=weight,
            bias=bias,
            file=file,
            what="m" if save == "whole" else "m.state_dict()",
        ),
    )
    return folder


def run_save_script(folder: Path, script: str) -> None:
    """Run a model-saving script as `python _save.py` in the attempt folder would, but in this process (a
    fresh interpreter costs seconds of imports): from the folder, with its model.py imported as `model`, so a
    pickled whole model refers to `model.<Class>` just as the pipeline's own run leaves it."""
    saved = sys.modules.pop("model", None)
    spec = importlib.util.spec_from_file_location("model", folder / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    cwd = os.getcwd()
    try:
        spec.loader.exec_module(module)
        os.chdir(folder)
        exec(compile(script, str(folder / "_save.py"), "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(cwd)
        sys.modules.pop("model", None)
        if saved is not None:
            sys.modules["model"] = saved
