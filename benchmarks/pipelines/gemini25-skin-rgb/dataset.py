# unet_segmentation/dataset.py

import os
from PIL import Image
from torch.utils.data import Dataset


class UNetDataset(Dataset):
    """
    Custom Dataset for loading RGB dermoscopy images and their corresponding binary masks.
    Masks are named <image stem><mask_suffix>.png in mask_dir.
    """

    def __init__(self, image_dir, mask_dir, image_filenames, mask_suffix="_segmentation",
                 transform=None, mask_transform=None):
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.image_filenames = image_filenames
        self.mask_suffix = mask_suffix
        self.transform = transform
        self.mask_transform = mask_transform

    def __len__(self):
        return len(self.image_filenames)

    def __getitem__(self, idx):
        img_name = self.image_filenames[idx]
        img_path = os.path.join(self.image_dir, img_name)

        base_name, _ = os.path.splitext(img_name)
        mask_name = f"{base_name}{self.mask_suffix}.png"
        mask_path = os.path.join(self.mask_dir, mask_name)

        image = Image.open(img_path).convert("RGB")
        mask = Image.open(mask_path).convert("L")  # binary mask, single channel

        if self.transform:
            image = self.transform(image)
        if self.mask_transform:
            mask = self.mask_transform(mask)

        # Binarize mask after resizing
        mask = (mask > 0.5).float()

        return image, mask, img_name
