import os
import numpy as np
import torch
from torch.utils.data import Dataset
from PIL import Image


class GrayscaleBinaryMaskDataset(Dataset):
    def __init__(self, image_dir, mask_dir, mask_suffix='_seg', img_size=128):
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.mask_suffix = mask_suffix
        self.img_size = img_size
        self.image_names = sorted([
            f for f in os.listdir(image_dir)
            if f.endswith('.png') and not f.endswith(mask_suffix + '.png')
        ])

    def __len__(self):
        return len(self.image_names)

    def __getitem__(self, idx):
        image_name = self.image_names[idx]
        mask_name = image_name.replace('.png', self.mask_suffix + '.png')

        image = Image.open(os.path.join(self.image_dir, image_name)).convert('L')
        mask = Image.open(os.path.join(self.mask_dir, mask_name)).convert('L')

        image = image.resize((self.img_size, self.img_size))
        mask = mask.resize((self.img_size, self.img_size), Image.NEAREST)

        image = torch.tensor(np.array(image), dtype=torch.float32).unsqueeze(0) / 255.0
        mask = torch.tensor(np.array(mask) > 0, dtype=torch.float32).unsqueeze(0)

        return image, mask
