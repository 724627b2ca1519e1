"""NIfTI sources kept as volumes: the pool is the source's files, the held-out volumes' foreground slices are
what is scored, the sandbox's label volumes are placeholders, and the prompt and knobs describe the volumes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from llmseg_mlflow.catalog.datasets import load_datasets
from llmseg_mlflow.catalog.prepare import PreparedDataModifiedError, prepare_dataset
from llmseg_mlflow.pipeline.execute import knob_values
from tests.catalog import fakes


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def volumes_spec():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LLMSEG_DATASETS_FILE", raising=False)
        patch.setenv("LLMSEG_HOME", "/nonexistent-llmseg-home")
        myoma = load_datasets()["uterine-myoma"]
    # What `datasets add` writes for a user's NIfTI folder: normalize false (the built-in entry slices).
    return myoma.model_copy(
        update={"key": "my-volumes", "normalize": False, "heldout_fraction": 0.3, "prompt_overrides": ()}
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return fakes.volumes(tmp_path_factory.mktemp("src"), 7, image_dir="imagesTr", label_dir="labelsTr")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, volumes_spec, source):
    return prepare_dataset(volumes_spec, tmp_path_factory.mktemp("data"), source=source)


def test_the_pool_holds_the_source_volumes_byte_for_byte_and_whole_volumes_are_held_out(prepared, source) -> None:
    assert prepared.volumes
    pool, held = prepared.pool_volumes(), prepared.heldout_volumes()
    assert len(pool) + len(held) == 7 and held and not {k for k, *_ in pool} & {k for k, *_ in held}
    for key, image, label in pool + held:
        assert image.name == label.name == f"{key}.nii.gz"
        assert image.parent.name == "imagesTr" and label.parent.name == "labelsTr"
        assert _sha(image) == _sha(source / "imagesTr" / image.name)
        assert _sha(label) == _sha(source / "labelsTr" / label.name)
    assert not list(prepared.pool.rglob("*.png"))  # no slices in the pool


def test_the_scored_images_are_the_heldout_volumes_foreground_slices(prepared, source) -> None:
    pairs = prepared.heldout_pairs()
    held = {key for key, *_ in prepared.heldout_volumes()}
    expected = set()
    for key in held:
        labels = np.asanyarray(nib.load(str(source / "labelsTr" / f"{key}.nii.gz")).dataobj)
        expected |= {f"{key}_{k:03d}.png" for k in np.flatnonzero((labels == 3).any(axis=(0, 1)))}
    assert {img.name for img, _ in pairs} == expected and prepared.n_heldout == len(expected)
    image, mask = pairs[0]
    key, k = image.stem.rsplit("_", 1)
    labels = np.asanyarray(nib.load(str(source / "labelsTr" / f"{key}.nii.gz")).dataobj)[:, :, int(k)]
    np.testing.assert_array_equal(prepared.read_mask(mask), labels == 3)
    assert Image.open(image).mode == "L" and Image.open(image).size == (32, 32)


def test_prompt_and_knobs_describe_the_volumes(prepared) -> None:
    fills = prepared.prompt_fills()
    assert fills["extension"] == "nii.gz"
    assert '3D NIfTI volumes (.nii.gz) in 2 different folders ("imagesTr" and "labelsTr"' in fills["layout_sentence"]
    assert "label 3 is the foreground" in fills["layout_sentence"]
    values = knob_values(prepared, Path("/data/pool"), Path("/w/results"), None)
    assert values["image_dir"] == "/data/pool/imagesTr" and values["mask_dir"] == "/data/pool/labelsTr"


def test_the_sandbox_sees_placeholder_labels_on_the_scored_slices_only(prepared) -> None:
    blind = prepared.blind_heldout()
    scored: dict[str, set[int]] = {}
    for img, _ in prepared.heldout_pairs():
        key, k = img.stem.rsplit("_", 1)
        scored.setdefault(key, set()).add(int(k))
    for key, image, label in prepared.heldout_volumes():
        assert _sha(blind / "imagesTr" / image.name) == _sha(image)
        fake = nib.load(str(blind / "labelsTr" / label.name))
        real = nib.load(str(label))
        data = np.asanyarray(fake.dataobj)
        assert fake.shape == real.shape and np.allclose(fake.affine, real.affine)
        assert set(np.unique(data).tolist()) == {0, 3}
        assert set(np.flatnonzero(data.any(axis=(0, 1))).tolist()) == scored[key]
        assert (data == 3).sum() > (np.asanyarray(real.dataobj) == 3).sum()  # whole slices, not the outline


def test_a_changed_heldout_volume_or_scored_slice_is_caught(tmp_path, volumes_spec, source) -> None:
    prepared = prepare_dataset(volumes_spec, tmp_path, source=source)
    _, image, _ = prepared.heldout_volumes()[0]
    image.write_bytes(image.read_bytes() + b"\0")
    with pytest.raises(PreparedDataModifiedError, match="imagesTr"):
        prepared.verify_heldout()
    prepared = prepare_dataset(volumes_spec, tmp_path / "b", source=source)
    slice_png = prepared.heldout_pairs()[0][1]
    Image.new("L", (32, 32), 255).save(slice_png)
    with pytest.raises(PreparedDataModifiedError, match="heldout_slices"):
        prepared.verify_heldout()


def test_switching_to_normalize_reprepares_slices_on_the_same_split(tmp_path, volumes_spec, source) -> None:
    volumes = prepare_dataset(volumes_spec, tmp_path, source=source)
    held = {k for k, *_ in volumes.heldout_volumes()}
    scored = {img.name for img, _ in volumes.heldout_pairs()}
    said: list[str] = []
    sliced = prepare_dataset(volumes_spec.model_copy(update={"normalize": True}), tmp_path, progress=said.append)
    assert any("re-preparing" in s and "normalize" in s for s in said)
    assert not sliced.volumes and list(sliced.pool.rglob("*.png")) and not list(sliced.root.rglob("*.nii.gz"))
    assert {img.name for img, _ in sliced.heldout_pairs()} == scored
    assert {img.stem.rsplit("_", 1)[0] for img, _ in sliced.heldout_pairs()} == held


def test_case_folders_and_label_suffixes_are_described_as_they_are(tmp_path, volumes_spec) -> None:
    same = fakes.volumes(tmp_path / "same", 5, image_dir=".", label_dir=".", label_name="case_{i:03d}_seg.nii.gz")
    prepared = prepare_dataset(volumes_spec, tmp_path / "a", source=same)
    assert prepared.spec.mask_suffix == "_seg" and prepared.spec.image_dir == prepared.spec.mask_dir == "."
    sentence = prepared.prompt_fills()["layout_sentence"]
    assert "in one folder (the dataset folder, " in sentence and '"case.nii.gz" and "case_seg.nii.gz"' in sentence
    names = {p.name for p in prepared.pool.iterdir()}
    assert names and all(p.is_file() for p in prepared.pool.iterdir())
    assert {n.replace("_seg", "") for n in names} == {n for n in names if "_seg" not in n}
    cases = tmp_path / "cases"
    flat = fakes.volumes(tmp_path / "flat", 5)
    for image in sorted((flat / "images").iterdir()):
        folder = cases / image.name.removesuffix(".nii.gz")
        folder.mkdir(parents=True)
        image.rename(folder / "image.nii.gz")
        (flat / "labels" / image.name).rename(folder / "seg.nii.gz")
    prepared = prepare_dataset(volumes_spec, tmp_path / "b", source=cases)
    assert "one folder per case" in prepared.prompt_fills()["layout_sentence"]
    assert knob_values(prepared, Path("/data/pool"), Path("/w"), None)["image_dir"] == "/data/pool"
    assert all((img.parent.parent == prepared.pool) for _, img, _ in prepared.pool_volumes())
