import torch
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import os
import time
import random
from tqdm import tqdm


def dice_coefficient(pred, target, smooth=1e-6):
    pred = torch.sigmoid(pred)
    pred = (pred > 0.5).float()
    intersection = (pred * target).sum(dim=(2, 3))
    union = pred.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    dice = (2. * intersection + smooth) / (union + smooth)
    return dice.mean().item()


def train_model(model, train_loader, val_loader, criterion, optimizer, scheduler, num_epochs, device, save_path):
    train_losses = []
    val_losses = []
    val_dice_scores_all = []

    start_time = time.time()
    best_val_loss = float('inf')

    for epoch in range(num_epochs):
        # Training phase
        model.train()
        running_loss = 0.0
        train_pbar = tqdm(train_loader, desc=f'Epoch {epoch + 1}/{num_epochs} - Training')
        for images, masks, _ in train_pbar:
            images, masks = images.to(device), masks.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, masks)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            train_pbar.set_postfix({'Loss': f'{loss.item():.4f}'})
        epoch_train_loss = running_loss / len(train_loader)
        train_losses.append(epoch_train_loss)

        # Validation phase
        model.eval()
        val_loss = 0.0
        epoch_dice_scores = []
        val_pbar = tqdm(val_loader, desc=f'Epoch {epoch + 1}/{num_epochs} - Validation')
        with torch.no_grad():
            for images, masks, _ in val_pbar:
                images, masks = images.to(device), masks.to(device)
                outputs = model(images)
                loss = criterion(outputs, masks)
                val_loss += loss.item()
                dice = dice_coefficient(outputs, masks)
                epoch_dice_scores.append(dice)
                val_pbar.set_postfix({'Loss': f'{loss.item():.4f}', 'Dice': f'{dice:.4f}'})
        epoch_val_loss = val_loss / len(val_loader)
        val_losses.append(epoch_val_loss)
        val_dice_scores_all.append(epoch_dice_scores)
        scheduler.step(epoch_val_loss)

        print(f'Epoch {epoch + 1}/{num_epochs}: Train Loss: {epoch_train_loss:.4f}, '
              f'Val Loss: {epoch_val_loss:.4f}, Val Dice: {np.mean(epoch_dice_scores):.4f}')

        if epoch_val_loss < best_val_loss:
            best_val_loss = epoch_val_loss
            torch.save(model.state_dict(), os.path.join(save_path, 'best_model.pth'))

    total_time = time.time() - start_time
    print(f'\nTotal training time: {total_time:.2f} seconds ({total_time / 60:.2f} minutes)')

    # Save losses (row 1: epochs, row 2: losses)
    epochs = list(range(1, num_epochs + 1))
    pd.DataFrame([epochs, train_losses]).to_excel(os.path.join(save_path, 'train_losses.xlsx'), index=False, header=False)
    pd.DataFrame([epochs, val_losses]).to_excel(os.path.join(save_path, 'val_losses.xlsx'), index=False, header=False)

    # Save validation dice scores (epochs as rows, batches as columns)
    dice_df = pd.DataFrame(val_dice_scores_all)
    dice_df.index = [f'Epoch_{i + 1}' for i in range(len(val_dice_scores_all))]
    dice_df.columns = [f'Batch_{i + 1}' for i in range(dice_df.shape[1])]
    dice_df.to_excel(os.path.join(save_path, 'validation_dice_scores.xlsx'))

    # Save the complete model and the state dict
    torch.save(model, os.path.join(save_path, 'complete_model.pth'))
    torch.save(model.state_dict(), os.path.join(save_path, 'model_state_dict.pth'))

    return train_losses, val_losses


def test_model(model, dataloader, device, save_path):
    model.eval()
    test_dice_scores = []
    test_results = []
    with torch.no_grad():
        for images, masks, names in tqdm(dataloader, desc='Testing'):
            images, masks = images.to(device), masks.to(device)
            outputs = model(images)
            dice = dice_coefficient(outputs, masks)
            test_dice_scores.append(dice)
            predictions = (torch.sigmoid(outputs) > 0.5).float()
            for i in range(images.size(0)):
                test_results.append({
                    'image': images[i].cpu().numpy().squeeze(),
                    'mask': masks[i].cpu().numpy().squeeze(),
                    'prediction': predictions[i].cpu().numpy().squeeze(),
                    'name': names[i],
                })

    test_df = pd.DataFrame([test_dice_scores])
    test_df.columns = [f'Batch_{i + 1}' for i in range(len(test_dice_scores))]
    test_df.to_excel(os.path.join(save_path, 'test_dice_scores.xlsx'), index=False)
    return test_dice_scores, test_results


def plot_losses(train_losses, val_losses, save_path):
    plt.figure(figsize=(10, 6))
    epochs = range(1, len(train_losses) + 1)
    plt.plot(epochs, train_losses, 'b-', label='Training Loss', linewidth=2)
    plt.plot(epochs, val_losses, 'r-', label='Validation Loss', linewidth=2)
    plt.xlabel('Epoch')
    plt.ylabel('Loss')
    plt.title('Training and Validation Loss')
    plt.legend()
    plt.grid(True, alpha=0.3)
    plt.savefig(os.path.join(save_path, 'loss_plot.png'), dpi=150, bbox_inches='tight')
    plt.close()


def visualize_predictions(test_results, save_path, num_samples=5):
    samples = random.sample(test_results, min(num_samples, len(test_results)))
    fig, axes = plt.subplots(len(samples), 3, figsize=(12, 4 * len(samples)), squeeze=False)
    for i, result in enumerate(samples):
        for j, (key, title) in enumerate([('image', 'Input Image'), ('mask', 'Ground Truth'), ('prediction', 'Prediction')]):
            axes[i, j].imshow(result[key], cmap='gray')
            axes[i, j].set_title(f'{title}\n{result["name"]}')
            axes[i, j].axis('off')
    plt.tight_layout()
    plt.savefig(os.path.join(save_path, 'test_predictions.png'), dpi=150, bbox_inches='tight')
    plt.close()
