"""dataset.py - RGB fundus images (.tif) with binary vessel masks (.png, same file name) in a labels folder."""
import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class RetinaDataset(Dataset):
    IMG_EXTENSIONS = (".tif", ".tiff")

    def __init__(self, image_dir, label_dir, img_size=128):
        self.image_dir = image_dir
        self.label_dir = label_dir
        self.img_size = img_size
        # only the .tif images; ignore anything else in the folder
        self.ids = sorted(os.path.splitext(f)[0] for f in os.listdir(image_dir)
                          if f.lower().endswith(self.IMG_EXTENSIONS))
        if not self.ids:
            raise FileNotFoundError(f"No .tif images found in {image_dir}")

    def __len__(self):
        return len(self.ids)

    def _find_image(self, name):
        for ext in self.IMG_EXTENSIONS:
            path = os.path.join(self.image_dir, name + ext)
            if os.path.exists(path):
                return path
        raise FileNotFoundError(name)

    def __getitem__(self, idx):
        name = self.ids[idx]
        image = Image.open(self._find_image(name)).convert("RGB")
        label = Image.open(os.path.join(self.label_dir, name + ".png")).convert("L")

        image = image.resize((self.img_size, self.img_size), Image.BILINEAR)
        label = label.resize((self.img_size, self.img_size), Image.NEAREST)

        image = np.asarray(image, dtype=np.float32) / 255.0
        image = (image - image.mean(axis=(0, 1))) / (image.std(axis=(0, 1)) + 1e-6)  # per-image standardisation
        label = (np.asarray(label) > 127).astype(np.float32)

        image = torch.from_numpy(image.transpose(2, 0, 1))
        label = torch.from_numpy(label).unsqueeze(0)
        return image, label, name
