import os
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, Subset
from sklearn.model_selection import train_test_split
from torchsummary import summary

from dataset import CustomDataset
from model import UNet
from train import train_model, test_model, plot_losses, visualize_predictions

if __name__ == "__main__":
    # Paths
    dataset_path = "C:/Users/sarah/Downloads/Kvasir-SEG"
    image_folder = os.path.join(dataset_path, "images")
    mask_folder = os.path.join(dataset_path, "masks")
    save_path = "C:/Users/sarah/Downloads/Kvasir-SEG/results"
    os.makedirs(save_path, exist_ok=True)

    # Hyperparameters
    batch_size = 8
    learning_rate = 1e-4
    num_epochs = 30
    image_size = 128

    # Dataset and split (80/10/10)
    dataset = CustomDataset(image_folder, mask_folder, image_size=image_size)
    indices = list(range(len(dataset)))
    train_indices, temp_indices = train_test_split(indices, test_size=0.2, shuffle=True, random_state=42)
    val_indices, test_indices = train_test_split(temp_indices, test_size=0.5, shuffle=True, random_state=42)

    train_dataset = Subset(dataset, train_indices)
    val_dataset = Subset(dataset, val_indices)
    test_dataset = Subset(dataset, test_indices)
    print(f"Training set: {len(train_dataset)} samples")
    print(f"Validation set: {len(val_dataset)} samples")
    print(f"Test set: {len(test_dataset)} samples")

    train_loader = DataLoader(train_dataset, batch_size=batch_size, shuffle=True, num_workers=4)
    val_loader = DataLoader(val_dataset, batch_size=batch_size, shuffle=False, num_workers=4)
    test_loader = DataLoader(test_dataset, batch_size=batch_size, shuffle=False, num_workers=4)
    print(f"Train loader: {len(train_loader)} batches, Val loader: {len(val_loader)} batches, Test loader: {len(test_loader)} batches")

    # Model
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = UNet(in_channels=3, out_channels=1).to(device)
    summary(model, (3, image_size, image_size), device=str(device))
    print(f"Total trainable parameters: {sum(p.numel() for p in model.parameters() if p.requires_grad)}")

    criterion = nn.BCELoss()
    optimizer = optim.Adam(model.parameters(), lr=learning_rate)

    # Train, plot, test, visualize
    train_losses, val_losses = train_model(model, train_loader, val_loader, criterion, optimizer, num_epochs, device, save_path)
    plot_losses(train_losses, val_losses, save_path)
    test_dice = test_model(model, test_loader, device, save_path)
    print(f"Mean test Dice: {sum(test_dice) / len(test_dice):.4f}")
    visualize_predictions(model, test_dataset, device, save_path, dataset.image_files)
