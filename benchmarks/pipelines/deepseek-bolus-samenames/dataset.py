import os
import numpy as np
import torch
from torch.utils.data import Dataset
from PIL import Image


class SegmentationDataset(Dataset):
    """Grayscale frames in image_dir and binary masks with the same file names in mask_dir."""

    def __init__(self, image_dir, mask_dir, transform=None, img_size=128):
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.transform = transform
        self.img_size = img_size
        self.image_files = sorted([f for f in os.listdir(image_dir) if f.endswith('.png')])
        self.mask_files = sorted([f for f in os.listdir(mask_dir) if f.endswith('.png')])
        assert len(self.image_files) == len(self.mask_files), "Number of images and masks must match"

    def __len__(self):
        return len(self.image_files)

    def __getitem__(self, idx):
        img_path = os.path.join(self.image_dir, self.image_files[idx])
        mask_path = os.path.join(self.mask_dir, self.mask_files[idx])

        image = Image.open(img_path).convert('L')
        mask = Image.open(mask_path).convert('L')

        if self.transform:
            image = self.transform(image)

        # Convert mask to binary (0/1); masks are stored as 0 and 1
        mask = mask.resize((self.img_size, self.img_size), Image.NEAREST)
        mask = np.array(mask)
        mask = (mask > 0).astype(np.float32)
        mask = torch.from_numpy(mask).unsqueeze(0)

        return image, mask, self.image_files[idx]
