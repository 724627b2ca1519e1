"""train.py - training, validation, testing, Excel logging and plots."""
import os
import random
import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm


def batch_dice(logits, target, eps=1e-7):
    pred = (torch.sigmoid(logits) > 0.5).float()
    inter = (pred * target).sum(dim=(1, 2, 3))
    denom = pred.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return ((2 * inter + eps) / (denom + eps)).mean().item()


def run_epoch(model, loader, criterion, device, optimizer=None, desc=""):
    training = optimizer is not None
    model.train(training)
    losses, dices = [], []
    with torch.set_grad_enabled(training):
        for images, labels, _ in tqdm(loader, desc=desc, leave=False):
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss = criterion(logits, labels)
            if training:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            losses.append(loss.item())
            dices.append(batch_dice(logits.detach(), labels))
    return float(np.mean(losses)), dices


def fit(model, train_loader, val_loader, criterion, optimizer, device, epochs, save_dir):
    history = {"train": [], "val": [], "val_dice": []}
    start = time.time()
    for epoch in range(1, epochs + 1):
        train_loss, _ = run_epoch(model, train_loader, criterion, device, optimizer, f"train {epoch}/{epochs}")
        val_loss, val_dice = run_epoch(model, val_loader, criterion, device, None, f"val {epoch}/{epochs}")
        history["train"].append(train_loss)
        history["val"].append(val_loss)
        history["val_dice"].append(val_dice)
        tqdm.write(f"epoch {epoch:3d} | train {train_loss:.4f} | val {val_loss:.4f} | dice {np.mean(val_dice):.4f}")
    print(f"Total training time: {time.time() - start:.1f} s")

    write_row(history["train"], os.path.join(save_dir, "train_losses.xlsx"))
    write_row(history["val"], os.path.join(save_dir, "val_losses.xlsx"))
    write_matrix(history["val_dice"], os.path.join(save_dir, "validation_dice_scores.xlsx"))
    torch.save(model, os.path.join(save_dir, "unet_full.pth"))
    torch.save(model.state_dict(), os.path.join(save_dir, "unet_state_dict.pth"))
    return history


def write_row(values, path):
    pd.DataFrame([range(1, len(values) + 1), values]).to_excel(path, header=False, index=False)


def write_matrix(rows, path):
    df = pd.DataFrame(rows, index=[f"epoch {i + 1}" for i in range(len(rows))])
    df.columns = [f"batch {j + 1}" for j in range(df.shape[1])]
    df.to_excel(path)


def test(model, loader, criterion, device, save_dir):
    _, dices = run_epoch(model, loader, criterion, device, None, "test")
    write_matrix([dices], os.path.join(save_dir, "test_dice_scores.xlsx"))
    print(f"Test Dice: {np.mean(dices):.4f}")
    return dices


def plot_history(history, save_dir):
    plt.figure(figsize=(8, 5))
    epochs = range(1, len(history["train"]) + 1)
    plt.plot(epochs, history["train"], label="train loss")
    plt.plot(epochs, history["val"], label="validation loss")
    plt.xlabel("epoch")
    plt.ylabel("BCE loss")
    plt.legend()
    plt.savefig(os.path.join(save_dir, "loss_curves.png"), dpi=120)
    plt.close()


def show_predictions(model, dataset, device, save_dir, n=5):
    model.eval()
    picks = random.sample(range(len(dataset)), min(n, len(dataset)))
    fig, axes = plt.subplots(len(picks), 3, figsize=(9, 3 * len(picks)), squeeze=False)
    for r, i in enumerate(picks):
        image, label, name = dataset[i]
        with torch.no_grad():
            pred = torch.sigmoid(model(image[None].to(device)))[0, 0].cpu() > 0.5
        rgb = image.permute(1, 2, 0).numpy()
        rgb = (rgb - rgb.min()) / (rgb.max() - rgb.min() + 1e-6)
        for c, (img, title) in enumerate([(rgb, "Input Image"), (label[0], "Ground Truth"), (pred, "Prediction")]):
            axes[r, c].imshow(img, cmap=None if c == 0 else "gray")
            axes[r, c].set_title(f"{title}\n{name}", fontsize=8)
            axes[r, c].axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(save_dir, "predictions.png"), dpi=120)
    plt.close(fig)
