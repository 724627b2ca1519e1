import os
from PIL import Image
import torch
from torch.utils.data import Dataset
from torchvision import transforms


class CustomDataset(Dataset):
    def __init__(self, image_folder, mask_folder, image_size=128):
        self.image_folder = image_folder
        self.mask_folder = mask_folder
        # only the .jpg images; the masks are .png files with the same base name
        self.image_files = sorted([f for f in os.listdir(image_folder) if f.endswith('.jpg')])
        self.image_transform = transforms.Compose([
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])
        self.mask_transform = transforms.Compose([
            transforms.Resize((image_size, image_size), interpolation=transforms.InterpolationMode.NEAREST),
            transforms.ToTensor(),
        ])

    def __len__(self):
        return len(self.image_files)

    def __getitem__(self, idx):
        image_name = self.image_files[idx]
        image_path = os.path.join(self.image_folder, image_name)
        mask_path = os.path.join(self.mask_folder, os.path.splitext(image_name)[0] + '.png')

        image = Image.open(image_path).convert('RGB')
        mask = Image.open(mask_path).convert('L')

        image = self.image_transform(image)
        mask = self.mask_transform(mask)
        mask = torch.where(mask > 0.5, 1.0, 0.0)

        return image, mask
