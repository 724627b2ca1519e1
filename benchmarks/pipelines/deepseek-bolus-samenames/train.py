import os
import random
import torch
import torch.nn as nn
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from tqdm import tqdm


class DiceBCELoss(nn.Module):
    def __init__(self, weight=None, size_average=True):
        super(DiceBCELoss, self).__init__()

    def forward(self, inputs, targets, smooth=1):
        bce = nn.functional.binary_cross_entropy_with_logits(inputs, targets)
        inputs = torch.sigmoid(inputs)
        inputs = inputs.view(-1)
        targets = targets.view(-1)
        intersection = (inputs * targets).sum()
        dice_loss = 1 - (2. * intersection + smooth) / (inputs.sum() + targets.sum() + smooth)
        return bce + dice_loss


def dice_score(pred, target, smooth=1e-6):
    pred = (torch.sigmoid(pred) > 0.5).float()
    intersection = (pred * target).sum()
    return ((2. * intersection + smooth) / (pred.sum() + target.sum() + smooth)).item()


def train_epoch(model, loader, criterion, optimizer, device):
    model.train()
    total_loss = 0.0
    for images, masks, _ in tqdm(loader, desc="Training"):
        images, masks = images.to(device), masks.to(device)
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, masks)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    return total_loss / len(loader)


def validate_epoch(model, loader, criterion, device):
    model.eval()
    total_loss = 0.0
    dice_scores = []
    with torch.no_grad():
        for images, masks, _ in tqdm(loader, desc="Validation"):
            images, masks = images.to(device), masks.to(device)
            outputs = model(images)
            total_loss += criterion(outputs, masks).item()
            dice_scores.append(dice_score(outputs, masks))
    return total_loss / len(loader), dice_scores


def test_model(model, loader, device):
    model.eval()
    dice_scores = []
    with torch.no_grad():
        for images, masks, _ in tqdm(loader, desc="Testing"):
            images, masks = images.to(device), masks.to(device)
            outputs = model(images)
            dice_scores.append(dice_score(outputs, masks))
    return dice_scores


def save_losses(train_losses, val_losses, save_path):
    epochs = list(range(1, len(train_losses) + 1))
    pd.DataFrame([epochs, train_losses]).to_excel(os.path.join(save_path, 'train_losses.xlsx'), index=False, header=False)
    pd.DataFrame([epochs, val_losses]).to_excel(os.path.join(save_path, 'val_losses.xlsx'), index=False, header=False)


def plot_losses(train_losses, val_losses, save_path):
    plt.figure(figsize=(10, 5))
    plt.plot(train_losses, label='Train Loss')
    plt.plot(val_losses, label='Validation Loss')
    plt.xlabel('Epoch')
    plt.ylabel('Loss')
    plt.legend()
    plt.savefig(os.path.join(save_path, 'loss_plot.png'))
    plt.close()


def visualize_results(model, dataset, device, save_path, num_samples=5):
    model.eval()
    indices = random.sample(range(len(dataset)), min(num_samples, len(dataset)))
    fig, axes = plt.subplots(len(indices), 3, figsize=(15, 5 * len(indices)), squeeze=False)
    with torch.no_grad():
        for i, idx in enumerate(indices):
            image, mask, name = dataset[idx]
            pred = torch.sigmoid(model(image.unsqueeze(0).to(device)))
            pred = (pred > 0.5).float().cpu().squeeze().numpy()
            axes[i, 0].imshow(image.squeeze(), cmap='gray')
            axes[i, 0].set_title(f'Input Image\n{name}')
            axes[i, 1].imshow(mask.squeeze(), cmap='gray')
            axes[i, 1].set_title(f'Ground Truth\n{name}')
            axes[i, 2].imshow(pred, cmap='gray')
            axes[i, 2].set_title(f'Prediction\n{name}')
            for ax in axes[i]:
                ax.axis('off')
    plt.tight_layout()
    plt.savefig(os.path.join(save_path, 'predictions.png'))
    plt.close()
