import os
import time
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tqdm import tqdm


def dice_coef(pred, target, smooth=1.0):
    pred = (pred > 0.5).float()
    inter = (pred * target).sum(dim=(1, 2, 3))
    return ((2.0 * inter + smooth) / (pred.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + smooth)).mean().item()


def soft_dice_loss(pred, target, smooth=1.0):
    inter = (pred * target).sum()
    return 1 - (2.0 * inter + smooth) / (pred.sum() + target.sum() + smooth)


def train_model(model, train_loader, val_loader, device, num_epochs=30, lr=1e-3,
                save_dir=r"C:\Users\mthomas\Projects\bolus_unet\outputs"):
    os.makedirs(save_dir, exist_ok=True)
    bce = nn.BCELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)

    train_losses, val_losses, val_dice = [], [], []
    t0 = time.time()
    for epoch in range(num_epochs):
        model.train()
        epoch_loss = 0.0
        for x, y in tqdm(train_loader, desc=f"Train {epoch + 1}/{num_epochs}"):
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss = bce(out, y) + soft_dice_loss(out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()
        train_losses.append(epoch_loss / len(train_loader))

        model.eval()
        v_loss, dices = 0.0, []
        with torch.no_grad():
            for x, y in tqdm(val_loader, desc=f"Val   {epoch + 1}/{num_epochs}"):
                x, y = x.to(device), y.to(device)
                out = model(x)
                v_loss += (bce(out, y) + soft_dice_loss(out, y)).item()
                dices.append(dice_coef(out, y))
        val_losses.append(v_loss / len(val_loader))
        val_dice.append(dices)
        scheduler.step()
        print(f"[{epoch + 1}/{num_epochs}] train {train_losses[-1]:.4f}  val {val_losses[-1]:.4f}  dice {np.mean(dices):.4f}")

    print(f"Total training time: {time.time() - t0:.1f} s")
    epochs = list(range(1, num_epochs + 1))
    pd.DataFrame([epochs, train_losses]).to_excel(os.path.join(save_dir, "train_losses.xlsx"), header=False, index=False)
    pd.DataFrame([epochs, val_losses]).to_excel(os.path.join(save_dir, "val_losses.xlsx"), header=False, index=False)
    pd.DataFrame(val_dice).to_excel(os.path.join(save_dir, "validation_dice_scores.xlsx"))
    torch.save(model, os.path.join(save_dir, "unet_complete.pth"))
    torch.save(model.state_dict(), os.path.join(save_dir, "unet_state_dict.pth"))
    plot_losses(train_losses, val_losses, save_dir)
    return train_losses, val_losses


def plot_losses(train_losses, val_losses, save_dir):
    plt.figure()
    plt.plot(train_losses, label="train")
    plt.plot(val_losses, label="val")
    plt.xlabel("epoch")
    plt.ylabel("loss")
    plt.legend()
    plt.savefig(os.path.join(save_dir, "losses.png"))
    plt.close()


def test_model(model, test_loader, device, save_dir=r"C:\Users\mthomas\Projects\bolus_unet\outputs"):
    model.eval()
    dices = []
    with torch.no_grad():
        for x, y in tqdm(test_loader, desc="Test"):
            dices.append(dice_coef(model(x.to(device)), y.to(device)))
    pd.DataFrame([dices]).to_excel(os.path.join(save_dir, "test_dice_scores.xlsx"))
    print(f"Test Dice: {np.mean(dices):.4f}")
    return dices


def visualize_samples(model, dataset, indices, names, device, save_dir, n=5):
    model.eval()
    chosen = np.random.choice(len(indices), size=min(n, len(indices)), replace=False)
    fig, ax = plt.subplots(len(chosen), 3, figsize=(10, 3.3 * len(chosen)), squeeze=False)
    with torch.no_grad():
        for r, k in enumerate(chosen):
            img, mask = dataset[indices[k]]
            pred = model(img.unsqueeze(0).to(device)).squeeze().cpu().numpy() > 0.5
            for c, (arr, t) in enumerate([(img.squeeze(), "Input Image"), (mask.squeeze(), "Ground Truth"), (pred, "Prediction")]):
                ax[r, c].imshow(arr, cmap="gray")
                ax[r, c].set_title(f"{t}\n{names[indices[k]]}", fontsize=8)
                ax[r, c].axis("off")
    plt.tight_layout()
    plt.savefig(os.path.join(save_dir, "test_samples.png"))
    plt.close()
