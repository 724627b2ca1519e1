import os
import random
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm import tqdm


class BCEDiceLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits, targets):
        probs = torch.sigmoid(logits)
        inter = (probs * targets).sum(dim=(2, 3))
        dice = (2 * inter + 1) / (probs.sum(dim=(2, 3)) + targets.sum(dim=(2, 3)) + 1)
        return self.bce(logits, targets) + (1 - dice.mean())


def dice_metric(logits, targets, eps=1e-7):
    preds = (torch.sigmoid(logits) > 0.5).float()
    inter = (preds * targets).sum(dim=(1, 2, 3))
    return ((2 * inter + eps) / (preds.sum(dim=(1, 2, 3)) + targets.sum(dim=(1, 2, 3)) + eps)).mean().item()


def train_one_epoch(model, loader, criterion, optimizer, device, epoch, epochs):
    model.train()
    total = 0.0
    pbar = tqdm(loader, desc=f"Epoch {epoch}/{epochs} [train]")
    for images, masks, _ in pbar:
        images, masks = images.to(device), masks.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), masks)
        loss.backward()
        optimizer.step()
        total += loss.item()
        pbar.set_postfix(loss=f"{loss.item():.4f}")
    return total / len(loader)


@torch.no_grad()
def evaluate(model, loader, criterion, device, desc):
    model.eval()
    total, dices = 0.0, []
    for images, masks, _ in tqdm(loader, desc=desc):
        images, masks = images.to(device), masks.to(device)
        logits = model(images)
        total += criterion(logits, masks).item()
        dices.append(dice_metric(logits, masks))
    return total / len(loader), dices


def train_and_validate(model, train_loader, val_loader, criterion, optimizer, config, device):
    train_losses, val_losses, val_dice = [], [], []
    start = time.time()
    for epoch in range(1, config["epochs"] + 1):
        train_losses.append(train_one_epoch(model, train_loader, criterion, optimizer, device, epoch, config["epochs"]))
        val_loss, dices = evaluate(model, val_loader, criterion, device, f"Epoch {epoch}/{config['epochs']} [val]")
        val_losses.append(val_loss)
        val_dice.append(dices)
        print(f"Epoch {epoch}: train_loss={train_losses[-1]:.4f} val_loss={val_loss:.4f} val_dice={np.mean(dices):.4f}")
    print(f"Training finished in {(time.time() - start) / 60:.2f} min")

    save_dir = config["save_dir"]
    pd.DataFrame([list(range(1, len(train_losses) + 1)), train_losses]).to_excel(
        os.path.join(save_dir, "train_losses.xlsx"), index=False, header=False)
    pd.DataFrame([list(range(1, len(val_losses) + 1)), val_losses]).to_excel(
        os.path.join(save_dir, "val_losses.xlsx"), index=False, header=False)
    pd.DataFrame(val_dice, index=[f"epoch_{i}" for i in range(1, len(val_dice) + 1)]).to_excel(
        os.path.join(save_dir, "validation_dice_scores.xlsx"))
    torch.save(model, os.path.join(save_dir, "unet_model.pth"))
    torch.save(model.state_dict(), os.path.join(save_dir, "unet_weights.pth"))
    return train_losses, val_losses


def test(model, loader, criterion, device, save_dir):
    _, dices = evaluate(model, loader, criterion, device, "Testing")
    pd.DataFrame([dices], index=["test"]).to_excel(os.path.join(save_dir, "test_dice_scores.xlsx"))
    print(f"Mean test Dice: {np.mean(dices):.4f}")
    return dices


def plot_losses(train_losses, val_losses, save_dir):
    plt.figure(figsize=(8, 5))
    plt.plot(range(1, len(train_losses) + 1), train_losses, label="Train")
    plt.plot(range(1, len(val_losses) + 1), val_losses, label="Validation")
    plt.xlabel("Epoch")
    plt.ylabel("Loss")
    plt.legend()
    plt.savefig(os.path.join(save_dir, "loss_curve.png"))
    plt.close()


@torch.no_grad()
def visualize(model, dataset, device, save_dir, n=5):
    model.eval()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    idxs = random.sample(range(len(dataset)), min(n, len(dataset)))
    fig, axes = plt.subplots(len(idxs), 3, figsize=(12, 4 * len(idxs)), squeeze=False)
    for row, i in enumerate(idxs):
        image, mask, name = dataset[i]
        pred = torch.sigmoid(model(image.unsqueeze(0).to(device)))[0, 0].cpu().numpy() > 0.5
        shown = np.clip(image.permute(1, 2, 0).numpy() * std + mean, 0, 1)
        for col, (arr, title) in enumerate([(shown, "Input Image"), (mask[0].numpy(), "Ground Truth"), (pred, "Prediction")]):
            axes[row, col].imshow(arr, cmap=None if col == 0 else "gray")
            axes[row, col].set_title(f"{title}\n{name}")
            axes[row, col].axis("off")
    plt.tight_layout()
    plt.savefig(os.path.join(save_dir, "predictions.png"))
    plt.close()
