"""A small, complete pipeline in the shape LLMs write it, and helpers to turn it into reply folders."""

from __future__ import annotations

from pathlib import Path

DATASET_PY = '''\
import os
import numpy as np
from PIL import Image
import torch
from torch.utils.data import Dataset


class SegmentationDataset(Dataset):
    """Grayscale images with `<n>_seg.png` masks in one folder."""

    def __init__(self, data_dir, image_size=32):
        self.data_dir = data_dir
        self.image_size = image_size
        self.images = sorted(f for f in os.listdir(data_dir) if f.endswith(".png") and not f.endswith("_seg.png"))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        name = self.images[idx]
        image = Image.open(os.path.join(self.data_dir, name)).convert("L").resize((self.image_size, self.image_size))
        mask = Image.open(os.path.join(self.data_dir, name.replace(".png", "_seg.png"))).convert("L")
        mask = mask.resize((self.image_size, self.image_size), Image.NEAREST)
        image = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).unsqueeze(0)
        mask = torch.from_numpy((np.array(mask) > 127).astype(np.float32)).unsqueeze(0)
        return image, mask, name
'''

MODEL_PY = """\
import torch
import torch.nn as nn


class DoubleConv(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.block(x)


class UNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1, base=4):
        super().__init__()
        self.down1 = DoubleConv(in_channels, base)
        self.down2 = DoubleConv(base, base * 2)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(base * 2, base, 2, stride=2)
        self.dec = DoubleConv(base * 2, base)
        self.out = nn.Conv2d(base, out_channels, 1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        u = self.up(d2)
        return self.out(self.dec(torch.cat([u, d1], dim=1)))
"""

TRAIN_PY = """\
import time
import torch
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tqdm import tqdm


def dice_score(logits, masks, eps=1e-6):
    preds = (torch.sigmoid(logits) > 0.5).float()
    inter = (preds * masks).sum()
    return ((2 * inter + eps) / (preds.sum() + masks.sum() + eps)).item()


def train_model(model, train_loader, val_loader, criterion, optimizer, num_epochs, save_path, device):
    train_losses, val_losses, val_dice = [], [], []
    start = time.time()
    for epoch in range(num_epochs):
        model.train()
        total = 0.0
        for images, masks, _ in tqdm(train_loader, desc=f"Epoch {epoch + 1} train"):
            images, masks = images.to(device), masks.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), masks)
            loss.backward()
            optimizer.step()
            total += loss.item()
        train_losses.append(total / len(train_loader))
        model.eval()
        total, dices = 0.0, []
        with torch.no_grad():
            for images, masks, _ in tqdm(val_loader, desc=f"Epoch {epoch + 1} val"):
                out = model(images.to(device))
                total += criterion(out, masks.to(device)).item()
                dices.append(dice_score(out, masks.to(device)))
        val_losses.append(total / len(val_loader))
        val_dice.append(dices)
    print(f"Total training time: {time.time() - start:.1f} s")
    epochs = list(range(1, num_epochs + 1))
    pd.DataFrame([epochs, train_losses]).to_excel(f"{save_path}/train_losses.xlsx", index=False, header=False)
    pd.DataFrame([epochs, val_losses]).to_excel(f"{save_path}/val_losses.xlsx", index=False, header=False)
    pd.DataFrame(val_dice).to_excel(f"{save_path}/validation_dice_scores.xlsx", index=False)
    torch.save(model, f"{save_path}/unet_model.pth")
    torch.save(model.state_dict(), f"{save_path}/unet_state_dict.pth")
    plt.plot(epochs, train_losses, label="train")
    plt.plot(epochs, val_losses, label="val")
    plt.legend()
    plt.savefig(f"{save_path}/losses.png")
    plt.close()


def test_model(model, test_loader, save_path, device):
    model.eval()
    dices = []
    with torch.no_grad():
        for images, masks, _ in tqdm(test_loader, desc="Testing"):
            dices.append(dice_score(model(images.to(device)), masks.to(device)))
    pd.DataFrame([dices]).to_excel(f"{save_path}/test_dice_scores.xlsx", index=False)
    return dices
"""

MAIN_PY = """\
import os
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from sklearn.model_selection import train_test_split
from torchinfo import summary

from dataset import SegmentationDataset
from model import UNet
from train import train_model, test_model

DATA_DIR = "/path/to/dataset"
SAVE_PATH = "/path/to/save"
NUM_EPOCHS = 3
BATCH_SIZE = 4
LEARNING_RATE = 1e-3

if __name__ == "__main__":
    os.makedirs(SAVE_PATH, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = SegmentationDataset(DATA_DIR)
    indices = list(range(len(dataset)))
    train_idx, rest = train_test_split(indices, test_size=0.2, random_state=42)
    val_idx, test_idx = train_test_split(rest, test_size=0.5, random_state=42)
    print(f"Train: {len(train_idx)}, Val: {len(val_idx)}, Test: {len(test_idx)}")
    train_loader = DataLoader(Subset(dataset, train_idx), batch_size=BATCH_SIZE, shuffle=True)
    val_loader = DataLoader(Subset(dataset, val_idx), batch_size=BATCH_SIZE)
    test_loader = DataLoader(Subset(dataset, test_idx), batch_size=BATCH_SIZE)
    model = UNet().to(device)
    summary(model, input_size=(1, 1, 32, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    criterion = nn.BCEWithLogitsLoss()
    train_model(model, train_loader, val_loader, criterion, optimizer, NUM_EPOCHS, SAVE_PATH, device)
    test_model(model, test_loader, SAVE_PATH, device)
"""

FILES = {"dataset.py": DATASET_PY, "model.py": MODEL_PY, "train.py": TRAIN_PY, "main.py": MAIN_PY}


def as_reply(files: dict[str, str], intro: str = "Here is the complete implementation.") -> str:
    """Markdown the way a chat model answers: prose, a heading per file, fenced blocks."""
    parts = [intro, ""]
    for name, code in files.items():
        parts += [f"### `{name}`", "", "```python", code.rstrip(), "```", ""]
    return "\n".join(parts)


def write_replies(folder: Path, replies: list[str]) -> Path:
    """A replay folder: 01.md, 02.md, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(replies, 1):
        (folder / f"{i:02d}.md").write_text(text)
    return folder


def with_bug(files: dict[str, str], name: str, old: str, new: str) -> dict[str, str]:
    """A copy of the files with one genuine bug planted."""
    assert old in files[name]
    return {**files, name: files[name].replace(old, new)}
