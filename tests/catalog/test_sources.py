"""Each study dataset's adapter reads a fake download in the public layout and prepares it in the entry's layout."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from llmseg_mlflow.catalog.datasets import load_datasets
from llmseg_mlflow.catalog.prepare import DatasetSourceError, prepare_dataset
from llmseg_mlflow.cli import main
from tests.catalog import fakes


@pytest.fixture(scope="module")
def catalog():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("LLMSEG_DATASETS_FILE", raising=False)
        patch.setenv("LLMSEG_HOME", "/nonexistent-llmseg-home")
        return load_datasets()


def _values(path: Path) -> set[int]:
    return set(np.unique(np.asarray(Image.open(path))).tolist())


def _assert_entry_layout(prepared) -> None:
    """Every prepared file is where, and named as, the entry (and so the prompt) says."""
    spec = prepared.spec
    for images_dir, masks_dir in (
        (prepared.pool_images(), prepared.pool_masks()),
        (prepared.heldout_images(), prepared.heldout_masks()),
    ):
        images = [
            p
            for p in images_dir.iterdir()
            if p.is_file() and p.name.endswith("." + spec.image_ext) and not p.stem.endswith(spec.mask_suffix or "\0")
        ]
        assert images
        for img in images:
            assert (masks_dir / spec.mask_name(img.stem)).is_file(), img
    sentence = spec.prompt_fills(n_total=10)["layout_sentence"]
    assert spec.mask_name("number") in sentence or spec.layout == "folders" and not spec.mask_suffix


def test_bagls_frames_with_seg_masks_and_meta_files(tmp_path: Path, catalog) -> None:
    source = fakes.bagls(tmp_path / "BAGLS" / "training", 14)
    prepared = prepare_dataset(catalog["bagls"].model_copy(update={"subset_size": 10}), tmp_path / "out", source=source)
    assert (prepared.n_pool, prepared.n_heldout) == (9, 1)
    assert sorted(p.name for p in prepared.heldout.iterdir())[1].endswith("_seg.png")
    _assert_entry_layout(prepared)
    skipped = {s.reason: s.count for s in prepared.summary.skipped}
    assert skipped == {"non-image file(s) (.meta), ignored": 14, "pair(s) not in the seeded subset of 10": 4}
    assert prepared.summary.image_modes == (("RGB", 10),)


def test_bagls_folder_holding_training_and_test_merges_them(tmp_path: Path, catalog) -> None:
    fakes.bagls(tmp_path / "BAGLS" / "training", 4)
    fakes.bagls(tmp_path / "BAGLS" / "test", 3, seed=1)
    prepared = prepare_dataset(catalog["bagls"], tmp_path / "out", source=tmp_path / "BAGLS")
    stems = {i.stem for i, _ in prepared.pool_pairs() + prepared.heldout_pairs()}
    assert stems == {f"training-{i}" for i in range(4)} | {f"test-{i}" for i in range(3)}
    assert any("merged the sub-folders test/, training/" in n for n in prepared.summary.notes)


def test_bolus_masks_with_another_suffix_keep_their_names_and_the_prompt_says_so(tmp_path: Path, catalog) -> None:
    source = fakes.folders(tmp_path / "Swallowing", 10, suffix="_mask")
    spec = catalog["bolus"]
    given = prepare_dataset(spec, tmp_path / "a", source=source, mask_suffix="_mask")
    guessed = prepare_dataset(spec, tmp_path / "b", source=source)
    assert given.digest == guessed.digest
    masks = sorted(p.name for p in given.pool_masks().iterdir())
    assert masks == sorted(p.name.replace(".png", "_mask.png") for p in given.pool_images().iterdir())
    assert given.spec.mask_suffix == "_mask" and '"number_mask.png"' in given.prompt_fills()["layout_sentence"]
    assert any("named <name>_mask.<ext> in the source" in n for n in guessed.summary.notes)
    _assert_entry_layout(given)


def test_bolus_normalised_copies_are_renamed_to_the_entry(tmp_path: Path, catalog) -> None:
    source = fakes.folders(tmp_path / "Swallowing", 10, suffix="_mask")
    given = prepare_dataset(catalog["bolus"].model_copy(update={"normalize": True}), tmp_path / "a", source=source)
    assert sorted(p.name for p in given.pool_masks().iterdir()) == sorted(p.name for p in given.pool_images().iterdir())
    _assert_entry_layout(given)


def test_brain_jpeg_masks_stay_jpeg_under_their_names_and_read_by_the_one_rule(tmp_path: Path, catalog) -> None:
    source = fakes.folders(
        tmp_path / "Brain Meningioma", 8, mask_dir="Masks", image_ext="jpg", mask_ext="jpg", suffix="_m"
    )
    prepared = prepare_dataset(catalog["brain-meningioma"], tmp_path / "out", source=source)
    image, mask = prepared.heldout_pairs()[0]
    assert (image.name, mask.name) == (f"{image.stem}.jpg", f"{image.stem}_m.jpg")
    assert mask.read_bytes() == (source / "Masks" / mask.name).read_bytes()  # what code for this dataset expects
    assert len(_values(mask)) > 2  # JPEG noise is still in the file ...
    truth = prepared.read_mask(mask)  # ... and thresholded at half the foreground value when read
    np.testing.assert_array_equal(truth, np.asarray(Image.open(mask).convert("L")) > 127)
    assert (
        '"number_m.jpg"' in prepared.prompt_fills()["layout_sentence"] and prepared.prompt_fills()["extension"] == "jpg"
    )
    _assert_entry_layout(prepared)


def test_brain_jpeg_masks_normalised_on_request(tmp_path: Path, catalog) -> None:
    source = fakes.folders(
        tmp_path / "Brain Meningioma", 8, mask_dir="Masks", image_ext="jpg", mask_ext="jpg", suffix="_m"
    )
    prepared = prepare_dataset(
        catalog["brain-meningioma"].model_copy(update={"normalize": True}), tmp_path / "out", source=source
    )
    image, mask = prepared.heldout_pairs()[0]
    assert (image.name, mask.name) == (f"{image.stem}.png", f"{image.stem}_m.png")
    assert Image.open(image).format == "PNG" and _values(mask) == {0, 255}  # JPEG noise thresholded away
    assert any("thresholded from lossy .jpg" in n for n in prepared.summary.notes)
    _assert_entry_layout(prepared)


def test_ham10000_part_folders_merge_and_kaggle_duplicates_count_once(tmp_path: Path, catalog) -> None:
    source = fakes.ham10000(tmp_path / "HAM10000", 10, duplicate_part=True)
    prepared = prepare_dataset(catalog["skin-ham10000"], tmp_path / "out", source=source)
    assert prepared.n_pool + prepared.n_heldout == 10
    image, mask = prepared.pool_pairs()[0]
    assert image.suffix == ".jpg" and mask.name == f"{image.stem}_segmentation.png"
    original = source / "HAM10000_images_part_1" / image.name
    assert image.read_bytes() == original.read_bytes()  # the JPEG as it was, not re-encoded
    assert image.stat().st_ino != original.stat().st_ino and image.stat().st_nlink == 1  # a copy: the source is safe
    skipped = {s.reason: s.count for s in prepared.summary.skipped}
    assert skipped["duplicate copies (same name and size in another folder), ignored"] == 5
    assert skipped["file(s) beside the image folders (.csv), not read"] == 1
    assert prepared.summary.image_modes == (("RGB", 10),)
    _assert_entry_layout(prepared)


def test_retina_train_and_test_folders_with_tif_images_and_gif_masks(tmp_path: Path, catalog) -> None:
    source = fakes.retina(tmp_path / "retina", 4)
    for normalize, ext in ((False, "tif"), (True, "png")):
        prepared = prepare_dataset(
            catalog["retina-vessels"].model_copy(update={"normalize": normalize}),
            tmp_path / f"out-{ext}",
            source=source,
        )
        names = sorted(p.name for p in prepared.pool_images().iterdir()) + sorted(
            p.name for p in prepared.heldout_images().iterdir()
        )
        assert sorted(names) == sorted([f"{s}-{i:02d}.{ext}" for s in ("train", "test") for i in range(1, 5)])
        for _, mask in prepared.pool_pairs():
            assert _values(mask) == ({0, 255} if normalize else {0, 1})  # GIF palette indices 0/1 ...
            assert prepared.read_mask(mask).any()  # ... read as foreground either way
        assert prepared.prompt_fills()["foreground_hint"] == "(with small foreground, mostly background)"
        _assert_entry_layout(prepared)


def test_paper_subset_sizes_apply_with_a_seed(tmp_path: Path, catalog) -> None:
    sizes = {
        k: catalog[k].subset_size
        for k in ("bagls", "bolus", "skin-ham10000", "brain-meningioma", "retina-vessels", "uterine-myoma")
    }
    assert sizes == {
        "bagls": 5002,
        "bolus": 5002,
        "skin-ham10000": 5002,
        "brain-meningioma": 999,
        "retina-vessels": 73,
        "uterine-myoma": None,
    }
    source = fakes.folders(tmp_path / "src", 30, rgb=True)
    spec = catalog["retina-vessels"].model_copy(update={"subset_size": 20})
    a = prepare_dataset(spec, tmp_path / "a", source=source, seed=1)
    b = prepare_dataset(spec, tmp_path / "b", source=source, seed=1)
    c = prepare_dataset(spec, tmp_path / "c", source=source, seed=2)
    assert (a.n_pool, a.n_heldout) == (18, 2) and a.digest == b.digest != c.digest
    chosen = {e["stem"] for e in json.loads(a.manifest.read_text())["files"]}
    assert len(chosen) == 20


def test_size_mismatch_and_colour_masks_are_named(tmp_path: Path, catalog) -> None:
    source = fakes.folders(tmp_path / "src", 6)
    fakes.save(np.zeros((16, 16), np.uint8), source / "masks" / "2.png")
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[..., 0] = 255
    fakes.save(colour, source / "masks" / "4.png")
    with pytest.raises(DatasetSourceError) as info:
        prepare_dataset(catalog["bolus"].model_copy(update={"subset_size": None}), tmp_path / "out", source=source)
    message = str(info.value)
    assert "1 mask(s) of a different size than the image: 2.png (16, 16) vs image (32, 32)" in message
    assert "1 colour mask(s)" in message and "4.png" in message and "--skip-invalid" in message


def test_skip_invalid_leaves_out_bad_pairs_refills_the_subset_and_says_so(tmp_path: Path, catalog) -> None:
    source = fakes.folders(tmp_path / "src", 12)
    (source / "images" / "3.png").write_bytes(b"broken")
    fakes.save(np.full((32, 32), 7, np.uint8), source / "masks" / "5.png")
    spec = catalog["bolus"].model_copy(update={"subset_size": 10})
    prepared = prepare_dataset(spec, tmp_path / "out", source=source, skip_invalid=True)
    assert prepared.n_pool + prepared.n_heldout == 10  # refilled from the pairs left over
    stems = {i.stem for i, _ in prepared.pool_pairs() + prepared.heldout_pairs()}
    assert not stems & {"3", "5"}
    reasons = {s.reason: s for s in prepared.summary.skipped}
    unreadable = reasons["invalid, skipped (--skip-invalid): unreadable file(s)"]
    assert unreadable.count == 1 and unreadable.examples[0].startswith("3.png")
    assert reasons["pair(s) not in the seeded subset of 10"].count == 0
    lines = "\n".join(prepared.summary.lines())
    assert "5.png has values [7]" in lines


def test_ambiguous_mask_folders_ask_which_one(tmp_path: Path, catalog) -> None:
    source = fakes.folders(tmp_path / "src", 3, mask_dir="labels")
    fakes.folders(source, 3, mask_dir="gt")
    with pytest.raises(DatasetSourceError, match=r"several folders .* could hold the masks: labels, gt.*mask_dirs"):
        prepare_dataset(catalog["bolus"], tmp_path / "out", source=source)


def test_memory_does_not_grow_with_the_number_of_images(tmp_path: Path, catalog) -> None:
    spec = catalog["retina-vessels"].model_copy(update={"subset_size": None})

    def peak(n: int) -> int:
        source = fakes.folders(tmp_path / f"src{n}", n, rgb=True, seed=n)
        for path in (source / "images").iterdir():  # 128x128 RGB noise: ~48 KiB per image, decoded and encoded
            fakes.save(np.repeat(np.repeat(np.asarray(Image.open(path)), 4, 0), 4, 1), path)
        for path in (source / "masks").iterdir():
            fakes.save(np.repeat(np.repeat(np.asarray(Image.open(path)), 4, 0), 4, 1), path)
        tracemalloc.start()
        prepare_dataset(spec, tmp_path / f"out{n}", source=source)
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    peak(4)  # first use imports codecs: not part of the comparison
    growth_per_pair = (peak(64) - peak(16)) / 48
    # ~3 KiB: the manifest's lines. Keeping each decoded 128x128 mask alone would add 16 KiB.
    assert growth_per_pair < 8 * 1024


def test_patients_from_file_names_never_straddle_the_split(tmp_path: Path, catalog) -> None:
    names = [f"p{p}_frame{f}" for p in range(8) for f in range(5)]
    source = fakes.folders(tmp_path / "src", 0, names=names)
    spec = catalog["bolus"].model_copy(update={"subset_size": None})
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"group_pattern": r"^(p\d+)_"})})
    prepared = prepare_dataset(spec, tmp_path / "out", source=source)
    patients = {
        side: {i.stem.split("_")[0] for i, _ in pairs}
        for side, pairs in (("pool", prepared.pool_pairs()), ("heldout", prepared.heldout_pairs()))
    }
    assert patients["heldout"] and not patients["pool"] & patients["heldout"]
    assert prepared.n_heldout % 5 == 0 and prepared.summary.patients_heldout == len(patients["heldout"])


def test_cli_prepare_fails_with_exit_2_naming_files_then_skips_them_on_request(tmp_path: Path) -> None:
    source = fakes.folders(tmp_path / "Swallowing", 12, suffix="_mask")
    fakes.save(np.zeros((20, 20), np.uint8), source / "masks" / "7_mask.png")
    args = [
        "datasets",
        "prepare",
        "bolus",
        "--source",
        str(source),
        "--out",
        str(tmp_path / "out"),
        "--mask-suffix",
        "_mask",
    ]
    failed = CliRunner().invoke(main, args)
    assert failed.exit_code == 2
    assert "7_mask.png (20, 20) vs image (32, 32)" in failed.output and "--skip-invalid" in failed.output
    result = CliRunner().invoke(main, args + ["--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "found 12 image/mask pair(s); prepared 11: 10 pool, 1 held-out" in result.output
    assert (
        "1 invalid, skipped (--skip-invalid): mask(s) of a different size than the image (e.g. 7_mask.png"
        in result.output
    )
    assert json.loads(result.output.strip().splitlines()[-1])["root"] == str(tmp_path / "out" / "bolus")
