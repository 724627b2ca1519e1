# unet_segmentation/train.py
import random
import time
from pathlib import Path
from typing import List

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm


def dice_coeff(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> float:
    probs = torch.sigmoid(logits)
    preds = (probs > 0.5).float()
    inter = (preds * target).sum(dim=(1, 2, 3))
    union = preds.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return ((2 * inter + eps) / (union + eps)).mean().item()


def _save_row_excel(values: List[float], path: Path):
    """row 0: epoch numbers, row 1: values"""
    df = pd.DataFrame([list(range(1, len(values) + 1)), values])
    df.to_excel(path, header=False, index=False)


def _save_matrix_excel(matrix: List[List[float]], path: Path):
    df = pd.DataFrame(matrix)
    df.index = [f"epoch_{i + 1}" for i in range(len(matrix))]
    df.columns = [f"batch_{j + 1}" for j in range(df.shape[1])]
    df.to_excel(path)


def train_validate(model, train_loader, val_loader, optimizer, criterion, device, epochs: int, save_dir: Path):
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    train_losses, val_losses, val_dice_matrix = [], [], []
    t0 = time.time()

    for epoch in range(1, epochs + 1):
        # ---------------- training ----------------
        model.train()
        running = 0.0
        for imgs, masks, _ in tqdm(train_loader, desc=f"[Train] epoch {epoch}/{epochs}", leave=False):
            imgs, masks = imgs.to(device), masks.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(imgs), masks)
            loss.backward()
            optimizer.step()
            running += loss.item()
        train_losses.append(running / len(train_loader))

        # ---------------- validation --------------
        model.eval()
        running, dice_batches = 0.0, []
        with torch.no_grad():
            for imgs, masks, _ in tqdm(val_loader, desc=f"[Val]   epoch {epoch}/{epochs}", leave=False):
                imgs, masks = imgs.to(device), masks.to(device)
                logits = model(imgs)
                running += criterion(logits, masks).item()
                dice_batches.append(dice_coeff(logits, masks))
        val_losses.append(running / len(val_loader))
        val_dice_matrix.append(dice_batches)

        print(f"Epoch {epoch:03d}: train_loss={train_losses[-1]:.4f}  val_loss={val_losses[-1]:.4f}  "
              f"val_dice={np.mean(dice_batches):.4f}")

    print(f"\nTotal training time: {(time.time() - t0) / 60:.2f} min")

    _save_row_excel(train_losses, save_dir / "train_losses.xlsx")
    _save_row_excel(val_losses, save_dir / "val_losses.xlsx")
    _save_matrix_excel(val_dice_matrix, save_dir / "validation_dice_scores.xlsx")
    plot_losses(train_losses, val_losses, save_dir / "loss_curve.png")


def plot_losses(train_losses, val_losses, out_png: Path):
    plt.figure()
    plt.plot(range(1, len(train_losses) + 1), train_losses, label="train")
    plt.plot(range(1, len(val_losses) + 1), val_losses, label="val")
    plt.xlabel("epoch")
    plt.ylabel("loss")
    plt.legend()
    plt.tight_layout()
    plt.savefig(out_png)
    plt.close()


def test_phase(model, test_loader, criterion, device, save_dir: Path, n_vis: int = 5):
    save_dir = Path(save_dir)
    model.eval()
    dice_batches, samples = [], []
    with torch.no_grad():
        for imgs, masks, names in tqdm(test_loader, desc="[Test]"):
            imgs, masks = imgs.to(device), masks.to(device)
            logits = model(imgs)
            dice_batches.append(dice_coeff(logits, masks))
            preds = (torch.sigmoid(logits) > 0.5).float()
            for i in range(imgs.size(0)):
                samples.append((imgs[i, 0].cpu(), masks[i, 0].cpu(), preds[i, 0].cpu(), names[i]))

    _save_matrix_excel([dice_batches], save_dir / "test_dice_scores.xlsx")
    print(f"Test Dice: {np.mean(dice_batches):.4f}")

    chosen = random.sample(samples, min(n_vis, len(samples)))
    fig, axes = plt.subplots(len(chosen), 3, figsize=(9, 3 * len(chosen)), squeeze=False)
    for row, (img, gt, pred, name) in enumerate(chosen):
        for col, (arr, title) in enumerate([(img, "Input Image"), (gt, "Ground Truth"), (pred, "Prediction")]):
            axes[row, col].imshow(arr, cmap="gray")
            axes[row, col].set_title(f"{title}\n{name}", fontsize=8)
            axes[row, col].axis("off")
    plt.tight_layout()
    plt.savefig(save_dir / "test_predictions.png")
    plt.close()
