"""Synthetic data generation and dataset preparation (split, manifest, idempotency, source errors)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmseg_mlflow.catalog.datasets import ENV_VAR, DatasetSpec, SyntheticSpec, load_datasets
from llmseg_mlflow.catalog.prepare import (
    DatasetSourceError,
    PreparedDataModifiedError,
    load_prepared,
    prepare_dataset,
)
from llmseg_mlflow.catalog.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def catalog() -> dict[str, DatasetSpec]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENV_VAR, raising=False)
        return load_datasets()


def _small(spec: DatasetSpec, n: int = 20) -> DatasetSpec:
    return spec.model_copy(update={"synthetic": SyntheticSpec(n=n, size=32, seed=0)})


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _stems(folder: Path) -> set[str]:
    return {p.name.split(".")[0].removesuffix("_seg") for p in folder.rglob("*.png")}


# ---- synthetic -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path, catalog) -> None:
    spec = catalog["synthetic-gray-folders"]
    a = _files(generate_synthetic(spec, tmp_path / "a", n=8, size=32, seed=3))
    b = _files(generate_synthetic(spec, tmp_path / "b", n=8, size=32, seed=3))
    c = _files(generate_synthetic(spec, tmp_path / "c", n=8, size=32, seed=4))
    assert a == b
    assert len(a) == 16
    assert a["images/0.png"] != c["images/0.png"]


@pytest.mark.parametrize(
    ("key", "image", "mask", "mode"),
    [
        ("synthetic-gray-suffix", "7.png", "7_seg.png", "L"),
        ("synthetic-gray-folders", "images/7.png", "masks/7.png", "L"),
        ("synthetic-rgb-folders", "images/7.png", "masks/7.png", "RGB"),
    ],
)
def test_synthetic_layouts_modes_and_binary_masks(tmp_path: Path, catalog, key, image, mask, mode) -> None:
    out = generate_synthetic(catalog[key], tmp_path / key, n=10, size=48)
    assert len(list(out.rglob("*.png"))) == 20
    with Image.open(out / image) as img:
        assert img.mode == mode and img.size == (48, 48)
        pixels = np.asarray(img)
    if mode == "RGB":
        assert not np.array_equal(pixels[..., 0], pixels[..., 2])  # really coloured
    with Image.open(out / mask) as m:
        assert m.mode == "L"
        values = set(np.unique(np.asarray(m)).tolist())
    assert values == {0, 255}  # binary, with some foreground and some background


def test_synthetic_sizes_mix_frame_shapes_and_prepare_like_a_real_set(tmp_path: Path, catalog) -> None:
    sizes = ((40, 64), (64, 32))
    spec = catalog["synthetic-gray-suffix"].model_copy(update={"synthetic": SyntheticSpec(n=12, seed=1, sizes=sizes)})
    prepared = prepare_dataset(spec, tmp_path / "data")
    shapes = {}
    for image in sorted(prepared.pool.glob("*.png")):
        with Image.open(image) as img:
            shapes[image.name] = img.size[::-1]
    masks = {k: v for k, v in shapes.items() if k.endswith("_seg.png")}
    assert set(masks.values()) == set(sizes)  # (height, width), both present in the pool
    assert all(shapes[name.replace("_seg", "")] == shape for name, shape in masks.items())
    with pytest.raises(ValueError, match=r"sizes: expected a list of \[height, width\] pairs .* got \[\[8, 64\]\]"):
        SyntheticSpec(sizes=[[8, 64]])  # as YAML gives it


def test_synthetic_task_is_not_a_plain_threshold(tmp_path: Path, catalog) -> None:
    out = generate_synthetic(catalog["synthetic-gray-folders"], tmp_path, n=20, size=64)
    images = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "images").glob("*.png"))])
    masks = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "masks").glob("*.png"))]) > 0
    best = 0.0
    for t in range(0, 256, 4):
        pred = images > t
        dice = 2 * (pred & masks).sum() / (pred.sum() + masks.sum())
        best = max(best, float(dice))
    assert 0.3 < best < 0.95  # learnable signal, yet distractors defeat a global threshold


# ---- prepare ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["synthetic-gray-suffix", "synthetic-gray-folders", "synthetic-rgb-folders"])
def test_prepare_splits_ten_percent_in_the_catalog_layout(tmp_path: Path, catalog, key) -> None:
    spec = _small(catalog[key], n=30)
    prepared = prepare_dataset(spec, tmp_path)
    assert (prepared.n_pool, prepared.n_heldout) == (27, 3)
    assert prepared.root == tmp_path / key
    if spec.layout == "suffix":
        assert prepared.pool_images() == prepared.pool_masks() == tmp_path / key / "pool"
        assert (prepared.heldout / "0.png").exists() != (prepared.pool / "0.png").exists()
    else:
        assert prepared.pool_images() == tmp_path / key / "pool" / "images"
        assert prepared.pool_masks() == tmp_path / key / "pool" / "masks"
    pool, held = _stems(prepared.pool), _stems(prepared.heldout)
    assert len(pool) == 27 and len(held) == 3
    assert not pool & held
    assert pool | held == {str(i) for i in range(30)}
    pairs = prepared.heldout_pairs()
    assert len(pairs) == 3 and all(i.exists() and m.exists() for i, m in pairs)
    assert [i.name.split(".")[0] for i, _ in pairs] == sorted(held, key=int)


def test_manifest_records_every_file_with_its_sha256(tmp_path: Path, catalog) -> None:
    prepared = prepare_dataset(_small(catalog["synthetic-gray-folders"]), tmp_path, seed=5)
    data = json.loads(prepared.manifest.read_text())
    assert data["dataset"] == "synthetic-gray-folders" and data["seed"] == 5
    assert data["layout"] == "folders" and data["created"]
    assert data["counts"] == {"pool": 18, "heldout": 2, "total": 20, "source_pairs": 20}
    on_disk = {p.relative_to(prepared.root).as_posix() for p in prepared.root.rglob("*.png")}
    assert {e["path"] for e in data["files"]} == on_disk
    for entry in data["files"]:
        assert hashlib.sha256((prepared.root / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
        assert entry["split"] == entry["path"].split("/")[0]
    lines = sorted(f"{e['split']}\t{e['path']}\t{e['sha256']}\n" for e in data["files"])
    assert data["digest"] == hashlib.sha256("".join(lines).encode()).hexdigest() == prepared.digest


def test_split_is_fixed_per_dataset_and_seed(tmp_path: Path, catalog) -> None:
    spec = _small(catalog["synthetic-gray-suffix"])
    first = prepare_dataset(spec, tmp_path / "a")
    again = prepare_dataset(spec, tmp_path / "b")
    other = prepare_dataset(spec, tmp_path / "c", seed=1)
    assert _stems(first.heldout) == _stems(again.heldout)
    assert first.digest == again.digest
    assert _stems(other.heldout) != _stems(first.heldout)


def test_reprepare_is_idempotent_and_does_not_rewrite(tmp_path: Path, catalog) -> None:
    spec = _small(catalog["synthetic-rgb-folders"])
    first = prepare_dataset(spec, tmp_path)
    manifest_bytes = first.manifest.read_bytes()
    mtime = first.manifest.stat().st_mtime_ns
    second = prepare_dataset(spec, tmp_path)
    assert second == first
    assert first.manifest.read_bytes() == manifest_bytes and first.manifest.stat().st_mtime_ns == mtime
    assert load_prepared(spec, tmp_path) == first
    assert load_prepared(spec, tmp_path / "elsewhere") is None


def test_tampered_pool_raises_and_force_rebuilds(tmp_path: Path, catalog) -> None:
    spec = _small(catalog["synthetic-gray-folders"])
    prepared = prepare_dataset(spec, tmp_path)
    victim = next(iter(sorted(prepared.pool_masks().glob("*.png"))))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(victim)
    with pytest.raises(PreparedDataModifiedError, match=r"was modified.*changed: pool/masks/.*--force"):
        prepare_dataset(spec, tmp_path)
    rebuilt = prepare_dataset(spec, tmp_path, force=True)
    assert rebuilt.digest == prepared.digest  # same data, same split

    (rebuilt.pool_images() / "stray.png").write_bytes(b"x")
    with pytest.raises(PreparedDataModifiedError, match="added: pool/images/stray.png"):
        prepare_dataset(spec, tmp_path)


def test_reprepare_with_other_settings_refuses(tmp_path: Path, catalog) -> None:
    spec = _small(catalog["synthetic-gray-folders"])
    prepare_dataset(spec, tmp_path)
    with pytest.raises(PreparedDataModifiedError, match=r"seed 0 \(asked for 2\)"):
        prepare_dataset(spec, tmp_path, seed=2)
    with pytest.raises(PreparedDataModifiedError, match="heldout_fraction"):
        prepare_dataset(spec.model_copy(update={"heldout_fraction": 0.2}), tmp_path)


def test_a_normalised_preparation_is_made_again_as_the_source_on_the_same_split(tmp_path: Path, catalog) -> None:
    spec, source = _gray_source(tmp_path, catalog, n=12)
    for mask in (source / "masks").glob("*.png"):
        Image.fromarray((np.asarray(Image.open(mask)) > 0).astype(np.uint8)).save(mask)  # labels 0/1
    spec = spec.model_copy(update={"mask_values": (0, 1)})
    old = prepare_dataset(spec.model_copy(update={"normalize": True}), tmp_path / "out", source=source)
    held = [i.name for i, _ in old.heldout_pairs()]
    said = []
    new = prepare_dataset(spec, tmp_path / "out", progress=said.append)  # source: the recorded one
    assert said and "re-preparing" in said[0] and "normalize True (catalog says False)" in said[0]
    assert [i.name for i, _ in new.heldout_pairs()] == held and not new.normalized
    _, mask = new.pool_pairs()[0]
    assert mask.read_bytes() == (source / "masks" / mask.name).read_bytes()
    assert prepare_dataset(spec, tmp_path / "out").digest == new.digest  # and then reused as it is


def test_subset_and_label_encoding_from_a_source_folder(tmp_path: Path, catalog) -> None:
    # A myoma-like source: masks carry label 3, a .meta file lies beside the images.
    spec = catalog["uterine-myoma"].model_copy(update={"subset_size": 12})
    source = generate_synthetic(spec, tmp_path / "src", n=25, size=32)
    for mask in (source / "masks").glob("*.png"):
        arr = np.asarray(Image.open(mask))
        Image.fromarray(np.where(arr > 0, 3, 0).astype(np.uint8)).save(mask)
    (source / "images" / "0.meta").write_text("not an image")
    for normalize, values in ((True, {0, 255}), (False, {0, 3})):
        prepared = prepare_dataset(
            spec.model_copy(update={"normalize": normalize}), tmp_path / f"out-{normalize}", source=source
        )
        assert (prepared.n_pool, prepared.n_heldout) == (11, 1)
        for mask in prepared.root.rglob("masks/*.png"):
            assert set(np.unique(np.asarray(Image.open(mask))).tolist()) == values
        for _, mask in prepared.pool_pairs():
            assert prepared.read_mask(mask).any()
        assert not list(prepared.root.rglob("*.meta"))


def test_ham_like_layout_with_jpg_images_and_suffixed_masks(tmp_path: Path, catalog) -> None:
    spec = catalog["skin-ham10000"]
    source = generate_synthetic(spec, tmp_path / "src", n=10, size=32)
    assert (source / "images" / "3.jpg").is_file() and (source / "masks" / "3_segmentation.png").is_file()
    prepared = prepare_dataset(spec, tmp_path / "out", source=source)
    image, mask = prepared.heldout_pairs()[0]
    assert image.suffix == ".jpg" and mask.name == image.stem + "_segmentation.png"
    assert prepared.prompt_fills()["n_samples"] == "10"


def _gray_source(tmp_path: Path, catalog, n: int = 6) -> tuple[DatasetSpec, Path]:
    spec = catalog["bolus"].model_copy(update={"subset_size": None})
    return spec, generate_synthetic(spec, tmp_path / "src", n=n, size=32)


def test_unpaired_files_are_named(tmp_path: Path, catalog) -> None:
    spec, source = _gray_source(tmp_path, catalog)
    (source / "masks" / "4.png").unlink()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(source / "masks" / "99.png")
    with pytest.raises(DatasetSourceError) as info:
        prepare_dataset(spec, tmp_path / "out", source=source)
    message = str(info.value)
    assert "1 image(s) without a mask" in message and "4.png" in message
    assert "1 extra mask(s) without an image: 99.png" in message
    assert not (tmp_path / "out" / "bolus").exists()  # nothing half-made left behind


def test_non_binary_and_unreadable_files_are_named_with_values(tmp_path: Path, catalog) -> None:
    spec, source = _gray_source(tmp_path, catalog)
    Image.fromarray(np.array([[0, 128], [255, 7]], np.uint8).repeat(16, 0).repeat(16, 1)).save(
        source / "masks" / "2.png"
    )
    (source / "images" / "5.png").write_bytes(b"not a png")
    with pytest.raises(DatasetSourceError) as info:
        prepare_dataset(spec, tmp_path / "out", source=source)
    message = str(info.value)
    assert "2.png has values [0, 7, 128, 255]" in message
    assert "expected only the values [0, 255]" in message
    assert "unreadable file(s): 5.png" in message


def test_empty_or_missing_source_and_missing_source_argument(tmp_path: Path, catalog) -> None:
    spec, _ = _gray_source(tmp_path, catalog)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DatasetSourceError, match=r"no \.png images found"):
        prepare_dataset(spec, tmp_path / "out", source=tmp_path / "empty")
    with pytest.raises(DatasetSourceError, match="expected .*masks"):
        prepare_dataset(spec, tmp_path / "out", source=tmp_path / "empty" / "images")
    with pytest.raises(DatasetSourceError, match="not synthetic: pass the folder"):
        prepare_dataset(catalog["bagls"], tmp_path / "out")
