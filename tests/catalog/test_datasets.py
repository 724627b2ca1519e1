"""The dataset catalog: built-in entries, prompt fills, user YAML and its errors."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from llmseg_mlflow.catalog.datasets import (
    ENV_VAR,
    PROMPT_FILL_NAMES,
    SyntheticSpec,
    UnknownDatasetError,
    get_dataset,
    load_datasets,
)

PAPER = ["bagls", "bolus", "brain-meningioma", "skin-ham10000", "uterine-myoma", "retina-vessels"]
SYNTHETIC = ["synthetic-gray-suffix", "synthetic-gray-folders", "synthetic-rgb-folders"]


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_builtin_catalog_has_the_paper_datasets_and_the_synthetic_ones() -> None:
    catalog = load_datasets()
    assert sorted(catalog) == sorted(PAPER + SYNTHETIC)
    assert all(not catalog[k].is_synthetic for k in PAPER)
    assert all(catalog[k].synthetic == SyntheticSpec(n=100, size=64, seed=0) for k in SYNTHETIC)

    bagls = catalog["bagls"]
    assert (bagls.colour, bagls.layout, bagls.mask_suffix, bagls.subset_size) == ("grayscale", "suffix", "_seg", 5002)
    assert [catalog[k].subset_size for k in PAPER] == [5002, 5002, 999, 5002, None, 73]
    assert catalog["uterine-myoma"].mask_values == (0, 3)
    skin = catalog["skin-ham10000"]
    assert (skin.colour, skin.image_ext, skin.mask_name("ISIC_1")) == ("rgb", "jpg", "ISIC_1_segmentation.png")
    assert [k for k, s in catalog.items() if s.small_foreground] == ["retina-vessels"]
    rgb = [k for k, s in catalog.items() if s.colour == "rgb"]
    assert rgb == ["skin-ham10000", "retina-vessels", "synthetic-rgb-folders"]
    assert len({hash(s) for s in catalog.values()}) == 9  # frozen, usable as dict keys
    assert catalog["synthetic-gray-suffix"].layout == "suffix"
    assert catalog["synthetic-gray-folders"].layout == "folders"
    assert all(s.heldout_fraction == 0.1 for s in catalog.values())
    myoma = catalog["uterine-myoma"]
    assert (myoma.source.format, myoma.source.slice_axis, myoma.source.window, myoma.split_by) == (
        "nifti",
        2,
        (1.0, 99.0),
        "patient",
    )
    assert [k for k, s in catalog.items() if s.source.is_volumes] == ["uterine-myoma"]
    assert catalog["skin-ham10000"].source.image_dirs[0] == "HAM10000_images_part_*"
    assert catalog["brain-meningioma"].mask_name("7") == "7_m.png"


def test_user_entry_overlays_the_source_of_a_builtin(tmp_path: Path) -> None:
    path = _write(tmp_path, "datasets:\n  uterine-myoma:\n    source: {image_dirs: [Volumes], path: ~/UMD}\n")
    myoma = load_datasets(path)["uterine-myoma"]
    assert myoma.source.image_dirs == ("Volumes",) and myoma.source.path == "~/UMD"
    assert myoma.source.is_volumes and myoma.source.window == (1.0, 99.0)  # kept from the built-in entry


def test_prompt_fills_derive_from_the_entry() -> None:
    catalog = load_datasets()
    bagls = catalog["bagls"].prompt_fills()
    assert tuple(bagls) == PROMPT_FILL_NAMES
    assert bagls["colour_word"] == "grayscale" and bagls["mask_word"] == "binary"
    assert bagls["layout_sentence"].startswith("which are located in the same path")
    assert '"number.png" and the masks "number_seg.png"' in bagls["layout_sentence"]
    assert bagls["n_samples"] == "5000"  # the paper wrote "around 5000" for 5002
    assert bagls["foreground_hint"] == ""
    assert "gray scale" in bagls["transform_hint"]

    folders = catalog["synthetic-gray-folders"].prompt_fills()
    assert folders["layout_sentence"] == (
        'which are located in 2 different folders ("images" and "masks", with the same file names)'
    )
    assert folders["n_samples"] == "100"

    retina = catalog["retina-vessels"].prompt_fills()
    assert retina["colour_word"] == "RGB"
    assert retina["foreground_hint"] == "(with small foreground, mostly background)"
    assert catalog["uterine-myoma"].prompt_fills()["n_samples"] == "5500"  # YAML override
    assert catalog["skin-ham10000"].prompt_fills()["extension"] == "jpg (images) and png (masks)"
    assert catalog["brain-meningioma"].prompt_fills()["n_samples"] == "1000"


def test_prompt_fills_cover_every_template_variable() -> None:
    from llmseg_mlflow.pipeline.prompt import load_template

    variables = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", load_template()))
    for spec in load_datasets().values():
        assert variables <= set(spec.prompt_fills(n_total=100)), spec.key


def test_a_dataset_without_a_count_asks_for_one() -> None:
    spec = replace(load_datasets()["bolus"], subset_size=None)
    with pytest.raises(ValueError, match="subset_size or prompt.n_samples"):
        spec.prompt_fills()
    assert spec.prompt_fills(n_total=1234)["n_samples"] == "1200"


def test_user_yaml_overrides_fields_and_adds_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(
        tmp_path,
        """
datasets:
  bagls:
    subset_size: 500
    prompt: {n_samples: 500}
  my-ct:
    title: My CT slices
    modality: CT
    colour: GRAYSCALE
    layout: folders
    image_dir: img
    mask_dir: lbl
    image_ext: .PNG
""",
    )
    catalog = load_datasets(path)
    assert catalog["bagls"].subset_size == 500
    assert catalog["bagls"].layout == "suffix" and catalog["bagls"].mask_suffix == "_seg"  # kept
    assert catalog["bagls"].prompt_fills()["n_samples"] == "500"
    mine = catalog["my-ct"]
    assert (mine.colour, mine.image_ext, mine.mask_values) == ("grayscale", "png", (0, 255))
    assert '("img" and "lbl", with the same file names)' in mine.prompt_fills(n_total=40)["layout_sentence"]
    assert len(catalog) == 10

    monkeypatch.setenv(ENV_VAR, str(path))
    assert get_dataset("my-ct").title == "My CT slices"
    assert get_dataset("bagls").subset_size == 500


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{modality: CT, colour: grayscale, layout: folders}", r"'broken', field 'title': missing"),
        (
            "{title: t, modality: CT, colour: blue, layout: folders}",
            r"field 'colour': got 'blue', allowed values: grayscale, rgb",
        ),
        ("{title: t, modality: CT, colour: rgb, layout: tree}", r"field 'layout'.*allowed values: suffix, folders"),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, subset_size: many}",
            r"field 'subset_size'.*whole number",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, colour_mode: x}",
            r"field 'colour_mode': unknown field",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, mask_values: [255]}",
            r"field 'mask_values'.*\[background, foreground\]",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, mask_ext: jpg, normalize: true}",
            r"field 'mask_ext'.*lossy",
        ),
        ("{title: t, modality: CT, colour: rgb, layout: folders, normalize: 1}", r"field 'normalize'.*true or false"),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, prompt: {colour: x}}",
            r"field 'prompt.colour': unknown fill",
        ),
        ("{title: t, modality: CT, colour: rgb, layout: suffix, mask_suffix: ''}", r"field 'mask_suffix'.*'_seg'"),
        ("{title: t, modality: CT, colour: rgb, layout: folders, mask_dir: images}", r"field 'mask_dir'.*overwrite"),
        ("{title: t, modality: CT, colour: rgb, layout: folders, image_dir: ../up}", r"field 'image_dir'.*folder name"),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, split_by: volume}",
            r"field 'split_by'.*allowed values: patient, slice",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, source: {format: dicom}}",
            r"field 'source.format'.*images, nifti",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, source: {window: [99, 1]}}",
            r"field 'source.window'.*\[1, 99\]",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, source: {group_pattern: '('}}",
            r"'source.group_pattern': not a valid regular",
        ),
        ("{title: t, modality: CT, colour: rgb, layout: folders, source: {dirs: x}}", r"'source.dirs': unknown field"),
        (
            "{title: t, modality: CT, colour: rgb, layout: suffix, source: {format: nifti}}",
            r"field 'layout'.*NIfTI.*folders",
        ),
    ],
)
def test_bad_user_yaml_names_entry_field_and_allowed_values(tmp_path: Path, entry: str, expected: str) -> None:
    path = _write(tmp_path, f"datasets:\n  broken: {entry}\n")
    with pytest.raises(ValueError, match=expected) as info:
        load_datasets(path)
    assert str(path) in str(info.value) and "'broken'" in str(info.value)


def test_user_yaml_without_datasets_mapping_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="top-level 'datasets:' mapping"):
        load_datasets(_write(tmp_path, "- bagls\n"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        load_datasets(tmp_path / "missing.yaml")


def test_unknown_dataset_lists_valid_names_and_how_to_add_one() -> None:
    with pytest.raises(UnknownDatasetError) as info:
        get_dataset("bagl")
    message = str(info.value)
    assert "'bagl'" in message and "bagls" in message and "synthetic-rgb-folders" in message
    assert ENV_VAR in message
