# unet_segmentation/train.py

import os
import random
import torch
import torch.nn as nn
import pandas as pd
import matplotlib.pyplot as plt
from tqdm import tqdm


class DiceLoss(nn.Module):
    def __init__(self, smooth=1.0):
        super(DiceLoss, self).__init__()
        self.smooth = smooth

    def forward(self, logits, targets):
        probs = torch.sigmoid(logits).view(-1)
        targets = targets.view(-1)
        intersection = (probs * targets).sum()
        dice = (2. * intersection + self.smooth) / (probs.sum() + targets.sum() + self.smooth)
        return 1 - dice


def dice_score(logits, targets, smooth=1e-6):
    preds = (torch.sigmoid(logits) > 0.5).float()
    intersection = (preds * targets).sum(dim=(1, 2, 3))
    union = preds.sum(dim=(1, 2, 3)) + targets.sum(dim=(1, 2, 3))
    return ((2. * intersection + smooth) / (union + smooth)).mean().item()


def train_epoch(loader, model, optimizer, loss_fn_bce, loss_fn_dice, device):
    model.train()
    loop = tqdm(loader, desc="Training")
    running_loss = 0.0
    for images, masks, _ in loop:
        images, masks = images.to(device), masks.to(device)
        logits = model(images)
        loss = loss_fn_bce(logits, masks) + loss_fn_dice(logits, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        loop.set_postfix(loss=loss.item())
    return running_loss / len(loader)


def validate_epoch(loader, model, loss_fn_bce, loss_fn_dice, device):
    model.eval()
    loop = tqdm(loader, desc="Validation")
    running_loss = 0.0
    dice_scores = []
    with torch.no_grad():
        for images, masks, _ in loop:
            images, masks = images.to(device), masks.to(device)
            logits = model(images)
            loss = loss_fn_bce(logits, masks) + loss_fn_dice(logits, masks)
            running_loss += loss.item()
            dice = dice_score(logits, masks)
            dice_scores.append(dice)
            loop.set_postfix(loss=loss.item(), dice=dice)
    return running_loss / len(loader), dice_scores


def test_model(loader, model, device):
    model.eval()
    dice_scores = []
    with torch.no_grad():
        for images, masks, _ in tqdm(loader, desc="Testing"):
            images, masks = images.to(device), masks.to(device)
            dice_scores.append(dice_score(model(images), masks))
    return dice_scores


def save_losses(train_losses, val_losses, save_path):
    epochs = list(range(1, len(train_losses) + 1))
    pd.DataFrame([epochs, train_losses], index=["Epoch", "Train Loss"]).to_excel(
        os.path.join(save_path, "train_losses.xlsx"), header=False)
    pd.DataFrame([epochs, val_losses], index=["Epoch", "Validation Loss"]).to_excel(
        os.path.join(save_path, "val_losses.xlsx"), header=False)


def save_dice_scores(dice_scores, save_path, filename):
    df = pd.DataFrame(dice_scores)
    df.index = [f"Epoch {i + 1}" for i in range(len(dice_scores))]
    df.columns = [f"Batch {j + 1}" for j in range(df.shape[1])]
    df.to_excel(os.path.join(save_path, filename))


def plot_and_save_losses(save_path):
    train_df = pd.read_excel(os.path.join(save_path, "train_losses.xlsx"), header=None, index_col=0)
    val_df = pd.read_excel(os.path.join(save_path, "val_losses.xlsx"), header=None, index_col=0)
    epochs = train_df.loc["Epoch"].values
    plt.figure(figsize=(10, 6))
    plt.plot(epochs, train_df.loc["Train Loss"].values, label="Training Loss")
    plt.plot(epochs, val_df.loc["Validation Loss"].values, label="Validation Loss")
    plt.xlabel("Epoch")
    plt.ylabel("Loss")
    plt.title("Training and Validation Loss")
    plt.legend()
    plt.grid(True)
    plt.savefig(os.path.join(save_path, "loss_plot.png"))
    plt.close()


def visualize_predictions(model, dataset, device, save_path, num_samples=5):
    model.eval()
    indices = random.sample(range(len(dataset)), min(num_samples, len(dataset)))
    fig, axes = plt.subplots(len(indices), 3, figsize=(15, 5 * len(indices)), squeeze=False)
    fig.suptitle("Input Image, Ground Truth, Prediction", fontsize=16)
    with torch.no_grad():
        for i, idx in enumerate(indices):
            image, mask, name = dataset[idx]
            pred = (torch.sigmoid(model(image.unsqueeze(0).to(device))) > 0.5).float().cpu().squeeze()
            shown = image.permute(1, 2, 0).numpy() * 0.5 + 0.5  # undo the normalization
            axes[i, 0].imshow(shown.clip(0, 1))
            axes[i, 0].set_title(f"Input Image\n{name}")
            axes[i, 1].imshow(mask.squeeze(), cmap="gray")
            axes[i, 1].set_title(f"Ground Truth\n{name}")
            axes[i, 2].imshow(pred, cmap="gray")
            axes[i, 2].set_title(f"Prediction\n{name}")
            for ax in axes[i]:
                ax.axis("off")
    plt.tight_layout()
    plt.savefig(os.path.join(save_path, "test_predictions.png"))
    plt.close()
