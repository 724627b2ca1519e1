# unet_segmentation/main.py
"""
Entry point.  Adapt DATA_ROOT and SAVE_DIR before running!
"""

from pathlib import Path
import random

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Subset
from torch import optim
from torchinfo import summary

from dataset import SegmentationDataset
from model import UNet
from train import train_validate, test_phase


# ---------- configure here ----------------------------------------------------
DATA_ROOT = Path("D:\qy44lyfe\LLM segmentation\Data sets\BAGLS\subset")   # folder containing *.png & *_seg.png
SAVE_DIR = Path("D:\\qy44lyfe\\LLM segmentation\\Results\\2025\\GPT o3\\out of the box\\BAGLS output")

RESIZE_TO = (128, 128)
BATCH_SIZE = 8
EPOCHS = 25
LEARNING_RATE = 1e-3
RANDOM_SEED = 42
# ------------------------------------------------------------------------------


def set_seed(seed: int = 42):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def main():
    set_seed(RANDOM_SEED)
    SAVE_DIR.mkdir(parents=True, exist_ok=True)

    # 1. dataset ---------------------------------------------------------------
    full_dataset = SegmentationDataset(DATA_ROOT, resize=RESIZE_TO)

    indices = list(range(len(full_dataset)))
    train_idx, tmp_idx = train_test_split(indices, test_size=0.2, random_state=RANDOM_SEED, shuffle=True)
    val_idx, test_idx = train_test_split(tmp_idx, test_size=0.5, random_state=RANDOM_SEED, shuffle=True)

    train_ds = Subset(full_dataset, train_idx)
    val_ds = Subset(full_dataset, val_idx)
    test_ds = Subset(full_dataset, test_idx)

    print(f"Dataset sizes → train: {len(train_ds)}  val: {len(val_ds)}  test: {len(test_ds)} "
          f"(total {len(full_dataset)})")

    # 2. loaders ---------------------------------------------------------------
    train_loader = DataLoader(train_ds, batch_size=BATCH_SIZE, shuffle=True, num_workers=4, pin_memory=True)
    val_loader = DataLoader(val_ds, batch_size=BATCH_SIZE, shuffle=False, num_workers=2, pin_memory=True)
    test_loader = DataLoader(test_ds, batch_size=BATCH_SIZE, shuffle=False, num_workers=2, pin_memory=True)

    for name, dl in [("train", train_loader), ("val", val_loader), ("test", test_loader)]:
        print(f"{name.capitalize()} loader batches: {len(dl)}")

    # 3. model & optimiser -----------------------------------------------------
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    model = UNet(in_channels=1, out_channels=1, init_features=32).to(device)
    summary(model, input_size=(1, 1, *RESIZE_TO))
    print(f"Trainable params: {sum(p.numel() for p in model.parameters() if p.requires_grad):,}")

    optimizer = optim.Adam(model.parameters(), lr=LEARNING_RATE)
    criterion = torch.nn.BCEWithLogitsLoss()

    # 4. training --------------------------------------------------------------
    train_validate(model, train_loader, val_loader, optimizer, criterion, device, epochs=EPOCHS, save_dir=SAVE_DIR)

    # 5. save model ------------------------------------------------------------
    torch.save(model, SAVE_DIR / "unet_full_model.pth")
    torch.save(model.state_dict(), SAVE_DIR / "unet_state_dict.pth")
    print(f"\nModel saved to {SAVE_DIR}")

    # 6. testing  --------------------------------------------------------------
    test_phase(model, test_loader, criterion, device, SAVE_DIR)


if __name__ == "__main__":
    main()
