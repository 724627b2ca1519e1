"""Evaluator throughput: the whole sandboxed held-out evaluation vs a bare batched forward pass.

Makes a synthetic grayscale set (default 1,000 images of 256x256: 100 held out, a small real held-out set), a pipeline folder with
a paper-size U-Net (4 levels, 32 base channels, ~7.8 M parameters, randomly initialised: speed does not
depend on the weights) saved as a whole model, and a Dataset class of the shape LLMs write. Then times,
interleaved over `--repeats` rounds:
- bare: the model already in memory, the images already tensors, `model(batch)` over all of them;
- evaluator: `evaluate_attempt` (bubblewrap, torch import, model load, the pipeline's own Dataset,
  inference, resize to the ground truth, masks written) plus scoring (Dice, IoU, HD95).
Prints each time and the ratio of medians (target <= 1.3). The evaluator's fixed cost (sandbox, torch
import, running main.py up to its loaders, scoring) is ~3.5 s here, so the ratio falls as the set grows.

    .venv/bin/python benchmarks/evaluation_throughput.py [--images 1000] [--size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.pop("LLMSEG_DATASETS_FILE", None)

from llmseg_mlflow.catalog.datasets import load_datasets  # noqa: E402
from llmseg_mlflow.catalog.prepare import prepare_dataset  # noqa: E402
from llmseg_mlflow.evaluation.evaluator import EvalSettings, evaluate_attempt  # noqa: E402
from llmseg_mlflow.evaluation.record import score_heldout  # noqa: E402

DATASET_PY = """\
import os
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class SegDataset(Dataset):
    def __init__(self, data_dir, size={size}):
        self.data_dir, self.size = data_dir, size
        self.images = sorted(f for f in os.listdir(data_dir) if f.endswith(".png") and not f.endswith("_seg.png"))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        name = self.images[i]
        img = Image.open(os.path.join(self.data_dir, name)).convert("L").resize((self.size, self.size))
        mask = Image.open(os.path.join(self.data_dir, name[:-4] + "_seg.png")).convert("L")
        img = torch.from_numpy(np.asarray(img, dtype=np.float32)[None] / 255.0)
        return img, torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None]
"""

MODEL_PY = """\
import torch
import torch.nn as nn


def block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1, features=(32, 64, 128, 256)):
        super().__init__()
        self.downs, self.ups, self.pool = nn.ModuleList(), nn.ModuleList(), nn.MaxPool2d(2)
        c = in_channels
        for f in features:
            self.downs.append(block(c, f))
            c = f
        self.bottleneck = block(features[-1], features[-1] * 2)
        for f in reversed(features):
            self.ups.append(nn.ConvTranspose2d(f * 2, f, 2, stride=2))
            self.ups.append(block(f * 2, f))
        self.head = nn.Conv2d(features[0], out_channels, 1)

    def forward(self, x):
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i in range(0, len(self.ups), 2):
            x = self.ups[i](x)
            x = self.ups[i + 1](torch.cat([skips[-1 - i // 2], x], dim=1))
        return self.head(x)
"""

MAIN_PY = """\
from torch.utils.data import DataLoader, Subset
from sklearn.model_selection import train_test_split
from dataset import SegDataset

DATA_DIR = "/path/to/data"
SAVE_DIR = "/path/to/save"
NUM_EPOCHS = 50

if __name__ == "__main__":
    ds = SegDataset(DATA_DIR)
    idx = list(range(len(ds)))
    train_idx, rest = train_test_split(idx, test_size=0.2, random_state=0)
    val_idx, test_idx = train_test_split(rest, test_size=0.5, random_state=0)
    loaders = [DataLoader(Subset(ds, i), batch_size=8) for i in (train_idx, val_idx, test_idx)]
    for epoch in range(NUM_EPOCHS):
        for images, masks in loaders[0]:
            pass
"""


def make_pipeline(folder: Path, size: int) -> Path:
    """An attempt folder with the code and a whole-model save."""
    (folder / "results").mkdir(parents=True)
    for name, text in (
        ("dataset.py", DATASET_PY.format(size=size)),
        ("model.py", MODEL_PY),
        ("train.py", "def train():\n    pass\n"),
        ("main.py", MAIN_PY),
    ):
        (folder / name).write_text(text)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch; from model import UNet; torch.manual_seed(0); "
            "torch.save(UNet().eval(), 'results/unet_model.pth')",
        ],
        cwd=folder,
        check=True,
    )
    return folder


def bare_forward(attempt: Path, images: list[Path], size: int, batch: int) -> float:
    """Seconds of model(batch) over all images, model in memory and inputs ready."""
    model = torch.load(attempt / "results" / "unet_model.pth", weights_only=False).eval()
    x = torch.stack(
        [
            torch.from_numpy(
                np.asarray(Image.open(p).convert("L").resize((size, size)), dtype=np.float32)[None] / 255.0
            )
            for p in images
        ]
    )
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
    return time.perf_counter() - start


def main() -> None:
    """Prepare, then time bare vs evaluator, interleaved."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base = load_datasets()["synthetic-gray-suffix"]
    spec = base.model_copy(
        update={
            "key": "bench-eval",
            "synthetic": base.synthetic.model_copy(update={"n": args.images, "size": args.size}),
        }
    )
    with tempfile.TemporaryDirectory(prefix="llmseg-bench-eval-") as tmp:
        work = Path(tmp)
        data = prepare_dataset(spec, work / "data")
        attempt = make_pipeline(work / "attempt", args.size)
        sys.path.insert(0, str(attempt))  # the whole-model pickle refers to its `model` module
        images = [img for img, _ in data.heldout_pairs()]
        print(
            f"{len(images)} held-out images of {args.size}x{args.size}, U-Net "
            f"{sum(p.numel() for p in torch.load(attempt / 'results' / 'unet_model.pth', weights_only=False).parameters()) / 1e6:.1f} M params, "
            f"{torch.get_num_threads()} torch threads"
        )
        bare, full, forward_inside = [], [], []
        for r in range(args.repeats):
            bare.append(bare_forward(attempt, images, args.size, 16))
            start = time.perf_counter()
            out = evaluate_attempt(attempt, data, work / "eval", EvalSettings(), {"final_activation": "none"})
            scores = score_heldout(data, out.predictions)
            full.append(time.perf_counter() - start)
            forward_inside.append(float(out.info["forward_s"]))
            print(
                f"round {r + 1}: bare forward {bare[-1]:6.2f} s | evaluator {full[-1]:6.2f} s "
                f"(forward inside {forward_inside[-1]:.2f} s, {out.info['eval_preprocessing']} preprocessing, "
                f"Dice {scores.summary()['heldout_dice_mean']:.3f})"
            )
        ratio = statistics.median(full) / statistics.median(bare)
        print(
            f"median bare {statistics.median(bare):.2f} s, evaluator {statistics.median(full):.2f} s: "
            f"ratio {ratio:.3f} (target <= 1.3); "
            f"per-round ratios {', '.join(f'{f / b:.3f}' for f, b in zip(full, bare))}"
        )


if __name__ == "__main__":
    main()
