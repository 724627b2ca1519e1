import torch
import torch.nn as nn
from tqdm import tqdm
import time
import random
import pandas as pd
import matplotlib.pyplot as plt
import os


def dice_score(preds, targets, threshold=0.5):
    smooth = 1e-6
    preds = (preds > threshold).float()
    intersection = (preds * targets).sum(dim=(1, 2, 3))
    union = preds.sum(dim=(1, 2, 3)) + targets.sum(dim=(1, 2, 3))
    dice = (2. * intersection + smooth) / (union + smooth)
    return dice.mean()


def save_losses_to_excel(path, losses, file_name):
    # first row: epoch numbers, second row: the loss of that epoch
    df = pd.DataFrame([list(range(1, len(losses) + 1)), losses])
    df.to_excel(os.path.join(path, file_name), index=False, header=False)


def save_dice_to_excel(path, dice_scores, file_name):
    # epochs as rows, batches as columns
    df = pd.DataFrame(dice_scores)
    df.index = [f"Epoch {i + 1}" for i in range(len(dice_scores))]
    df.columns = [f"Batch {j + 1}" for j in range(df.shape[1])]
    df.to_excel(os.path.join(path, file_name))


def train_model(model, train_loader, val_loader, optimizer, criterion, epochs, save_path, device="cuda"):
    train_losses, val_losses = [], []
    dice_scores = []
    start_time = time.time()

    for epoch in range(epochs):
        model.train()
        running_loss = 0.0
        epoch_dice_scores = []

        for images, masks in tqdm(train_loader, desc=f"Training Epoch {epoch + 1}/{epochs}"):
            images, masks = images.to(device), masks.to(device)
            optimizer.zero_grad()

            outputs = model(images)
            loss = criterion(outputs, masks)
            loss.backward()
            optimizer.step()

            running_loss += loss.item()

        avg_train_loss = running_loss / len(train_loader)
        train_losses.append(avg_train_loss)

        # Validation
        model.eval()
        running_val_loss = 0.0
        with torch.no_grad():
            for images, masks in tqdm(val_loader, desc=f"Validating Epoch {epoch + 1}/{epochs}"):
                images, masks = images.to(device), masks.to(device)
                outputs = model(images)
                val_loss = criterion(outputs, masks)
                running_val_loss += val_loss.item()

                batch_dice = dice_score(outputs, masks)
                epoch_dice_scores.append(batch_dice.item())

        avg_val_loss = running_val_loss / len(val_loader)
        val_losses.append(avg_val_loss)
        dice_scores.append(epoch_dice_scores)

        print(f"Epoch {epoch + 1}: train loss {avg_train_loss:.4f}, val loss {avg_val_loss:.4f}, "
              f"val dice {sum(epoch_dice_scores) / len(epoch_dice_scores):.4f}")

    save_dice_to_excel(save_path, dice_scores, "validation_dice_scores.xlsx")

    total_time = time.time() - start_time
    print(f"Total training time: {total_time / 60:.2f} minutes")

    # Save the losses and the model
    save_losses_to_excel(save_path, train_losses, "train_losses.xlsx")
    save_losses_to_excel(save_path, val_losses, "val_losses.xlsx")

    torch.save(model, os.path.join(save_path, "unet_model.pth"))
    torch.save(model.state_dict(), os.path.join(save_path, "unet_model_state.pth"))

    plot_losses(train_losses, val_losses, save_path)


def plot_losses(train_losses, val_losses, save_path):
    plt.figure(figsize=(10, 6))
    plt.plot(range(1, len(train_losses) + 1), train_losses, label='Training Loss')
    plt.plot(range(1, len(val_losses) + 1), val_losses, label='Validation Loss')
    plt.xlabel('Epochs')
    plt.ylabel('Loss')
    plt.title('Training and Validation Losses Over Epochs')
    plt.legend()
    plt.savefig(os.path.join(save_path, "losses_plot.png"))
    plt.close()


def test_model(model, test_loader, save_path, device="cuda"):
    model.eval()
    dice_scores = []
    with torch.no_grad():
        for images, masks in tqdm(test_loader, desc="Testing"):
            images, masks = images.to(device), masks.to(device)
            outputs = model(images)
            batch_dice = dice_score(outputs, masks)
            dice_scores.append(batch_dice.item())

    save_dice_to_excel(save_path, [dice_scores], "test_dice_scores.xlsx")
    print(f"Mean test Dice: {sum(dice_scores) / len(dice_scores):.4f}")


def visualize_predictions(model, test_data, save_path, device="cuda", num_samples=5):
    model.eval()
    indices = random.sample(range(len(test_data)), min(num_samples, len(test_data)))
    plt.figure(figsize=(12, 4 * len(indices)))
    with torch.no_grad():
        for row, idx in enumerate(indices):
            image, mask = test_data[idx]
            output = model(image.unsqueeze(0).to(device))
            pred = (output > 0.5).float()

            plt.subplot(len(indices), 3, row * 3 + 1)
            plt.imshow(image.squeeze(), cmap="gray")
            plt.title(f"Input Image (sample {idx})")
            plt.axis("off")
            plt.subplot(len(indices), 3, row * 3 + 2)
            plt.imshow(mask.squeeze(), cmap="gray")
            plt.title("Ground Truth")
            plt.axis("off")
            plt.subplot(len(indices), 3, row * 3 + 3)
            plt.imshow(pred.cpu().squeeze(), cmap="gray")
            plt.title("Prediction")
            plt.axis("off")

    plt.tight_layout()
    plt.savefig(os.path.join(save_path, "predictions.png"))
    plt.close()
