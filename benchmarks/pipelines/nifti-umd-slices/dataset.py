"""dataset.py - 2D axial slices of uterine MRI volumes (NIfTI) with myoma masks (label 3)."""
import os

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

MYOMA_LABEL = 3


def list_cases(image_dir, label_dir):
    """Pairs (image volume, label volume) with the same file name; only .nii / .nii.gz files."""
    cases = []
    for fname in sorted(os.listdir(image_dir)):
        if not (fname.endswith(".nii.gz") or fname.endswith(".nii")):
            continue
        label_path = os.path.join(label_dir, fname)
        if os.path.exists(label_path):
            cases.append((os.path.join(image_dir, fname), label_path))
    return cases


class MyomaSliceDataset(Dataset):
    """Loads every volume once, keeps the axial slices that contain myoma, normalises and resizes them."""

    def __init__(self, cases, img_size=128, only_foreground=True):
        self.img_size = img_size
        self.images, self.masks, self.names = [], [], []
        for image_path, label_path in cases:
            volume = nib.load(image_path).get_fdata().astype(np.float32)
            labels = nib.load(label_path).get_fdata().astype(np.int16)
            lo, hi = np.percentile(volume, [1, 99])
            volume = np.clip((volume - lo) / (hi - lo + 1e-8), 0, 1).astype(np.float32)
            case = os.path.basename(image_path).split(".")[0]
            for k in range(volume.shape[2]):  # axial slices
                mask = (labels[:, :, k] == MYOMA_LABEL).astype(np.float32)
                if only_foreground and mask.sum() == 0:
                    continue
                self.images.append(volume[:, :, k])
                self.masks.append(mask)
                self.names.append(f"{case}_slice{k:03d}")
        print(f"Loaded {len(cases)} volumes -> {len(self.images)} slices with myoma")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        image = torch.from_numpy(self.images[idx])[None, None]
        mask = torch.from_numpy(self.masks[idx])[None, None]
        image = F.interpolate(image, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask, size=(self.img_size, self.img_size), mode="nearest")[0]
        return image, mask, self.names[idx]
