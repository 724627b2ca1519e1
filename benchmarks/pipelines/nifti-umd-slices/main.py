"""main.py - myoma segmentation on the UMD uterine MRI dataset (NIfTI volumes -> 2D slices)."""
import os

import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Subset
from torchinfo import summary

from dataset import MyomaSliceDataset, list_cases
from model import UNet
from train import DiceBCELoss, train_validate, test, plot_losses, visualize

DATA_ROOT = r"C:\Users\jwang\Data\UMD"
IMAGE_DIR = os.path.join(DATA_ROOT, "images")
LABEL_DIR = os.path.join(DATA_ROOT, "labels")
SAVE_DIR = r"C:\Users\jwang\Experiments\umd_unet2d"

IMG_SIZE = 128
BATCH_SIZE = 8
NUM_EPOCHS = 80
LEARNING_RATE = 2e-4
SEED = 0

if __name__ == "__main__":
    os.makedirs(SAVE_DIR, exist_ok=True)
    torch.manual_seed(SEED)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    cases = list_cases(IMAGE_DIR, LABEL_DIR)
    dataset = MyomaSliceDataset(cases, img_size=IMG_SIZE)

    indices = list(range(len(dataset)))
    train_idx, rest_idx = train_test_split(indices, test_size=0.2, random_state=SEED)
    val_idx, test_idx = train_test_split(rest_idx, test_size=0.5, random_state=SEED)
    train_ds, val_ds, test_ds = Subset(dataset, train_idx), Subset(dataset, val_idx), Subset(dataset, test_idx)
    print(f"train {len(train_ds)} / val {len(val_ds)} / test {len(test_ds)} slices")

    train_loader = DataLoader(train_ds, batch_size=BATCH_SIZE, shuffle=True, num_workers=2)
    val_loader = DataLoader(val_ds, batch_size=BATCH_SIZE, shuffle=False, num_workers=2)
    test_loader = DataLoader(test_ds, batch_size=BATCH_SIZE, shuffle=False, num_workers=2)
    print(f"batches: train {len(train_loader)}, val {len(val_loader)}, test {len(test_loader)}")

    model = UNet(in_channels=1, out_channels=1).to(device)
    summary(model, input_size=(BATCH_SIZE, 1, IMG_SIZE, IMG_SIZE))

    criterion = DiceBCELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    train_hist, val_hist = train_validate(model, train_loader, val_loader, criterion, optimizer, device,
                                          NUM_EPOCHS, SAVE_DIR)
    plot_losses(train_hist, val_hist, SAVE_DIR)
    test(model, test_loader, device, SAVE_DIR)
    visualize(model, test_ds, device, SAVE_DIR)
