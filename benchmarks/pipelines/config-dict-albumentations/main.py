import os

import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Subset
from torchinfo import summary

from dataset import PolypDataset, get_transforms
from model import UNet
from train import BCEDiceLoss, train_and_validate, test, plot_losses, visualize

CONFIG = {
    "image_dir": r"C:\Users\lab\Documents\datasets\polyps\images",
    "mask_dir": r"C:\Users\lab\Documents\datasets\polyps\masks",
    "save_dir": r"C:\Users\lab\Documents\results\unet_polyps",
    "img_size": 128,
    "batch_size": 8,
    "epochs": 40,
    "lr": 1e-4,
    "weight_decay": 1e-5,
    "num_workers": 4,
    "seed": 42,
}


if __name__ == "__main__":
    os.makedirs(CONFIG["save_dir"], exist_ok=True)
    torch.manual_seed(CONFIG["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    names = sorted(f for f in os.listdir(CONFIG["image_dir"]) if f.lower().endswith(".png"))
    indices = list(range(len(names)))
    train_idx, temp_idx = train_test_split(indices, test_size=0.2, random_state=CONFIG["seed"])
    val_idx, test_idx = train_test_split(temp_idx, test_size=0.5, random_state=CONFIG["seed"])

    dataset = PolypDataset(CONFIG["image_dir"], CONFIG["mask_dir"], names, transform=get_transforms(CONFIG["img_size"]))
    train_set, val_set, test_set = Subset(dataset, train_idx), Subset(dataset, val_idx), Subset(dataset, test_idx)
    print(f"Train: {len(train_set)} | Val: {len(val_set)} | Test: {len(test_set)}")

    train_loader = DataLoader(train_set, batch_size=CONFIG["batch_size"], shuffle=True, num_workers=CONFIG["num_workers"])
    val_loader = DataLoader(val_set, batch_size=CONFIG["batch_size"], shuffle=False, num_workers=CONFIG["num_workers"])
    test_loader = DataLoader(test_set, batch_size=CONFIG["batch_size"], shuffle=False, num_workers=CONFIG["num_workers"])
    print(f"Batches -> train: {len(train_loader)}, val: {len(val_loader)}, test: {len(test_loader)}")

    model = UNet(in_channels=3, out_channels=1).to(device)
    summary(model, input_size=(1, 3, CONFIG["img_size"], CONFIG["img_size"]))
    print(f"n Trainable params: {sum(p.numel() for p in model.parameters() if p.requires_grad):,}")

    criterion = BCEDiceLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG["lr"], weight_decay=CONFIG["weight_decay"])

    train_losses, val_losses = train_and_validate(model, train_loader, val_loader, criterion, optimizer, CONFIG, device)
    plot_losses(train_losses, val_losses, CONFIG["save_dir"])
    test(model, test_loader, criterion, device, CONFIG["save_dir"])
    visualize(model, test_set, device, CONFIG["save_dir"])
