import os
import time
import random
import torch
import pandas as pd
import matplotlib.pyplot as plt
from tqdm import tqdm


def dice_score(outputs, masks, smooth=1e-6):
    preds = (outputs > 0.5).float()
    intersection = (preds * masks).sum()
    return ((2. * intersection + smooth) / (preds.sum() + masks.sum() + smooth)).item()


def train_model(model, train_loader, val_loader, criterion, optimizer, num_epochs, device, save_path):
    train_losses, val_losses, all_dice = [], [], []
    start_time = time.time()
    for epoch in range(num_epochs):
        model.train()
        running_loss = 0.0
        for images, masks in tqdm(train_loader, desc=f"Epoch {epoch + 1}/{num_epochs} - Training"):
            images, masks = images.to(device), masks.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, masks)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        train_losses.append(running_loss / len(train_loader))

        model.eval()
        val_loss = 0.0
        epoch_dice = []
        with torch.no_grad():
            for images, masks in tqdm(val_loader, desc=f"Epoch {epoch + 1}/{num_epochs} - Validation"):
                images, masks = images.to(device), masks.to(device)
                outputs = model(images)
                val_loss += criterion(outputs, masks).item()
                epoch_dice.append(dice_score(outputs, masks))
        val_losses.append(val_loss / len(val_loader))
        all_dice.append(epoch_dice)
        print(f"Epoch {epoch + 1}: Train Loss = {train_losses[-1]:.4f}, Val Loss = {val_losses[-1]:.4f}")

    print(f"Total training time: {time.time() - start_time:.2f} seconds")

    pd.DataFrame([list(range(1, num_epochs + 1)), train_losses]).to_excel(
        os.path.join(save_path, "train_losses.xlsx"), index=False, header=False)
    pd.DataFrame([list(range(1, num_epochs + 1)), val_losses]).to_excel(
        os.path.join(save_path, "val_losses.xlsx"), index=False, header=False)
    pd.DataFrame(all_dice).to_excel(os.path.join(save_path, "validation_dice_scores.xlsx"), index=False)

    torch.save(model, os.path.join(save_path, "unet_model.pth"))
    torch.save(model.state_dict(), os.path.join(save_path, "unet_model_state_dict.pth"))
    return train_losses, val_losses


def test_model(model, test_loader, device, save_path):
    model.eval()
    dice_scores = []
    with torch.no_grad():
        for images, masks in tqdm(test_loader, desc="Testing"):
            outputs = model(images.to(device))
            dice_scores.append(dice_score(outputs, masks.to(device)))
    pd.DataFrame([dice_scores]).to_excel(os.path.join(save_path, "test_dice_scores.xlsx"), index=False)
    return dice_scores


def plot_losses(train_losses, val_losses, save_path):
    plt.figure()
    plt.plot(train_losses, label="Training Loss")
    plt.plot(val_losses, label="Validation Loss")
    plt.xlabel("Epochs")
    plt.ylabel("Loss")
    plt.legend()
    plt.savefig(os.path.join(save_path, "loss_plot.png"))
    plt.close()


def visualize_predictions(model, test_dataset, device, save_path, file_names):
    model.eval()
    samples = random.sample(range(len(test_dataset)), min(5, len(test_dataset)))
    fig, axes = plt.subplots(len(samples), 3, figsize=(15, 25), squeeze=False)
    for i, idx in enumerate(samples):
        image, mask = test_dataset[idx]
        with torch.no_grad():
            output = model(image.unsqueeze(0).to(device)).squeeze().cpu()
        img = image.permute(1, 2, 0).numpy()
        img = (img - img.min()) / (img.max() - img.min())
        name = file_names[test_dataset.indices[idx]]
        axes[i, 0].imshow(img)
        axes[i, 0].set_title(f"Input Image\n{name}")
        axes[i, 1].imshow(mask.squeeze(), cmap="gray")
        axes[i, 1].set_title(f"Ground Truth\n{name}")
        axes[i, 2].imshow(output > 0.5, cmap="gray")
        axes[i, 2].set_title(f"Prediction\n{name}")
    plt.tight_layout()
    plt.savefig(os.path.join(save_path, "predictions.png"))
    plt.close()
