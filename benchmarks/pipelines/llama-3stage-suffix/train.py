import os
import torch
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from tqdm import tqdm


def dice_coefficient(pred, target, eps=1e-6):
    pred = (pred > 0.5).float()
    intersection = (pred * target).sum()
    return ((2. * intersection + eps) / (pred.sum() + target.sum() + eps)).item()


def train(model, device, loader, optimizer, criterion):
    model.train()
    total_loss = 0
    for images, masks in tqdm(loader, desc='Training'):
        images, masks = images.to(device), masks.to(device)
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, masks)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    return total_loss / len(loader)


def validate(model, device, loader, criterion):
    model.eval()
    total_loss = 0
    dice_scores = []
    with torch.no_grad():
        for images, masks in tqdm(loader, desc='Validation'):
            images, masks = images.to(device), masks.to(device)
            outputs = model(images)
            total_loss += criterion(outputs, masks).item()
            dice_scores.append(dice_coefficient(outputs, masks))
    return total_loss / len(loader), dice_scores


def test(model, device, loader, criterion):
    model.eval()
    total_loss = 0
    dice_scores = []
    with torch.no_grad():
        for images, masks in tqdm(loader, desc='Testing'):
            images, masks = images.to(device), masks.to(device)
            outputs = model(images)
            total_loss += criterion(outputs, masks).item()
            dice_scores.append(dice_coefficient(outputs, masks))
    return total_loss / len(loader), dice_scores


def save_losses(train_losses, val_losses, save_path):
    pd.DataFrame([list(range(1, len(train_losses) + 1)), train_losses]).to_excel(
        os.path.join(save_path, 'train_losses.xlsx'), index=False, header=False)
    pd.DataFrame([list(range(1, len(val_losses) + 1)), val_losses]).to_excel(
        os.path.join(save_path, 'val_losses.xlsx'), index=False, header=False)


def save_dice_scores(dice_scores, save_path, filename):
    pd.DataFrame(dice_scores).to_excel(os.path.join(save_path, filename), index=False)


def plot_losses(train_losses, val_losses, save_path):
    plt.figure()
    plt.plot(train_losses, label='Training Loss')
    plt.plot(val_losses, label='Validation Loss')
    plt.legend()
    plt.savefig(os.path.join(save_path, 'losses.png'))
    plt.close()


def visualize_predictions(model, device, dataset, save_path):
    model.eval()
    indices = np.random.choice(len(dataset), min(5, len(dataset)), replace=False)
    fig, axs = plt.subplots(len(indices), 3, figsize=(15, 5 * len(indices)), squeeze=False)
    names = dataset.dataset.image_names
    with torch.no_grad():
        for i, idx in enumerate(indices):
            image, mask = dataset[idx]
            output = model(image.unsqueeze(0).to(device))
            name = names[dataset.indices[idx]]
            axs[i, 0].imshow(image.squeeze(), cmap='gray')
            axs[i, 0].set_title(f'Input Image: {name}')
            axs[i, 1].imshow(mask.squeeze(), cmap='gray')
            axs[i, 1].set_title(f'Ground Truth: {name}')
            axs[i, 2].imshow((output.squeeze().cpu() > 0.5).numpy(), cmap='gray')
            axs[i, 2].set_title(f'Prediction: {name}')
    plt.savefig(os.path.join(save_path, 'predictions.png'))
    plt.close()
