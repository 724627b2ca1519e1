"""Pipelines that read NIfTI volumes, evaluated on the held-out volumes' scored slices: their own Dataset
where its items name a volume and a slice, the slice images otherwise; nnU-Net is given the pool's slices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmseg_mlflow.baseline.convert import convert
from llmseg_mlflow.catalog.datasets import load_datasets
from llmseg_mlflow.catalog.prepare import prepare_dataset
from llmseg_mlflow.evaluation.evaluator import EvalSettings, code_files, evaluate_attempt
from llmseg_mlflow.evaluation.record import score_heldout
from llmseg_mlflow.evaluation.worker import slice_item_names
from llmseg_mlflow.pipeline.record import choices
from llmseg_mlflow.pipeline.sandbox import bwrap_path
from tests.catalog import fakes
from tests.evaluation.pipelines import MODEL_PY, SAVE_PY, run_save_script

NIFTI_DATASET = '''\
import os
import nibabel as nib
import numpy as np
import torch
from torch.utils.data import Dataset


class MyomaSlices(Dataset):
    """Axial slices holding label 3, each volume windowed to [0, 1] between its 1st and 99th percentile."""

    def __init__(self, image_dir, label_dir, keep_names={keep_names}):
        self.images, self.names = [], []
        for fname in sorted(os.listdir(image_dir)):
            volume = nib.load(os.path.join(image_dir, fname)).get_fdata().astype(np.float32)
            labels = np.asarray(nib.load(os.path.join(label_dir, fname)).dataobj)
            lo, hi = np.percentile(volume, [1, 99])
            volume = np.clip((volume - lo) / (hi - lo), 0, 1)
            for k in range(volume.shape[2]):
                if (labels[:, :, k] == 3).any():
                    self.images.append(volume[:, :, k])
                    if keep_names:
                        self.names.append(fname.split(".")[0] + f"_slice{{k:03d}}")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        image = torch.from_numpy(self.images[idx])[None]
        return image, torch.zeros_like(image)
'''

NIFTI_MAIN = """\
import os
from torch.utils.data import DataLoader
from dataset import MyomaSlices

DATA_ROOT = r"C:\\\\Users\\\\me\\\\UMD"
IMAGE_DIR = os.path.join(DATA_ROOT, "imagesTr")
LABEL_DIR = os.path.join(DATA_ROOT, "labelsTr")

if __name__ == "__main__":
    loader = DataLoader(MyomaSlices(IMAGE_DIR, LABEL_DIR), batch_size=4)
    for images, masks in loader:
        pass
"""


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("umd")
    source = fakes.volumes(root / "src", 8, image_dir="imagesTr", label_dir="labelsTr", myoma_brightness=3000.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LLMSEG_DATASETS_FILE", raising=False)
        patch.setenv("LLMSEG_HOME", "/nonexistent-llmseg-home")
        spec = load_datasets()["uterine-myoma"]
    spec = spec.model_copy(
        update={"key": "umd-volumes", "normalize": False, "heldout_fraction": 0.3, "prompt_overrides": ()}
    )
    return prepare_dataset(spec, root / "data", source=source)


def _attempt(folder: Path, keep_names: bool) -> Path:
    (folder / "results").mkdir(parents=True)
    files = {
        "dataset.py": NIFTI_DATASET.format(keep_names=keep_names),
        "model.py": MODEL_PY,
        "train.py": "def train_model():\n    pass\n",
        "main.py": NIFTI_MAIN,
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    run_save_script(
        folder,
        SAVE_PY.format(channels=1, sigmoid=False, half=False, weight=10.0, bias=-6.0, file="model.pth", what="m"),
    )
    return folder


@pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap")
@pytest.mark.parametrize("keep_names", [True, False], ids=["own-dataset", "slice-images"])
def test_a_volume_pipeline_is_scored_on_every_heldout_slice(volumes, tmp_path, keep_names) -> None:
    attempt = _attempt(tmp_path / "attempt", keep_names)
    out = evaluate_attempt(attempt, volumes, tmp_path / "eval", EvalSettings("auto"), choices(code_files(attempt)))
    scores = score_heldout(volumes, out.predictions)
    assert sorted(out.predictions) == sorted(img.name for img, _ in volumes.heldout_pairs())
    if keep_names:
        assert out.info["eval_preprocessing"] == "own", out.info.get("eval_fallback_reason")
    else:  # nothing in the Dataset names its items: the windowed slice images instead
        assert out.info["eval_preprocessing"] == "generic"
        assert "no dataset names the volume and slice of its items" in out.info["eval_fallback_reason"]
    assert scores.summary()["heldout_dice_mean"] > 0.8


def test_dataset_items_are_matched_to_slices_through_volumes_and_indices() -> None:
    slices = {(ref, k): f"case_003_{k:03d}.png" for k in (4, 5) for ref in ("case_003", "case_003.nii.gz")}

    class Items:
        def __init__(self, **lists):
            self.__dict__.update(lists)

    by_path = Items(index=[("/h/imagesTr/case_003.nii.gz", "/h/labelsTr/case_003.nii.gz", k) for k in (3, 4, 5)])
    assert slice_item_names(by_path, 3, slices) == [None, "case_003_004.png", "case_003_005.png"]
    by_index = Items(
        files=["/h/imagesTr/case_001.nii.gz", "/h/imagesTr/case_003.nii.gz"], index=[(1, 5), (1, 4), (0, 4)]
    )
    assert slice_item_names(by_index, 3, slices) == ["case_003_005.png", "case_003_004.png", None]
    by_record = Items(records=[{"image": "/h/case_003.nii.gz", "slice": 4}])
    assert slice_item_names(by_record, 1, slices) == ["case_003_004.png"]
    by_name = Items(names=["case_003_slice005", "case_0031_slice004"])  # case_0031 is another volume
    assert slice_item_names(by_name, 2, slices) == ["case_003_005.png", None]
    assert slice_item_names(Items(images=[1.0, 2.0]), 2, slices) is None


def test_nnunet_trains_on_the_pool_volumes_foreground_slices(volumes, tmp_path) -> None:
    raw = convert(volumes, tmp_path / "raw")
    assert json.loads(raw.dataset_json.read_text())["numTraining"] == volumes.n_pool
    assert len(list(raw.images_tr.iterdir())) == len(list(raw.labels_tr.iterdir())) == volumes.n_pool
    assert sorted(raw.heldout_cases.values()) == sorted(img.name for img, _ in volumes.heldout_pairs())
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith("pool_slices")]
