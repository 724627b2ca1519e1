import os
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset


class GrayscaleSegDataset(Dataset):
    """Loads grayscale images from img_dir and masks <name>_mask.png from mask_dir with OpenCV."""

    def __init__(self, img_dir, mask_dir, img_size=(128, 128), mask_suffix="_mask"):
        self.img_dir = img_dir
        self.mask_dir = mask_dir
        self.img_size = img_size
        self.mask_suffix = mask_suffix
        self.images = sorted([f for f in os.listdir(img_dir) if f.endswith(".png")])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        img_name = self.images[index]
        stem = os.path.splitext(img_name)[0]
        img = cv2.imread(os.path.join(self.img_dir, img_name), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(os.path.join(self.mask_dir, stem + self.mask_suffix + ".png"), cv2.IMREAD_GRAYSCALE)

        img = cv2.resize(img, self.img_size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, self.img_size, interpolation=cv2.INTER_NEAREST)

        img = img.astype(np.float32) / 255.0
        mask = (mask > 127).astype(np.float32)

        img = torch.from_numpy(img).unsqueeze(0)     # (1, H, W)
        mask = torch.from_numpy(mask).unsqueeze(0)   # (1, H, W)
        return img, mask
