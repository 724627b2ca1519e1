"""train.py - training / validation / test loops, Excel logs, figures."""
import os
import random
import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm import tqdm


class DiceBCELoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits, target):
        p = torch.sigmoid(logits)
        dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        return self.bce(logits, target) + 1 - dice


def dice_per_batch(logits, target):
    pred = (torch.sigmoid(logits) > 0.5).float()
    inter = (pred * target).sum(dim=(1, 2, 3))
    denom = pred.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return ((2 * inter + 1e-6) / (denom + 1e-6)).mean().item()


def train_validate(model, train_loader, val_loader, criterion, optimizer, device, epochs, save_dir):
    train_hist, val_hist, dice_hist = [], [], []
    start = time.time()
    for epoch in range(epochs):
        model.train()
        losses = []
        for x, y, _ in tqdm(train_loader, desc=f"Epoch {epoch + 1}/{epochs} train"):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        train_hist.append(float(np.mean(losses)))

        model.eval()
        losses, dices = [], []
        with torch.no_grad():
            for x, y, _ in tqdm(val_loader, desc=f"Epoch {epoch + 1}/{epochs} val"):
                x, y = x.to(device), y.to(device)
                logits = model(x)
                losses.append(criterion(logits, y).item())
                dices.append(dice_per_batch(logits, y))
        val_hist.append(float(np.mean(losses)))
        dice_hist.append(dices)
        print(f"epoch {epoch + 1}: train {train_hist[-1]:.4f} val {val_hist[-1]:.4f} dice {np.mean(dices):.4f}")

    print(f"Training time: {(time.time() - start) / 60:.1f} min")
    pd.DataFrame([np.arange(1, epochs + 1), train_hist]).to_excel(os.path.join(save_dir, "train_losses.xlsx"), index=False, header=False)
    pd.DataFrame([np.arange(1, epochs + 1), val_hist]).to_excel(os.path.join(save_dir, "val_losses.xlsx"), index=False, header=False)
    pd.DataFrame(dice_hist).to_excel(os.path.join(save_dir, "validation_dice_scores.xlsx"))
    torch.save(model, os.path.join(save_dir, "unet_myoma_full.pth"))
    torch.save(model.state_dict(), os.path.join(save_dir, "unet_myoma_weights.pth"))
    return train_hist, val_hist


def test(model, loader, device, save_dir):
    model.eval()
    dices = []
    with torch.no_grad():
        for x, y, _ in tqdm(loader, desc="Test"):
            dices.append(dice_per_batch(model(x.to(device)), y.to(device)))
    pd.DataFrame([dices]).to_excel(os.path.join(save_dir, "test_dice_scores.xlsx"))
    print(f"Test Dice: {np.mean(dices):.4f}")


def plot_losses(train_hist, val_hist, save_dir):
    plt.figure(figsize=(7, 4))
    plt.plot(range(1, len(train_hist) + 1), train_hist, label="train")
    plt.plot(range(1, len(val_hist) + 1), val_hist, label="validation")
    plt.xlabel("epoch")
    plt.ylabel("loss")
    plt.legend()
    plt.savefig(os.path.join(save_dir, "loss_curves.png"))
    plt.close()


def visualize(model, dataset, device, save_dir, n=5):
    model.eval()
    picks = random.sample(range(len(dataset)), min(n, len(dataset)))
    fig, axes = plt.subplots(len(picks), 3, figsize=(9, 3 * len(picks)), squeeze=False)
    with torch.no_grad():
        for r, i in enumerate(picks):
            x, y, name = dataset[i]
            p = torch.sigmoid(model(x[None].to(device)))[0, 0].cpu() > 0.5
            for c, (a, t) in enumerate([(x[0], "Input Image"), (y[0], "Ground Truth"), (p, "Prediction")]):
                axes[r, c].imshow(a, cmap="gray")
                axes[r, c].set_title(f"{t}\n{name}", fontsize=8)
                axes[r, c].axis("off")
    plt.tight_layout()
    plt.savefig(os.path.join(save_dir, "predictions.png"))
    plt.close()
