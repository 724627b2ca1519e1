"""Predict the held-out images with a trained nnU-Net (nnUNetPredictor, the best checkpoint)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint_best.pth"  # highest EMA pseudo-Dice on nnU-Net's validation fold


def predict(
    model_folder: Path,
    fold: int | str,
    images: Mapping[str, Path],
    device: str,
    checkpoint: str = CHECKPOINT,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, np.ndarray]:
    """One uint8 0/1 mask per image (key kept), at the image's resolution, as nnU-Net predicts it.

    The images are read by the reader nnU-Net trained with (plans' image_reader_writer), so the held-out
    set sees exactly the training-time reading and normalisation; sliding window, Gaussian weighting and
    mirroring are nnU-Net's defaults.
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        device=torch.device(device), verbose=False, verbose_preprocessing=False, allow_tqdm=False
    )
    predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=(fold,), checkpoint_name=checkpoint)
    reader = predictor.plans_manager.image_reader_writer_class()
    out: dict[str, np.ndarray] = {}
    for key, path in images.items():
        image, props = reader.read_images([str(path)])
        seg = predictor.predict_single_npy_array(image, props)
        out[key] = (np.asarray(seg)[0] > 0).astype(np.uint8)  # (1, H, W) label map -> H x W, label 1 only
        tick()
    return out
