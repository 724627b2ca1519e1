"""Knob targets: which harness folder a path knob gets, from what its value named and from its siblings."""

from __future__ import annotations

import ast

import pytest

from llmseg_mlflow.pipeline.knob_targets import PathKnob, file_target, folder_names, folder_role, path_text, targets


@pytest.mark.parametrize(
    ("path", "role"),
    [
        (r"C:\Users\x\Brain Meningioma\images", "image_dir"),
        (r"C:\Users\x\Brain Meningioma\Masks", "mask_dir"),
        ("/data/train/images/", "image_dir"),  # trailing separator
        ("data/images/train", "image_dir"),  # a split below the images folder
        ("data/imgs", "image_dir"),
        ("VOC/JPEGImages", "image_dir"),
        ("video/frames", "image_dir"),
        ("Task01/imagesTr", "image_dir"),
        ("Task01/labelsTr", "mask_dir"),
        ("ISIC/ISIC2018_Task1_Training_GroundTruth", "mask_dir"),
        ("data/ground_truth", "mask_dir"),
        ("HAM10000_segmentations_lesion_tschandl", "mask_dir"),
        ("carvana/train_masks", "mask_dir"),
        ("data/seg", "mask_dir"),
        ("coco/annotations", "mask_dir"),
        ("x/GT", "mask_dir"),
        ("./dataset", "data_dir"),
        ("/path/to/data/", "data_dir"),
        ("brain_dataset", "data_dir"),
        ("./Kvasir-SEG", None),  # SEG inside a name is the dataset's name, not its masks
        ("data/train", None),
        ("/content/Brain Meningioma", None),
        ("images_and_masks", None),
        ("{DATA_DIR}", None),
        ("{BASE_DIR}/train", None),
        ("", None),
        (".", None),
    ],
)
def test_folder_role_from_the_last_components(path, role):
    assert folder_role(path) == role


def test_the_dataset_s_own_folder_names_win():
    folders = folder_names({"data_dir": "/p", "image_dir": "/p/Original", "mask_dir": "/p/Ground Truth"})
    assert folders == {"image_dir": "original", "mask_dir": "ground truth"}
    assert folder_role("/kaggle/PNG/Original", folders) == "image_dir"
    assert folder_role("/kaggle/PNG/Original") is None
    assert folder_names({"data_dir": "/p", "image_dir": "/p", "mask_dir": "/p"}) == {}  # suffix layout


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("'data/images'", "data/images"),
        ("os.path.join(BASE_DIR, 'data', 'images')", "{BASE_DIR}/data/images"),
        ("Path(__file__).parent / 'data'", "{__file__}/../data"),
        ("Path('data').joinpath('masks')", "data/masks"),
        ("Path('data/images').resolve()", "data/images"),
        ("f'{ROOT}/images'", "{ROOT}/images"),
        ("os.getenv('DATA', '/data/images')", "/data/images"),
        ("args.data_dir", "{data_dir}"),
        ("sorted(x)", None),
        ("None", None),
    ],
)
def test_path_text(code, text):
    assert path_text(ast.parse(code, mode="eval").body) == text


def test_file_target_keeps_the_file_name_when_its_folder_says_which():
    assert file_target("data/images/1.png") == ("image_dir", "1.png")
    assert file_target(r"C:\data\Masks\1_seg.PNG") == ("mask_dir", "1_seg.PNG")
    assert file_target("sample.png") is None and file_target("data/x/1.png") is None
    assert file_target("data/images/unet.pth") is None and file_target("{D}/images/1.png") is None


def knob(role: str, text: str | None, file: str = "main.py", anchor: bool = False) -> PathKnob:
    return PathKnob(file, role, text, anchor)


def test_siblings_decide_a_data_path_whose_value_says_nothing():
    beside = [knob("data_dir", "/c/brain/train"), knob("mask_dir", "/c/brain/train_masks")]
    assert targets(beside) == [("image_dir", None), ("mask_dir", None)]
    above = [knob("data_dir", "/c/brain"), knob("mask_dir", "/c/brain/masks")]
    assert targets(above)[0] == ("data_dir", None)
    joined = [knob("data_dir", "/c/brain"), knob("mask_dir", "masks")]
    assert targets(joined)[0] == ("data_dir", None)
    unknown = [knob("data_dir", None), knob("mask_dir", None)]  # argparse options without defaults
    assert targets(unknown)[0] == ("data_dir", None)
    with_images = [knob("data_dir", "/c/x"), knob("image_dir", "/c/i"), knob("mask_dir", "/c/m")]
    assert targets(with_images)[0] == ("data_dir", None)
    other_file = [knob("data_dir", "/c/x"), knob("mask_dir", "/c/m", file="dataset.py")]
    assert targets(other_file)[0] == ("data_dir", None)
    anchored = [knob("data_dir", "/c/x", anchor=True), knob("mask_dir", "/c/m")]
    assert targets(anchored)[0] == ("data_dir", None)


def test_value_beats_name_and_save_paths_keep_their_role():
    assert targets(
        [knob("mask_dir", "data/images"), knob("image_dir", "./dataset"), knob("save_dir", "out/masks")]
    ) == [("image_dir", None), ("image_dir", None), ("save_dir", None)]
