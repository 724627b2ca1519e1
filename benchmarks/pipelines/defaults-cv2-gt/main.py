import torch
from torch.utils.data import DataLoader, Subset
from sklearn.model_selection import train_test_split
from torchinfo import summary

from dataset import GrayscaleSegDataset
from model import UNet
from train import train_model, test_model, visualize_samples


def main(image_dir=r"C:\Users\mthomas\Projects\bolus_unet\data\imgs",
         mask_dir=r"C:\Users\mthomas\Projects\bolus_unet\data\GT",
         save_dir=r"C:\Users\mthomas\Projects\bolus_unet\outputs",
         epochs=30, batch_size=8, lr=1e-3, img_size=128):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print("Device:", device)

    dataset = GrayscaleSegDataset(image_dir, mask_dir, img_size=(img_size, img_size))
    idx = list(range(len(dataset)))
    train_idx, tmp_idx = train_test_split(idx, test_size=0.2, shuffle=True, random_state=0)
    val_idx, test_idx = train_test_split(tmp_idx, test_size=0.5, shuffle=True, random_state=0)
    print(f"Samples  train: {len(train_idx)}  val: {len(val_idx)}  test: {len(test_idx)}")

    train_loader = DataLoader(Subset(dataset, train_idx), batch_size=batch_size, shuffle=True, num_workers=4)
    val_loader = DataLoader(Subset(dataset, val_idx), batch_size=batch_size, shuffle=False, num_workers=4)
    test_loader = DataLoader(Subset(dataset, test_idx), batch_size=batch_size, shuffle=False, num_workers=4)
    print(f"Loaders  train: {len(train_loader)}  val: {len(val_loader)}  test: {len(test_loader)} batches")

    model = UNet(in_channels=1, out_channels=1).to(device)
    summary(model, input_size=(batch_size, 1, img_size, img_size))

    train_model(model, train_loader, val_loader, device, num_epochs=epochs, lr=lr, save_dir=save_dir)
    test_model(model, test_loader, device, save_dir=save_dir)
    visualize_samples(model, dataset, test_idx, dataset.images, device, save_dir)


if __name__ == "__main__":
    main()
