"""The dataset catalog: built-in entries, prompt fills, user YAML and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmseg_mlflow.catalog.datasets import (
    ENV_VAR,
    PROMPT_FILL_NAMES,
    DatasetSpec,
    SyntheticSpec,
    UnknownDatasetError,
    get_dataset,
    load_datasets,
    parse_user_entry,
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
    spec = load_datasets()["bolus"].model_copy(update={"subset_size": None})
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
        (
            "{modality: CT, colour: grayscale, layout: folders}",
            r"'broken' has 1 problem\(s\):\n  title: missing \(required\)",
        ),
        (
            "{title: t, modality: CT, colour: blue, layout: folders}",
            r"colour: got 'blue', allowed values: grayscale or rgb",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: tree}",
            r"layout: got 'tree', allowed values: suffix or folders",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, subset_size: many}",
            r"subset_size: expected a whole number, got 'many'",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, colour_mode: x}",
            r"colour_mode: unknown field \(did you mean colour\?\)",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, mask_values: [255]}",
            r"mask_values: expected \[background, foreground\].*got \[255\]",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, mask_ext: jpg, normalize: true}",
            r"mask_ext: 'jpg' is lossy.*set mask_ext: png",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, normalize: 1}",
            r"normalize: expected true or false, got 1",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, prompt: {colour: x}}",
            r"prompt.colour: unknown field \(did you mean colour_word\?\)",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: suffix, mask_suffix: ''}",
            r"mask_suffix: the 'suffix' layout needs a suffix such as '_seg'",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, mask_dir: images}",
            r"mask_dir: equals image_dir: masks would overwrite images",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, image_dir: ../up}",
            r"image_dir: expected a folder name relative to the dataset.*got '../up'",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, split_by: volume}",
            r"split_by: got 'volume', allowed values: patient or slice",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, source: {format: dicom}}",
            r"source.format: got 'dicom', allowed values: images or nifti",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, source: {window: [99, 1]}}",
            r"source.window: expected \[low, high\] percentiles such as \[1, 99\], got \[99, 1\]",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, source: {group_pattern: '('}}",
            r"source.group_pattern: not a valid regular expression",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: folders, source: {dirs: x}}",
            r"source.dirs: unknown field \(did you mean mask_dirs\?\)",
        ),
        (
            "{title: t, modality: CT, colour: rgb, layout: suffix, source: {format: nifti}}",
            r"layout: NIfTI sources are prepared in folders.*use layout: folders",
        ),
    ],
)
def test_bad_user_yaml_names_entry_field_and_allowed_values(tmp_path: Path, entry: str, expected: str) -> None:
    path = _write(tmp_path, f"datasets:\n  broken: {entry}\n")
    with pytest.raises(ValueError, match=expected) as info:
        load_datasets(path)
    assert str(info.value).startswith(f"{path}: dataset entry 'broken' has 1 problem(s):\n")


_BASE = "title: t, modality: CT, colour: rgb, layout: folders"


def test_a_wrong_type_names_the_field_what_was_expected_and_what_was_given(tmp_path: Path) -> None:
    path = _write(tmp_path, f"datasets:\n  broken: {{{_BASE}, heldout_fraction: yes, synthetic: {{size: '32'}}}}\n")
    with pytest.raises(ValueError) as info:
        load_datasets(path)
    assert str(info.value) == (
        f"{path}: dataset entry 'broken' has 2 problem(s):\n"
        "  heldout_fraction: expected a number, got True\n"
        "  synthetic.size: expected a whole number, got '32'"
    )


def test_an_unknown_field_is_refused_with_a_suggestion_and_the_allowed_names(tmp_path: Path) -> None:
    path = _write(tmp_path, f"datasets:\n  broken: {{{_BASE}, heldout_fracton: 0.2}}\n")
    with pytest.raises(ValueError, match=r"heldout_fracton: unknown field \(did you mean heldout_fraction\?\)") as e:
        load_datasets(path)
    assert "allowed: " in str(e.value) and "title, modality" in str(e.value)


def test_every_problem_of_an_entry_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "datasets:\n  broken: {title: t, colour: blue, layout: folders, subset_size: many}\n")
    with pytest.raises(ValueError) as info:
        load_datasets(path)
    assert str(info.value) == (
        f"{path}: dataset entry 'broken' has 3 problem(s):\n"
        "  modality: missing (required)\n"
        "  colour: got 'blue', allowed values: grayscale or rgb\n"
        "  subset_size: expected a whole number, got 'many'"
    )


def test_rules_across_fields_are_all_reported_each_with_the_field_to_change() -> None:
    entry = {"title": "t", "modality": "CT", "colour": "rgb", "layout": "suffix", "mask_suffix": ""}
    with pytest.raises(ValueError) as info:
        parse_user_entry("mine", {**entry, "normalize": True, "mask_ext": ".JPG", "source": {"format": "nifti"}})
    lines = str(info.value).splitlines()
    assert lines[0] == "dataset entry 'mine' has 3 problem(s):"
    assert [line.split(":")[0] for line in lines[1:]] == ["  mask_suffix", "  mask_ext", "  layout"]
    assert "'jpg' is lossy" in lines[2] and "normalize: false to keep the source's files" in lines[2]


def test_yaml_shorthands_and_defaults() -> None:
    spec = parse_user_entry(
        "mine",
        {
            "title": "t",
            "modality": "CT",
            "colour": "RGB",
            "layout": "suffix",
            "notes": None,  # an empty YAML value is the default
            "synthetic": True,
            "source": {"image_dirs": "imgs", "window": [2, 98]},
            "prompt": {"n_samples": 5000, "mask_word": "binary"},
        },
    )
    assert (spec.colour, spec.mask_suffix, spec.notes, spec.synthetic) == ("rgb", "_seg", "", SyntheticSpec())
    assert spec.source.image_dirs == ("imgs",) and spec.source.window == (2.0, 98.0)
    assert spec.prompt_overrides == (("mask_word", "binary"), ("n_samples", "5000"))
    assert spec.prompt_fills()["n_samples"] == "5000"
    # Built in code, as the layout detection does: the same checks, and copies with changed fields.
    probe = DatasetSpec(key="probe", title="", modality="", colour="grayscale", layout="folders")
    assert probe.model_copy(update={"normalize": True}).normalize and hash(probe) == hash(probe.model_copy())
    with pytest.raises(ValueError, match="mask_values"):
        DatasetSpec(key="probe", title="", modality="", colour="rgb", layout="folders", mask_values=(1, 1))


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
