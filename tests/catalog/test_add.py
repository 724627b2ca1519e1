"""`llmseg datasets add`: layout detection on each study layout, the YAML entry it writes, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from llmseg_mlflow.catalog.datasets import get_dataset, load_datasets
from llmseg_mlflow.catalog.prepare import load_prepared
from llmseg_mlflow.cli import main
from tests.catalog import fakes


def _add(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["datasets", "add", *args])
    return result.exit_code, result.output


def _build(kind: str, root: Path) -> Path:
    if kind == "bagls":
        return fakes.bagls(root, 10)
    if kind == "same-names":
        return fakes.folders(root, 10)
    if kind == "jpg-m-two-folders":
        return fakes.folders(root, 10, image_ext="jpg", mask_ext="jpg", suffix="_m")
    if kind == "ham":
        return fakes.folders(
            root, 10, image_ext="jpg", suffix="_segmentation", rgb=True, names=[f"ISIC_{i:07d}" for i in range(10)]
        )
    if kind == "ham-parts":
        return fakes.ham10000(root, 10)
    if kind == "retina-nested":
        return fakes.retina(root, 5)
    if kind == "label-1":
        return fakes.folders(root, 10, image_dir="img", mask_dir="gt", foreground=1)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "expected", "n_total"),
    [
        (
            "bagls",
            {"layout": "suffix", "mask_suffix": "_seg", "image_ext": "png", "mask_ext": "png", "colour": "grayscale"},
            10,
        ),
        ("same-names", {"layout": "folders", "image_dir": "images", "mask_dir": "masks", "mask_suffix": ""}, 10),
        (
            "jpg-m-two-folders",
            {"layout": "folders", "mask_suffix": "_m", "image_ext": "jpg", "mask_ext": "jpg", "normalize": False},
            10,
        ),
        ("ham", {"colour": "rgb", "mask_suffix": "_segmentation", "image_ext": "jpg", "mask_ext": "png"}, 10),
        (
            "ham-parts",
            {
                "colour": "rgb",
                "image_dir": "images",
                "mask_dir": "HAM10000_segmentations_lesion_tschandl",
                "mask_suffix": "_segmentation",
                "image_ext": "jpg",
            },
            10,
        ),
        (
            "retina-nested",
            {
                "colour": "rgb",
                "image_dir": "image",
                "mask_dir": "mask",
                "image_ext": "tif",
                "mask_ext": "gif",
                "mask_values": (0, 255),
            },
            10,
        ),
        ("label-1", {"image_dir": "img", "mask_dir": "gt", "mask_values": (0, 1)}, 10),
    ],
)
def test_add_detects_the_layout_writes_the_entry_and_prepares(
    tmp_path: Path, kind: str, expected: dict, n_total: int
) -> None:
    source = _build(kind, tmp_path / "src")
    yaml_file = tmp_path / "mine.yaml"
    code, out = _add(
        "mine", "--source", str(source), "--datasets-file", str(yaml_file), "--out", str(tmp_path / "data")
    )
    assert code == 0, out
    assert out.startswith("detected: found")
    spec = load_datasets(yaml_file)["mine"]
    for field, value in expected.items():
        assert getattr(spec, field) == value, field
    assert spec.source.path == str(source.resolve())
    info = json.loads(out.strip().splitlines()[-1])
    prepared_root = Path(info["root"])
    manifest = json.loads((prepared_root / "manifest.json").read_text())
    assert manifest["counts"]["total"] == n_total
    # The prompt the LLM gets describes the prepared files exactly.
    sentence = spec.prompt_fills(n_total=n_total)["layout_sentence"]
    assert f"prompt layout_sentence: {sentence}" in out
    masks = [
        p
        for p in spec.masks_dir(prepared_root / "pool").iterdir()
        if spec.layout == "folders" or p.stem.endswith(spec.mask_suffix)
    ]
    images = [p for p in spec.images_dir(prepared_root / "pool").iterdir() if p not in masks]
    assert sorted(p.name for p in masks) == sorted(spec.mask_name(p.name.rsplit(".", 1)[0]) for p in images)
    assert all(p.name.endswith("." + spec.image_ext) for p in images)


def test_add_nifti_volumes_asks_for_the_label_then_keeps_the_volumes(tmp_path: Path) -> None:
    source = fakes.volumes(tmp_path / "umd", 3)
    yaml_file = tmp_path / "mine.yaml"
    code, out = _add(
        "my-myoma", "--source", str(source), "--datasets-file", str(yaml_file), "--out", str(tmp_path / "d")
    )
    assert code == 2 and "labels [0, 1, 2, 3]" in out and "--foreground-value" in out
    assert not yaml_file.exists()  # nothing written when detection fails
    code, out = _add(
        "my-myoma",
        "--source",
        str(source),
        "--datasets-file",
        str(yaml_file),
        "--out",
        str(tmp_path / "d"),
        "--foreground-value",
        "3",
    )
    assert code == 0, out
    assert "detected: found 3 NIfTI image volume(s)" in out and "foreground label 3" in out
    spec = load_datasets(yaml_file)["my-myoma"]
    assert spec.source.is_volumes and spec.mask_values == (0, 3) and spec.split_by == "patient"
    assert "found 3 volume pair(s)" in out
    assert "the pool keeps the volumes as they are" in out
    prepared = load_prepared(spec, tmp_path / "d")
    assert prepared.volumes and sorted(p.name for p in prepared.root.glob("*/images/*.nii.gz")) == sorted(
        p.name for p in (source / "images").iterdir()
    )


def test_entry_is_editable_and_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text(
        "# my notes\ndatasets:\n  old-one:\n    title: Old\n    modality: CT\n    colour: rgb\n    layout: folders\n"
    )
    source = fakes.folders(tmp_path / "src", 6)
    code, out = _add(
        "new-one",
        "--source",
        str(source),
        "--datasets-file",
        str(yaml_file),
        "--no-prepare",
        "--title",
        "New data",
        "--modality",
        "endoscopy",
    )
    assert code == 0, out
    assert f"prepare it with: llmseg datasets prepare new-one --datasets-file {yaml_file}" in out
    text = yaml_file.read_text()
    assert text.startswith("# my notes\ndatasets:\n  old-one:")
    assert "# colour_word: grayscale" in text  # the prompt fills are there to edit
    # Uncommenting a fill changes what the prompt says.
    yaml_file.write_text(text.replace("      # foreground_hint: ''", "      foreground_hint: (tiny polyps)"))
    spec = load_datasets(yaml_file)["new-one"]
    assert (spec.title, spec.modality) == ("New data", "endoscopy")
    assert spec.prompt_fills(n_total=6)["foreground_hint"] == "(tiny polyps)"
    assert yaml.safe_load(yaml_file.read_text())["datasets"]["old-one"]["title"] == "Old"

    code, out = _add("new-one", "--source", str(source), "--datasets-file", str(yaml_file), "--no-prepare")
    assert code == 2 and "already has a dataset 'new-one'" in out and "--force" in out
    code, out = _add("new-one", "--source", str(source), "--datasets-file", str(yaml_file), "--no-prepare", "--force")
    assert code == 0, out
    assert yaml_file.read_text().count("  new-one:") == 1 and "old-one" in yaml_file.read_text()


def test_default_file_is_under_llmseg_home_and_the_catalog_reads_it(tmp_path: Path, _isolated_home: Path) -> None:
    source = fakes.folders(tmp_path / "src", 6)
    code, out = _add("mine", "--source", str(source))
    assert code == 0, out
    assert (_isolated_home / "datasets.yaml").is_file()
    assert (_isolated_home / "data" / "mine" / "manifest.json").is_file()
    assert get_dataset("mine").layout == "folders"
    # `prepare` finds it too, and its source path, without --source.
    result = CliRunner().invoke(main, ["datasets", "prepare", "mine"])
    assert result.exit_code == 0 and "mine: 5 pool, 1 held-out" in result.output


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("empty", [], "is empty"),
        ("no-masks", [], "could not find images with masks"),
        ("multi", [], "which one is the foreground? Pass --foreground-value"),
        ("broken", [], "1 unreadable file(s): 2.png"),
        ("same-names", ["--name", "bagls"], "'bagls' is a built-in dataset"),
        ("same-names", ["--name", "My Data"], "not valid"),
    ],
)
def test_add_errors_exit_2_with_what_to_do(tmp_path: Path, setup: str, args: list[str], message: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    if setup == "no-masks":
        for i in range(3):
            fakes.save(fakes.image(np.random.default_rng(i)), source / f"photo{i}.png")
    elif setup == "multi":
        fakes.folders(source, 4)
        fakes.save(np.array([[0, 1], [2, 255]], np.uint8).repeat(16, 0).repeat(16, 1), source / "masks" / "0.png")
    elif setup == "same-names":
        fakes.folders(source, 4)
    elif setup == "broken":
        fakes.folders(source, 4)
        (source / "images" / "2.png").write_bytes(b"not a png")
    name = args[1] if args[:1] == ["--name"] else "mine"
    code, out = _add(
        name, "--source", str(source), "--datasets-file", str(tmp_path / "f.yaml"), "--out", str(tmp_path / "d")
    )
    assert code == 2 and message in out, out
    assert not (tmp_path / "f.yaml").exists()


def test_add_normalize_records_it_and_stores_png_masks(tmp_path: Path) -> None:
    source = _build("jpg-m-two-folders", tmp_path / "src")
    yaml_file = tmp_path / "mine.yaml"
    code, out = _add(
        "mine",
        "--source",
        str(source),
        "--datasets-file",
        str(yaml_file),
        "--out",
        str(tmp_path / "data"),
        "--normalize",
    )
    assert code == 0, out
    spec = load_datasets(yaml_file)["mine"]
    assert spec.normalize and spec.mask_ext == "png"
    assert "normalize: true" in yaml_file.read_text()
    root = Path(json.loads(out.strip().splitlines()[-1])["root"])
    assert {p.suffix for p in spec.masks_dir(root / "pool").iterdir()} == {".png"}
