"""main.py - U-Net vessel segmentation on RGB fundus images.

Usage:
    python main.py --image_dir <images> --label_dir <labels> --save_dir <output> [--epochs 60]
"""
import argparse
import os

import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Subset
from torchinfo import summary

from dataset import RetinaDataset
from model import UNet
from train import fit, test, plot_history, show_predictions


def parse_args():
    parser = argparse.ArgumentParser(description="Train a U-Net on retinal vessel images")
    parser.add_argument("--image_dir", type=str, default=r"C:\Users\amir\Datasets\Retina\images",
                        help="folder with the .tif fundus images")
    parser.add_argument("--label_dir", type=str, default=r"C:\Users\amir\Datasets\Retina\labels",
                        help="folder with the .png vessel masks (same names as the images)")
    parser.add_argument("--save_dir", type=str, default=r"C:\Users\amir\Results\retina_unet",
                        help="where losses, plots and models are written")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--img_size", type=int, default=128)
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def main():
    args = parse_args()
    os.makedirs(args.save_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    dataset = RetinaDataset(args.image_dir, args.label_dir, img_size=args.img_size)
    idx = list(range(len(dataset)))
    train_idx, rest_idx = train_test_split(idx, test_size=0.2, random_state=args.seed, shuffle=True)
    val_idx, test_idx = train_test_split(rest_idx, test_size=0.5, random_state=args.seed, shuffle=True)
    train_set, val_set, test_set = Subset(dataset, train_idx), Subset(dataset, val_idx), Subset(dataset, test_idx)
    print(f"samples: train={len(train_set)} val={len(val_set)} test={len(test_set)}")

    loader_kw = dict(batch_size=args.batch_size, num_workers=args.num_workers)
    train_loader = DataLoader(train_set, shuffle=True, **loader_kw)
    val_loader = DataLoader(val_set, shuffle=False, **loader_kw)
    test_loader = DataLoader(test_set, shuffle=False, **loader_kw)
    print(f"batches: train={len(train_loader)} val={len(val_loader)} test={len(test_loader)}")

    model = UNet(in_channels=3, num_classes=1).to(device)
    summary(model, input_size=(args.batch_size, 3, args.img_size, args.img_size))
    print(f"Trainable params: {sum(p.numel() for p in model.parameters() if p.requires_grad):,}")

    # vessels are a small fraction of the pixels: weight the positives
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0], device=device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)

    history = fit(model, train_loader, val_loader, criterion, optimizer, device, args.epochs, args.save_dir)
    plot_history(history, args.save_dir)
    test(model, test_loader, criterion, device, args.save_dir)
    show_predictions(model, test_set, device, args.save_dir)


if __name__ == "__main__":
    main()
