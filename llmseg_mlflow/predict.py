"""`llmseg predict`: a logged pipeline's masks for a folder of images, predicted in the sandbox.

The model is LLM-written code, so it runs where the evaluation ran it: bubblewrap, no network, no keys,
the same worker and preprocessing (the pipeline's own Dataset where the evaluator used it), with the
images laid out as that Dataset expects them beside blank masks. Also the pyfunc flavor's loader
(`mlflow.pyfunc.load_model` on these models predicts through here, sandboxed).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from llmseg_mlflow.config import PredictConfig
from llmseg_mlflow.errors import UsageError, bad_input
from llmseg_mlflow.evaluation.evaluator import EvalSettings, EvaluationError, Inference, run_inference
from llmseg_mlflow.evaluation.logged_model import PIPELINE, ModelCard
from llmseg_mlflow.pipeline import sandbox
from llmseg_mlflow.untrusted import code_files

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4}


@dataclass(frozen=True)
class Prediction:
    """Masks (0/1, uint8) by input file name, and how they were made."""

    masks: dict[str, np.ndarray]
    card: ModelCard
    info: dict[str, object]


def run_predict(cfg: PredictConfig, progress: Callable[[str], None] = lambda _: None) -> Path:
    """Write one PNG mask (0/255) per image of cfg.images into cfg.out; returns cfg.out."""
    images = find_images(cfg.images)
    with bad_input(sandbox.SandboxUnavailable):
        if not cfg.unsafe_no_sandbox:
            sandbox.check_available()
    with tempfile.TemporaryDirectory(prefix="llmseg-predict-") as tmp:
        model_dir = download_model(cfg.model, Path(tmp) / "model")
        card = ModelCard.read(model_dir)
        images = _without_masks(images, card, progress)
        arrays = {p.name: _read(p, card) for p in tqdm(images, desc="reading images", unit="image")}
        progress(
            f"predicting {len(arrays)} image(s) with {cfg.model} ({card.dataset}, {card.preprocessing} preprocessing)"
        )
        settings = EvalSettings(
            card.eval_preprocessing,
            sandbox.Limits(cfg.timeout_s, cfg.memory_gb),
            unsafe_no_sandbox=cfg.unsafe_no_sandbox,
        )
        result = predict_arrays(model_dir, card, arrays, Path(tmp) / "work", settings)
    cfg.out.mkdir(parents=True, exist_ok=True)
    foreground = 0
    for name, mask in tqdm(sorted(result.masks.items()), desc="writing masks", unit="mask"):
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(cfg.out / f"{Path(name).stem}.png")
        foreground += int(mask.any())
    how = result.info.get("eval_preprocessing", card.preprocessing)
    progress(
        f"wrote {len(result.masks)} mask(s) to {cfg.out} ({how} preprocessing, {result.info.get('device', 'cpu')}); "
        f"{foreground} with foreground"
    )
    return cfg.out


def find_images(folder: Path) -> list[Path]:
    """The images directly in `folder`, by name; a UsageError when there are none."""
    if not folder.is_dir():
        raise UsageError(f"--images {folder} is not a folder; pass the folder holding the images to segment")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not found:
        raise UsageError(f"no images ({', '.join(IMAGE_EXTS)}) in {folder}; pass the folder holding them")
    stems = [p.stem for p in found]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise UsageError(f"images in {folder} share a name with different extensions ({dupes[:3]}): masks would clash")
    return found


def _without_masks(images: list[Path], card: ModelCard, progress: Callable[[str], None]) -> list[Path]:
    """The images without the masks that sit beside them in the dataset's own layout (`x.png`, `x_mask.png`)."""
    if not card.mask_suffix:
        return images
    ending = f"{card.mask_suffix}.{card.mask_ext}".lower()
    kept = [p for p in images if not p.name.lower().endswith(ending)]
    if len(kept) < len(images):
        progress(f"skipped {len(images) - len(kept)} file(s) named like {card.dataset}'s masks (*{ending})")
    if not kept:
        raise UsageError(f"only masks (*{ending}) in {images[0].parent}; pass the folder holding the images")
    return kept


def download_model(uri: str, dest: Path) -> Path:
    """The model folder behind a `models:/...` URI (registered alias/version or logged model id), or a local one."""
    local = Path(uri)
    if local.is_dir():
        return local
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except MlflowException as exc:
        raise UsageError(
            f"cannot load the model {uri!r}: {str(exc).splitlines()[0]}; use models:/llmseg-<dataset>@champion "
            "(after `llmseg promote`), models:/<model id> or a model folder"
        ) from None


def _read(path: Path, card: ModelCard) -> np.ndarray:
    """An image as the model will see it; a UsageError when its channel count is not the model's."""
    with Image.open(path) as img:
        channels = _CHANNELS.get(img.mode, len(img.getbands()))
        if channels != card.in_channels:
            raise UsageError(
                f"{path.name} has {channels} channel(s) ({img.mode}); the model takes {card.in_channels} "
                f"(it was trained on {card.dataset}): convert the images, e.g. "
                f"{'to grayscale' if card.in_channels == 1 else 'to RGB'}"
            )
        return np.asarray(img.convert("RGB") if img.mode == "P" else img)


def predict_arrays(
    model_dir: Path, card: ModelCard, images: dict[str, np.ndarray], work: Path, settings: EvalSettings
) -> Prediction:
    """Masks for named images with the model folder's code and weights, via the evaluation worker."""
    if card.kind == "nnunet":
        return _predict_nnunet(model_dir, card, images, work)
    if card.kind != "llm":
        raise UsageError(f"predict runs LLM pipelines and nnU-Net baselines; this model is {card.kind!r}")
    if card.volumes:
        raise UsageError(f"this pipeline was trained on slices of volumes ({card.dataset}); predict takes 2D images")
    pipeline = model_dir / PIPELINE
    layout = work / "data"
    names = _lay_out(card, images, layout)
    sizes = {n: images[original].shape[:2] for n, original in names.items()}

    def items(at):
        base = at(layout) / card.images_dir
        return [{"name": n, "image": str(base / n), "size": list(sizes[n])} for n in sorted(names)]

    job = Inference(
        pipeline / "weights", code_files(pipeline / "code"), layout, (card.images_dir, card.masks_dir), items
    )
    hyper = {"input_size": str(card.input_size or ""), "final_activation": card.final_activation}
    try:
        out = run_inference(job, work / "inference", settings, hyper)
    except EvaluationError as exc:
        raise UsageError(f"the model could not predict these images: {exc}") from None
    return Prediction({names[n]: m for n, m in out.predictions.items()}, card, out.info)


def _predict_nnunet(model_dir: Path, card: ModelCard, images: dict[str, np.ndarray], work: Path) -> Prediction:
    """nnU-Net's own predictor on the images: library code, not generated, so it runs in this process."""
    import os

    import torch

    from llmseg_mlflow.evaluation.nnunet_inference import predict as nnunet_predict

    folder = work / "nnunet"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, array in images.items():  # the reader nnU-Net trained with reads PNGs: gray or RGB, as converted
        paths[name] = folder / f"{Path(name).stem}_0000.png"
        Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).save(paths[name])
    fold, checkpoint = card.weights.split("/", 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    unset = [v for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if v not in os.environ]
    os.environ.update({v: str(work / v) for v in unset})  # read when nnunetv2 is imported, unused from a folder
    try:
        masks = nnunet_predict(
            model_dir / PIPELINE / "weights", int(fold.removeprefix("fold_")), paths, device, checkpoint
        )
    finally:
        for var in unset:  # nothing of nnU-Net's is left in this process's environment
            os.environ.pop(var, None)
    return Prediction(masks, card, {"eval_preprocessing": "nnunet", "device": device})


def _lay_out(card: ModelCard, images: dict[str, np.ndarray], root: Path) -> dict[str, str]:
    """Images (in the pipeline's format) and all-zero masks as the pipeline's Dataset finds them; laid-out
    name -> input name."""
    if root.exists():
        shutil.rmtree(root)
    (root / card.images_dir).mkdir(parents=True, exist_ok=True)
    (root / card.masks_dir).mkdir(parents=True, exist_ok=True)
    names = {}
    for original, array in images.items():
        stem = Path(original).stem
        laid = f"{stem}.{card.image_ext}"
        Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).save(
            root / card.images_dir / laid
        )
        Image.fromarray(np.zeros(array.shape[:2], np.uint8)).save(
            root / card.masks_dir / f"{stem}{card.mask_suffix}.{card.mask_ext}"
        )
        names[laid] = original
    return names


class SandboxedSegmenter:
    """What `mlflow.pyfunc.load_model` returns for these models: predict() runs the code in the sandbox."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.card = ModelCard.read(model_dir)

    def predict(self, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        """(N, H, W, C) uint8 images -> (N, H, W) uint8 masks (0/1)."""
        if isinstance(model_input, dict):  # a named tensor input
            model_input = next(iter(model_input.values()))
        batch = np.asarray(model_input)
        if batch.ndim == 3:
            batch = batch[..., None]
        if batch.ndim != 4 or batch.shape[-1] != self.card.in_channels:
            raise ValueError(f"expected images of shape (N, H, W, {self.card.in_channels}), got {batch.shape}")
        images = {f"image_{i:05d}.png": batch[i].astype(np.uint8) for i in range(len(batch))}
        sandbox.check_available()
        with tempfile.TemporaryDirectory(prefix="llmseg-pyfunc-") as tmp:
            settings = EvalSettings(self.card.eval_preprocessing)
            result = predict_arrays(self.model_dir, self.card, images, Path(tmp), settings)
        return np.stack([result.masks[name] for name in sorted(images)])


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> SandboxedSegmenter:
    """The pyfunc flavor's loader: data_path is the model folder's data/pipeline."""
    path = Path(data_path)
    return SandboxedSegmenter(path.parents[1] if path.name == "pipeline" else path)
