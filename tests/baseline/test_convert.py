"""Pool -> nnU-Net raw format: what nnU-Net is given, and the inputs it must never be given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmseg_mlflow.baseline.convert import convert
from llmseg_mlflow.catalog.datasets import get_dataset
from llmseg_mlflow.catalog.prepare import ensure_prepared
from llmseg_mlflow.errors import UsageError

YAML = """
datasets:
  cv-rgb-jpeg:
    title: convert test
    modality: synthetic
    colour: rgb
    layout: folders
    image_ext: jpg
    heldout_fraction: 0.2
    synthetic: {n: 10, size: 32, seed: 3}
"""


@pytest.fixture
def data(tmp_path, monkeypatch):
    (tmp_path / "datasets.yaml").write_text(YAML)
    monkeypatch.setenv("LLMSEG_DATASETS_FILE", str(tmp_path / "datasets.yaml"))
    return ensure_prepared(get_dataset("cv-rgb-jpeg"), tmp_path / "data")


def test_rgb_jpeg_pool_becomes_png_cases_with_three_channels(data, tmp_path: Path) -> None:
    raw = convert(data, tmp_path / "raw")
    spec = json.loads(raw.dataset_json.read_text())
    assert raw.name == "Dataset001_cvrgbjpeg" and spec["numTraining"] == 8
    assert spec["channel_names"] == {"0": "R", "1": "G", "2": "B"} and spec["file_ending"] == ".png"
    assert spec["labels"] == {"background": 0, "foreground": 1}
    assert sorted(p.name for p in raw.images_tr.iterdir())[0] == "pool_00000_0000.png"
    assert all(Image.open(p).mode == "RGB" for p in raw.images_tr.iterdir())
    assert set(raw.heldout_cases.values()) == {img.name for img, _ in data.heldout_pairs()}
    assert all(raw.heldout_image(case).is_file() for case in raw.heldout_cases)
    gt = np.asarray(Image.open(data.pool_pairs()[0][1])) == 255
    assert np.array_equal(np.asarray(Image.open(raw.labels_tr / "pool_00000.png")), gt.astype(np.uint8))


def test_a_mask_of_another_size_is_refused(data, tmp_path: Path) -> None:
    _, mask = data.pool_pairs()[1]
    Image.new("L", (16, 16)).save(mask)
    with pytest.raises(UsageError, match=rf"{mask.name} is 16x16 but its image is 32x32"):
        convert(data, tmp_path / "raw")


def test_jpeg_mask_edges_become_labels_by_the_one_mask_rule(tmp_path: Path) -> None:
    from llmseg_mlflow.baseline.convert import read_label

    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    mask[4, 4:12], mask[11, 4:12] = 140, 110  # blurred edges, as JPEG leaves them
    path = tmp_path / "m.png"
    Image.fromarray(mask).save(path)
    label = read_label(path, (16, 16))
    assert label[4, 5] == 1 and label[11, 5] == 0 and label[6, 6] == 1 and label.sum() == 8 * 7
    Image.fromarray((mask > 0).astype(np.uint8)).save(path)  # a 0/1 source mask kept as it was
    assert read_label(path, (16, 16), (0, 1)).sum() == 8 * 8
