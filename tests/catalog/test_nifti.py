"""UMD uterine myoma from NIfTI volumes: label-3 slices, windowing, manifest, patient split, geometry checks."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from llmseg_mlflow.catalog.datasets import load_datasets
from llmseg_mlflow.catalog.prepare import DatasetSourceError, prepare_dataset
from llmseg_mlflow.cli import main
from tests.catalog import fakes

MYOMA = {0: range(2, 8), 1: range(3, 9), 2: range(4, 10), 3: range(2, 6), 4: range(5, 11), 5: range(1, 7)}


@pytest.fixture(scope="module")
def myoma():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LLMSEG_DATASETS_FILE", raising=False)
        patch.setenv("LLMSEG_HOME", "/nonexistent-llmseg-home")
        return load_datasets()["uterine-myoma"]


@pytest.fixture(scope="module")
def umd(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("UMD")
    # Case 6 has no myoma at all: its slices are left out, and said so.
    return fakes.volumes(root, 7, myoma=MYOMA)


def _by_volume(manifest: Path) -> dict[str, dict[str, set[int]]]:
    sides: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for entry in json.loads(manifest.read_text())["files"]:
        if entry["role"] == "image":
            sides[entry["split"]][entry["volume"]].add(entry["slice"])
    return sides


def test_only_label_3_slices_become_8bit_pngs_with_volume_and_slice_in_the_manifest(
    tmp_path: Path, myoma, umd, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = nib.load
    monkeypatch.setattr(nib, "load", lambda path, *a, **k: loads.append(Path(path).name) or real_load(path, *a, **k))
    prepared = prepare_dataset(myoma, tmp_path, source=umd)
    monkeypatch.undo()
    assert len(loads) == 14  # 7 image and 7 label volumes, each read once
    n_slices = sum(len(r) for r in MYOMA.values())
    assert prepared.n_pool + prepared.n_heldout == n_slices == 34
    files = json.loads(prepared.manifest.read_text())["files"]
    for entry in (e for e in files if e["role"] == "image"):
        labels = np.asanyarray(nib.load(str(umd / entry["label_source"])).dataobj)[:, :, entry["slice"]]
        image = Image.open(prepared.root / entry["path"])
        mask = np.asarray(Image.open(prepared.root / entry["path"].replace("images/", "masks/")))
        assert image.mode == "L" and mask.dtype == np.uint8
        assert np.array_equal(mask, np.where(labels == 3, 255, 0))  # labels 1 and 2 are background
        assert entry["slice"] in MYOMA[int(entry["volume"][-3:])]
        assert entry["stem"] == f"{entry['volume']}_{entry['slice']:03d}"
    # Windowed per volume between the 1st and 99th percentile: the outlier voxel does not squash the range.
    pixels = np.asarray(Image.open(prepared.pool_pairs()[0][0]))
    assert pixels.max() == 255 and pixels.min() == 0 and 60 < pixels.mean() < 200
    skipped = {s.reason: s.count for s in prepared.summary.skipped}
    assert skipped["slices without label 3"] == 7 * 12 - 34
    assert any(r.startswith("volumes without label 3") for r in skipped)
    assert "voxel axis 2 runs S: axial slices (7 volume(s))" in prepared.summary.notes


def test_heldout_split_is_by_patient_by_default_and_by_slice_on_request(tmp_path: Path, myoma, umd) -> None:
    prepared = prepare_dataset(myoma, tmp_path / "patient", source=umd)
    sides = _by_volume(prepared.manifest)
    assert sides["heldout"] and not set(sides["heldout"]) & set(sides["pool"])  # no patient on both sides
    assert 2 <= prepared.n_heldout <= 6  # 10% of 34, in whole patients
    assert prepared.summary.patients_heldout == len(sides["heldout"])

    paper = prepare_dataset(myoma.model_copy(update={"split_by": "slice"}), tmp_path / "slice", source=umd)
    sides = _by_volume(paper.manifest)
    assert paper.n_heldout == 3  # round(0.1 * 34) slices at random
    assert set(sides["heldout"]) & set(sides["pool"])  # a held-out slice's neighbours train
    assert json.loads(paper.manifest.read_text())["split_by"] == "slice"


def test_orientation_and_shape_mismatches_are_named(tmp_path: Path, myoma) -> None:
    flipped = np.diag([-0.8, 0.8, 4.0, 1.0])
    source = fakes.volumes(tmp_path / "flip", 2, label_affine=flipped)
    with pytest.raises(DatasetSourceError) as info:
        prepare_dataset(myoma, tmp_path / "out", source=source)
    message = str(info.value)
    assert "2 label volume(s) not aligned with the image volume" in message
    assert "case_000.nii.gz is LAS but case_000.nii.gz is RAS" in message

    source = fakes.volumes(tmp_path / "shape", 2, label_shape=(32, 32, 10))
    with pytest.raises(
        DatasetSourceError,
        match=r"label volume\(s\) whose shape differs.*\(32, 32, 10\) vs image case_000.nii.gz \(32, 32, 12\)",
    ):
        prepare_dataset(myoma, tmp_path / "out", source=source)


@pytest.mark.parametrize(
    ("layout", "kwargs"),
    [
        (
            "nnunet",
            {
                "image_dir": "imagesTr",
                "label_dir": "labelsTr",
                "image_name": "umd_{i:03d}_0000.nii.gz",
                "label_name": "umd_{i:03d}.nii.gz",
            },
        ),
        ("one-folder", {"image_dir": ".", "label_dir": ".", "label_name": "case_{i:03d}_seg.nii.gz"}),
    ],
)
def test_common_volume_layouts_pair(tmp_path: Path, myoma, layout: str, kwargs) -> None:
    source = fakes.volumes(tmp_path / layout, 3, **kwargs)
    prepared = prepare_dataset(myoma, tmp_path / "out", source=source)
    volumes = {e["volume"] for e in json.loads(prepared.manifest.read_text())["files"]}
    assert len(volumes) == 3 and not any(v.endswith(("_0000", "_seg")) for v in volumes)


def test_empty_source_says_volumes_were_expected(tmp_path: Path, myoma) -> None:
    (tmp_path / "UMD" / "images").mkdir(parents=True)
    (tmp_path / "UMD" / "labels").mkdir()
    with pytest.raises(
        DatasetSourceError, match=r"no NIfTI volumes \(.nii, .nii.gz\) found in .*UMD.*the folder is empty"
    ):
        prepare_dataset(myoma, tmp_path / "out", source=tmp_path / "UMD")


def test_missing_label_volume_is_named(tmp_path: Path, myoma) -> None:
    source = fakes.volumes(tmp_path / "src", 3)
    (source / "labels" / "case_001.nii.gz").unlink()
    with pytest.raises(DatasetSourceError, match=r"1 image volume\(s\) without a label volume: case_001.nii.gz"):
        prepare_dataset(myoma, tmp_path / "out", source=source)


def test_cli_prepares_uterine_myoma_and_prints_the_summary(tmp_path: Path, umd) -> None:
    result = CliRunner().invoke(
        main,
        ["datasets", "prepare", "uterine-myoma", "--source", str(umd), "--out", str(tmp_path), "--split-by", "slice"],
    )
    assert result.exit_code == 0, result.output
    assert "found 7 volume pair(s) with 34 slice(s) holding the foreground" in result.output
    assert "split by slice (as the paper did)" in result.output
    assert "50 slices without label 3" in result.output
    assert json.loads(result.output.strip().splitlines()[-1])["root"] == str(tmp_path / "uterine-myoma")
