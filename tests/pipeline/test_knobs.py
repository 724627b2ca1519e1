"""Knob locator: finds paths/epochs/hyperparameters wherever an LLM put them and overrides them in place."""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import textwrap
import types

import pytest

from llmseg_mlflow.pipeline.knobs import Knob, Override, apply_overrides, locate, read_hyperparameters

POOL = {
    "data_dir": "/x/pool",
    "image_dir": "/x/pool/images",
    "mask_dir": "/x/pool/masks",
    "save_dir": "/x/out",
    "epochs": 2,
}


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def override(code: str, values: dict[str, object] | None = None, file: str = "main.py"):
    """Override one file; check the result compiles and that only the overridden values changed."""
    new_files, changes = apply_overrides({file: code}, POOL if values is None else values)
    new = new_files[file]
    compile(new, file, "exec")
    assert_only_values_changed(code, new, changes)
    return new, changes


def assert_only_values_changed(old: str, new: str, changes: list[Override]) -> None:
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    for number, (before, after) in enumerate(zip(old_lines, new_lines), start=1):
        for old_value, new_value in dict.fromkeys((c.old, c.new) for c in changes if c.lineno == number):
            if old_value != "None":  # "None": an argparse option that had no default
                assert old_value in before, (old_value, before)
                before = before.replace(old_value, new_value, 1)
        if before != after and "add_argument" in old:  # an option may also get required=False and a default
            before = before.replace("required=True", "required=False")
            rest = before[len(os.path.commonprefix([before, after])) :]
            inserted = after[len(before) - len(rest) : len(after) - len(rest)]
            assert after.endswith(rest) and re.fullmatch(r"(, default=('[^']*'|\d+))?(, nargs='\?')?", inserted)
        else:
            assert before == after, f"line {number} changed beyond the overridden values"


def run(code: str) -> dict:
    """Execute generated code as an imported module (dataclasses look their module up)."""
    module = types.ModuleType("generated_code")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, "main.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def function_from(code: str, name: str):
    """One function of a generated file, run on its own (its module imports generated siblings)."""
    node = next(n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {"argparse": argparse}
    exec(compile(ast.get_source_segment(code, node), "main.py", "exec"), namespace)
    return namespace[name]


def roles(knobs: list[Knob]) -> list[tuple[str, str, str, bool]]:
    return [(k.role, k.where, k.name, k.derived) for k in knobs]


# --- the seven places an LLM puts a knob ------------------------------------------------------------


def test_module_constants_including_annotated_ones_are_overridden():
    code = src("""
        import os
        DATA_DIR = "/path/to/dataset"
        IMAGE_DIR: str = "/path/to/dataset/images"
        MASK_DIR = '/path/to/dataset/masks'  # masks share the image names
        SAVE_PATH = "results"
        NUM_EPOCHS = 25
        EPOCHS: int = 30
        BATCH_SIZE = 8
    """)
    assert roles(locate({"main.py": code})) == [
        ("data_dir", "constant", "DATA_DIR", False),
        ("image_dir", "constant", "IMAGE_DIR", False),
        ("mask_dir", "constant", "MASK_DIR", False),
        ("save_dir", "constant", "SAVE_PATH", False),
        ("epochs", "constant", "NUM_EPOCHS", False),
        ("epochs", "constant", "EPOCHS", False),
        ("batch_size", "constant", "BATCH_SIZE", False),
    ]
    new, changes = override(code)
    ns = run(new)
    assert (ns["DATA_DIR"], ns["IMAGE_DIR"], ns["MASK_DIR"]) == ("/x/pool", "/x/pool/images", "/x/pool/masks")
    assert (ns["SAVE_PATH"], ns["NUM_EPOCHS"], ns["EPOCHS"], ns["BATCH_SIZE"]) == ("/x/out", 2, 2, 8)
    assert "# masks share the image names" in new
    assert [(c.name, c.old, c.new) for c in changes][-2:] == [("NUM_EPOCHS", "25", "2"), ("EPOCHS", "30", "2")]


def test_config_dicts_literal_dict_call_and_item_assignment():
    code = src("""
        config = {
            "data_dir": "/path/to/data",
            "training": {"epochs": 25, "batch_size": 4},
        }
        CONFIG = dict(epochs=40, save_dir="./outputs", lr=3e-4)
        config["output_dir"] = "./runs"
    """)
    found = roles(locate({"main.py": code}))
    assert ("epochs", "dict", '"epochs"', False) in found and ("epochs", "dict", "epochs", False) in found
    assert ("save_dir", "dict", '"output_dir"', False) in found
    ns = run(override(code)[0])
    assert ns["config"]["data_dir"] == "/x/pool" and ns["config"]["training"] == {"epochs": 2, "batch_size": 4}
    assert ns["CONFIG"] == {"epochs": 2, "save_dir": "/x/out", "lr": 3e-4}
    assert ns["config"]["output_dir"] == "/x/out"


def test_argparse_defaults_required_options_dashed_dests_and_positionals():
    code = src("""
        import argparse
        def build_parser():
            parser = argparse.ArgumentParser()
            parser.add_argument("--data_dir", type=str, required=True, help="dataset root")
            parser.add_argument("--save-dir", type=str, default="./checkpoints")
            parser.add_argument("-e", "--epochs", type=int, default=25)
            parser.add_argument("--num-epochs", dest="n_epochs", type=int)
            parser.add_argument("mask_dir")
            parser.add_argument("--lr", type=float, default=1e-4)
            return parser
    """)
    found = roles(locate({"main.py": code}))
    assert found == [
        ("data_dir", "argparse", "--data_dir", False),
        ("save_dir", "argparse", "--save-dir", False),
        ("epochs", "argparse", "--epochs", False),
        ("epochs", "argparse", "--num-epochs", False),
        ("mask_dir", "argparse", "mask_dir", False),
        ("lr", "argparse", "--lr", False),
    ]
    before = run(code)["build_parser"]()
    with pytest.raises(SystemExit):  # required option and positional: the sandbox run would die here
        before.parse_args([])
    new, _ = override(code)
    args = run(new)["build_parser"]().parse_args([])
    assert args == argparse.Namespace(
        data_dir="/x/pool", save_dir="/x/out", epochs=2, n_epochs=2, mask_dir="/x/pool/masks", lr=1e-4
    )
    assert 'parser.add_argument("--data_dir", type=str, required=False, help="dataset root", default=' in new
    assert run(new)["build_parser"]().parse_args(["--epochs", "7"]).epochs == 7  # the CLI still works


def test_function_defaults_positional_and_keyword_only():
    code = src("""
        def train_model(model, loader, num_epochs=25, save_path="results", *, out_dir="plots", lr=1e-3):
            return num_epochs, save_path, out_dir
    """)
    new, changes = override(code, file="train.py")
    fn = run(new)["train_model"]
    assert fn.__defaults__ == (2, "/x/out") and fn.__kwdefaults__ == {"out_dir": "/x/out", "lr": 1e-3}
    assert [c.name for c in changes] == ["num_epochs", "save_path", "out_dir"]


def test_call_keywords_of_training_calls_and_dataset_constructors():
    code = src("""
        def main(train, SegDataset):
            ds = SegDataset(image_dir="data/imgs", mask_dir="data/masks", image_size=256)
            return train(ds, num_epochs=25, save_dir="./out")
    """)
    new, _ = override(code)
    seen = {}
    run(new)["main"](lambda ds, **kw: seen.update(kw), lambda **kw: seen.update(kw))
    assert seen == {
        "image_dir": "/x/pool/images",
        "mask_dir": "/x/pool/masks",
        "image_size": 256,
        "num_epochs": 2,
        "save_dir": "/x/out",
    }


def test_placeholder_folders_passed_straight_to_a_constructor_are_overridden():
    # Llama 4 Maverick's main(): "replace 'path_to_images' and 'path_to_masks' with the actual paths"
    code = src("""
        def main(GrayscaleDataset):
            return GrayscaleDataset('path_to_images', 'path_to_masks', 'labels.csv', 'path/to/your/data')
    """)
    new, changes = override(code)
    assert run(new)["main"](lambda *a: a) == ("/x/pool/images", "/x/pool/masks", "labels.csv", "/x/pool")
    assert sorted(c.role for c in changes) == ["data_dir", "image_dir", "mask_dir"]


def test_a_folder_literal_passed_by_position_takes_its_parameters_name():
    # Llama 3.1 405B's main(): BinarySegmentationDataset('data'), whose __init__(self, image_dir) names the role
    code = src("""
        class SegDataset:
            def __init__(self, image_dir, size=256):
                self.image_dir = image_dir

        def main():
            print('data')
            return SegDataset('data').image_dir
    """)
    new, changes = override(code)
    assert run(new)["main"]() == "/x/pool/images"
    assert "print('data')" in new  # a literal passed to a function the pipeline does not define is left alone
    assert [(c.role, c.name) for c in changes] == [("image_dir", "image_dir")]


def test_assignments_inside_main_guard_and_main_function():
    code = src("""
        def main():
            data_root = "/home/user/datasets/bagls"
            max_epochs = 60
            return data_root, max_epochs

        if __name__ == "__main__":
            checkpoint_dir = "ckpt"
            n_epochs = 15
    """)
    new, changes = override(code)
    assert run(new)["main"]() == ("/x/pool", 2)
    assert [(c.name, c.new) for c in changes] == [
        ("data_root", "'/x/pool'"),
        ("max_epochs", "2"),
        ("checkpoint_dir", "'/x/out'"),
        ("n_epochs", "2"),
    ]


def test_class_attributes_and_dataclass_fields():
    code = src("""
        from dataclasses import dataclass
        class Config:
            DATA_PATH = "./data"
            EPOCHS = 25
        @dataclass
        class TrainConfig:
            results_dir: str = "results"
            num_epochs: int = 50
        class Trainer:
            def __init__(self):
                self.epochs = 10
    """)
    assert {k.where for k in locate({"main.py": code})} == {"attribute"}
    ns = run(override(code)[0])
    assert (ns["Config"].DATA_PATH, ns["Config"].EPOCHS) == ("/x/pool", 2)
    assert ns["TrainConfig"]() == ns["TrainConfig"]("/x/out", 2)
    assert ns["Trainer"]().epochs == 2


# --- what must be left alone ----------------------------------------------------------------------


def test_derived_paths_follow_the_overridden_root_and_are_not_rewritten():
    code = src("""
        import os
        from pathlib import Path
        DATA_DIR = Path("/data/bagls")
        IMAGE_DIR = DATA_DIR / "images"
        MASK_DIR = os.path.join(str(DATA_DIR), "masks")
        SAVE_DIR = f"{DATA_DIR}/results"
    """)
    knobs = locate({"main.py": code})
    assert [(k.name, k.derived) for k in knobs] == [
        ("DATA_DIR", False),
        ("IMAGE_DIR", True),
        ("MASK_DIR", True),
        ("SAVE_DIR", True),
    ]
    new, changes = override(code)
    ns = run(new)
    assert [c.name for c in changes] == ["DATA_DIR"]
    assert ns["DATA_DIR"] == ns["Path"]("/x/pool")  # still a Path, so DATA_DIR / "images" keeps working
    assert (str(ns["IMAGE_DIR"]), ns["MASK_DIR"]) == ("/x/pool/images", "/x/pool/masks")


def test_folder_built_on_the_script_location_is_replaced_whole():
    code = src("""
        import os
        BASE_DIR = os.path.dirname(os.path.abspath(__file__))
        DATA_DIR = os.path.join(BASE_DIR, "data", "pool")
    """)
    assert [k.name for k in locate({"main.py": code})] == ["DATA_DIR"]
    assert "DATA_DIR = '/x/pool'" in override(code)[0]


def test_per_sample_paths_and_model_files_are_not_knobs():
    code = src("""
        import os
        class SegDataset:
            def __init__(self, image_dir, mask_dir):
                self.image_dir, self.mask_dir = image_dir, mask_dir
            def __getitem__(self, idx):
                img_path = os.path.join(self.image_dir, self.images[idx])
                mask_path = os.path.join(self.mask_dir, f"{idx}_seg.png")
                mask_path = os.path.join(self.mask_dir, self.images[idx].replace(".png", "_mask.png"))
        def save(model, save_dir):
            model_path = os.path.join(save_dir, "unet_model.pth")
            out_dir = os.path.join(save_dir, f"epoch_{model.epoch}")
            for epoch in range(3):
                epoch = epoch + 1
    """)
    assert locate({"dataset.py": code}) == []
    assert apply_overrides({"dataset.py": code}, POOL) == ({"dataset.py": code}, [])


def test_files_that_do_not_parse_are_skipped_and_returned_unchanged():
    broken = "NUM_EPOCHS = 25\ndef train(:\n"
    files = {"train.py": broken, "main.py": 'SAVE_DIR = "out"\n', "notes.md": "EPOCHS = 3\n"}
    assert [(k.file, k.name) for k in locate(files)] == [("main.py", "SAVE_DIR")]
    new, changes = apply_overrides(files, POOL)
    assert new["train.py"] == broken and new["notes.md"] == "EPOCHS = 3\n"
    assert new["main.py"] == "SAVE_DIR = '/x/out'\n" and len(changes) == 1


def test_non_ascii_text_before_a_value_keeps_offsets_right():
    code = 'cfg = {"título": "ü-ß", "data_dir": "/données"}  # é\nEPOCHS = 9\n'
    new, _ = override(code)
    assert new == 'cfg = {"título": "ü-ß", "data_dir": \'/x/pool\'}  # é\nEPOCHS = 2\n'


def test_a_value_bound_to_two_names_is_edited_once():
    new, changes = override('DATA_DIR = ROOT_DIR = "/data"\n')
    assert new == "DATA_DIR = ROOT_DIR = '/x/pool'\n" and len(changes) == 2
    new, changes = override('IMAGE_DIR = MASK_DIR = "/data/all"  # masks beside images\n')
    assert new == "IMAGE_DIR = MASK_DIR = '/x/pool/images'  # masks beside images\n"
    assert [c.name for c in changes] == ["IMAGE_DIR"]


def test_bad_override_values_name_the_problem():
    with pytest.raises(ValueError, match=r"cannot override 'data_path'.*data_dir, image_dir"):
        apply_overrides({"main.py": "DATA_PATH = 'x'\n"}, {"data_path": "/x/pool"})
    with pytest.raises(ValueError, match=r"'batch_size'.*data_dir, image_dir, mask_dir, save_dir, epochs"):
        apply_overrides({"main.py": "BATCH_SIZE = 8\n"}, {"batch_size": 4})
    with pytest.raises(ValueError, match="epochs override must be a positive int"):
        apply_overrides({"main.py": "EPOCHS = 8\n"}, {"epochs": "2"})
    with pytest.raises(ValueError, match="save_dir override must be a path"):
        apply_overrides({"main.py": "SAVE_DIR = 'x'\n"}, {"save_dir": 3})


def test_roles_absent_from_the_code_are_simply_not_overridden():
    code = 'IMAGE_DIR = "imgs"\n'
    new, changes = override(code)
    assert new == "IMAGE_DIR = '/x/pool/images'\n" and [c.role for c in changes] == ["image_dir"]


# --- path knobs follow what their value named -------------------------------------------------------

SUFFIX = {"data_dir": "/x/pool", "image_dir": "/x/pool", "mask_dir": "/x/pool", "save_dir": "/x/out"}


def targets(changes: list[Override]) -> list[tuple[str, str]]:
    return [(c.name, c.role) for c in changes]


def test_report_case_windows_data_path_naming_the_images_folder_beside_a_mask_path():
    code = src(r"""
        DATA_PATH = r'C:\Users\x\Brain Meningioma\images'
        MASK_PATH = r'C:\Users\x\Brain Meningioma\Masks'
    """)
    new, changes = override(code)
    assert new == "DATA_PATH = '/x/pool/images'\nMASK_PATH = '/x/pool/masks'\n"
    assert targets(changes) == [("DATA_PATH", "image_dir"), ("MASK_PATH", "mask_dir")]  # what the logs say
    assert [k.role for k in locate({"main.py": code})] == ["image_dir", "mask_dir"]


def test_root_dir_and_mask_dir_pairs():
    code = src(r"""
        class BrainDataset:
            def __init__(self, root_dir="D:\\data\\Brain Meningioma\\images\\",
                         mask_dir="D:\\data\\Brain Meningioma\\masks\\"):
                self.root_dir, self.mask_dir = root_dir, mask_dir
    """)
    new, changes = override(code, file="dataset.py")
    assert "def __init__(self, root_dir='/x/pool/images',\n                 mask_dir='/x/pool/masks'):" in new
    assert targets(changes) == [("root_dir", "image_dir"), ("mask_dir", "mask_dir")]
    # the value names no folder, but it sits beside the masks folder and no image knob exists: the images
    new, changes = override('ds = SegDataset(root_dir="/content/brain/train", mask_dir="/content/brain/train_masks")\n')
    assert new == "ds = SegDataset(root_dir='/x/pool/images', mask_dir='/x/pool/masks')\n"
    assert targets(changes) == [("root_dir", "image_dir"), ("mask_dir", "mask_dir")]


def test_a_root_above_its_masks_or_joined_with_a_mask_subfolder_stays_the_pool_root():
    code = src(r"""
        ROOT_DIR = r'C:\Users\x\Brain Meningioma'
        MASK_DIR = r'C:\Users\x\Brain Meningioma\Masks'
    """)
    assert override(code)[0] == "ROOT_DIR = '/x/pool'\nMASK_DIR = '/x/pool/masks'\n"
    new, changes = override('ds = SegDataset(root_dir="data/kvasir", mask_dir="masks")\n')  # join(root, mask_dir)
    assert new == "ds = SegDataset(root_dir='/x/pool', mask_dir='/x/pool/masks')\n"
    assert targets(changes) == [("root_dir", "data_dir"), ("mask_dir", "mask_dir")]
    new, _ = override('DATA_DIR = "./Kvasir-SEG/"\nMASK_DIR = "./Kvasir-SEG/masks"\n')  # SEG names the dataset
    assert new == "DATA_DIR = '/x/pool'\nMASK_DIR = '/x/pool/masks'\n"


def test_config_dict_paths_follow_their_values():
    code = src("""
        CONFIG = {
            "data_path": "/home/user/brain-mri/images",
            "mask_path": "/home/user/brain-mri/masks",
            "save_path": "./outputs",
        }
    """)
    new, changes = override(code)
    assert "\"data_path\": '/x/pool/images'," in new and "\"mask_path\": '/x/pool/masks'," in new
    assert targets(changes) == [('"data_path"', "image_dir"), ('"mask_path"', "mask_dir"), ('"save_path"', "save_dir")]


def test_argparse_defaults_follow_their_values():
    code = src("""
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument('--data_dir', default='/x/train/images')
        parser.add_argument('--mask_dir', default='/x/train/labelsTr/')
        parser.add_argument('--root', type=str, default='/x/train/ImagesTr')
    """)
    new, changes = override(code)
    assert "parser.add_argument('--data_dir', default='/x/pool/images')" in new
    assert "parser.add_argument('--mask_dir', default='/x/pool/masks')" in new
    assert "parser.add_argument('--root', type=str, default='/x/pool/images')" in new
    assert [c.role for c in changes] == ["image_dir", "mask_dir", "image_dir"]


def test_function_defaults_follow_their_values():
    code = src("""
        def get_loaders(image_dir='data/imgs', mask_dir='data/masks', batch_size=8):
            return image_dir, mask_dir

        def get_split(data_dir='data/images/train', label_dir='data/ground_truth/train'):
            return data_dir, label_dir
    """)
    new, changes = override(code)
    assert "def get_loaders(image_dir='/x/pool/images', mask_dir='/x/pool/masks', batch_size=8):" in new
    assert "def get_split(data_dir='/x/pool/images', label_dir='/x/pool/masks'):" in new
    assert [c.role for c in changes] == ["image_dir", "mask_dir", "image_dir", "mask_dir"]


def test_a_true_dataset_root_stays_the_pool_root_and_its_derived_folders_are_left_alone():
    code = src("""
        import os
        DATA_DIR = './dataset'
        IMAGE_DIR = os.path.join(DATA_DIR, 'images')
        MASK_DIR = os.path.join(DATA_DIR, 'masks')
    """)
    new, changes = override(code)
    assert new == code.replace("'./dataset'", "'/x/pool'")
    assert targets(changes) == [("DATA_DIR", "data_dir")]
    assert override("DATA_PATH = './data'\n")[0] == "DATA_PATH = '/x/pool'\n"  # says nothing: the name decides


def test_suffix_layout_points_every_data_path_at_the_pool_root():
    code = src(r"""
        DATA_PATH = r'C:\Users\x\Brain Meningioma\images'
        MASK_PATH = r'C:\Users\x\Brain Meningioma\Masks'
        ROOT_DIR = './dataset'
        SAMPLE = 'data/images/7.png'
    """)
    new, changes = override(code, SUFFIX)
    assert new == "DATA_PATH = '/x/pool'\nMASK_PATH = '/x/pool'\nROOT_DIR = '/x/pool'\nSAMPLE = 'data/images/7.png'\n"
    assert targets(changes) == [("DATA_PATH", "image_dir"), ("MASK_PATH", "mask_dir"), ("ROOT_DIR", "data_dir")]


def test_the_dataset_s_own_folder_names_are_recognised():
    values = {**POOL, "image_dir": "/x/pool/Original", "mask_dir": "/x/pool/Ground Truth"}
    code = 'DATA_PATH = "/kaggle/input/cvc-clinicdb/PNG/Original"\nMASK_PATH = "/kaggle/input/cvc/PNG/Ground Truth"\n'
    new, _ = override(code, values)
    assert new == "DATA_PATH = '/x/pool/Original'\nMASK_PATH = '/x/pool/Ground Truth'\n"


def test_single_files_get_their_counterpart_and_model_files_are_untouched():
    code = src(r"""
        model_path = 'unet.pth'
        MODEL_PATH = 'checkpoints/best_model.pth'
        def predict(model_path='unet.pth', image_path='data/images/1.png', mask_path=r'data\masks\1_seg.png',
                    out_path='results/pred.png', img_path='sample.png'):
            return image_path, mask_path
    """)
    new, changes = override(code)
    assert new.splitlines()[:2] == code.splitlines()[:2]
    assert "image_path='/x/pool/images/1.png', mask_path='/x/pool/masks/1_seg.png'," in new
    assert new.splitlines()[3:] == code.splitlines()[3:]  # an output file; a file name alone has no folder to follow
    assert targets(changes) == [("image_path", "image_dir"), ("mask_path", "mask_dir")]
    assert "mask_path='/x/pool/1_seg.png'" in override(code, SUFFIX)[0]


# --- two realistic LLM replies --------------------------------------------------------------------

GPT_STYLE = {
    "dataset.py": src("""
        import os
        from PIL import Image
        from torch.utils.data import Dataset
        from torchvision import transforms

        class SegmentationDataset(Dataset):
            def __init__(self, image_dir, mask_dir, transform=None):
                self.image_dir = image_dir
                self.mask_dir = mask_dir
                self.images = sorted(f for f in os.listdir(image_dir) if f.endswith(".png"))
                self.transform = transform or transforms.Compose([
                    transforms.Resize((256, 256)),
                    transforms.ToTensor(),
                ])

            def __len__(self):
                return len(self.images)

            def __getitem__(self, idx):
                img_name = self.images[idx]
                img_path = os.path.join(self.image_dir, img_name)
                mask_path = os.path.join(self.mask_dir, img_name)
                image = Image.open(img_path).convert("L")
                mask = Image.open(mask_path).convert("L")
                return self.transform(image), (self.transform(mask) > 0.5).float(), img_name
    """),
    "train.py": src("""
        import os
        import time
        import torch
        import pandas as pd
        from tqdm import tqdm

        def train_model(model, train_loader, val_loader, criterion, optimizer, num_epochs, save_path, device):
            train_losses, val_losses = [], []
            start = time.time()
            for epoch in range(num_epochs):
                model.train()
                running = 0.0
                for images, masks, _ in tqdm(train_loader, desc=f"Epoch {epoch + 1}/{num_epochs} [Train]"):
                    optimizer.zero_grad()
                    loss = criterion(model(images.to(device)), masks.to(device))
                    loss.backward()
                    optimizer.step()
                    running += loss.item()
                train_losses.append(running / len(train_loader))
            pd.DataFrame([list(range(1, num_epochs + 1)), train_losses]).to_excel(
                os.path.join(save_path, "train_losses.xlsx"), header=False, index=False)
            torch.save(model, os.path.join(save_path, "unet_model.pth"))
            print(f"Total training time: {time.time() - start:.2f}s")
            return train_losses, val_losses
    """),
    "main.py": src("""
        import os
        import torch
        import torch.nn as nn
        import torch.optim as optim
        from sklearn.model_selection import train_test_split
        from torch.utils.data import DataLoader, Subset
        from torchinfo import summary
        from dataset import SegmentationDataset
        from model import UNet
        from train import train_model

        # Configuration
        IMAGE_DIR = "/path/to/images"
        MASK_DIR = "/path/to/masks"
        SAVE_PATH = "/path/to/save"
        BATCH_SIZE = 8
        NUM_EPOCHS = 50
        LEARNING_RATE = 1e-4
        IMAGE_SIZE = (256, 256)

        if __name__ == "__main__":
            os.makedirs(SAVE_PATH, exist_ok=True)
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            dataset = SegmentationDataset(IMAGE_DIR, MASK_DIR)
            indices = list(range(len(dataset)))
            train_idx, temp_idx = train_test_split(indices, test_size=0.2, random_state=42, shuffle=True)
            val_idx, test_idx = train_test_split(temp_idx, test_size=0.5, random_state=42)
            train_loader = DataLoader(Subset(dataset, train_idx), batch_size=BATCH_SIZE, shuffle=True)
            val_loader = DataLoader(Subset(dataset, val_idx), batch_size=BATCH_SIZE)
            test_loader = DataLoader(Subset(dataset, test_idx), batch_size=1)
            model = UNet(in_channels=1, out_channels=1).to(device)
            summary(model, input_size=(BATCH_SIZE, 1, 256, 256))
            criterion = nn.BCEWithLogitsLoss()
            optimizer = optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-5)
            train_model(model, train_loader, val_loader, criterion, optimizer, NUM_EPOCHS, SAVE_PATH, device)
    """),
}

CLAUDE_STYLE = {
    "dataset.py": src('''
        import os
        import numpy as np
        import torch
        from PIL import Image
        from torch.utils.data import Dataset

        class SegmentationDataset(Dataset):
            """Grayscale images with binary masks named <stem>_seg.png in the same folder."""

            def __init__(self, root_dir: str, image_size: int = 256, mask_suffix: str = "_seg"):
                self.root_dir = root_dir
                self.image_size = image_size
                self.mask_suffix = mask_suffix
                self.image_files = sorted(
                    f for f in os.listdir(root_dir) if f.endswith(".png") and not f.endswith(f"{mask_suffix}.png")
                )

            def __getitem__(self, idx):
                name = self.image_files[idx]
                stem = os.path.splitext(name)[0]
                img_path = os.path.join(self.root_dir, name)
                mask_path = os.path.join(self.root_dir, f"{stem}{self.mask_suffix}.png")
                size = (self.image_size, self.image_size)
                image = Image.open(img_path).convert("L").resize(size, Image.BILINEAR)
                mask = Image.open(mask_path).convert("L").resize(size, Image.NEAREST)
                image = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).unsqueeze(0)
                mask = torch.from_numpy((np.array(mask) > 127).astype(np.float32)).unsqueeze(0)
                return image, mask, name
    '''),
    "train.py": src('''
        import os
        import torch
        import torch.nn as nn
        from tqdm import tqdm

        class DiceBCELoss(nn.Module):
            """BCE on logits plus soft Dice, for small foregrounds."""

            def __init__(self, smooth: float = 1.0):
                super().__init__()
                self.bce = nn.BCEWithLogitsLoss()
                self.smooth = smooth

            def forward(self, logits, targets):
                probs = torch.sigmoid(logits)
                inter = (probs * targets).sum()
                dice = (2 * inter + self.smooth) / (probs.sum() + targets.sum() + self.smooth)
                return self.bce(logits, targets) + 1 - dice

        def train_model(model, loaders, criterion, optimizer, device, num_epochs: int = 50,
                        save_dir: str = "results"):
            os.makedirs(save_dir, exist_ok=True)
            for epoch in tqdm(range(num_epochs), desc="Training"):
                pass
            torch.save(model.state_dict(), os.path.join(save_dir, "unet_state_dict.pth"))
    '''),
    "main.py": src('''
        """Entry point: python main.py --data-dir /path/to/dataset"""
        import argparse
        import torch
        from torch.utils.data import DataLoader
        from dataset import SegmentationDataset
        from model import UNet
        from train import DiceBCELoss, train_model


        def get_config() -> dict:
            return {
                "save_dir": "./results",
                "image_size": 256,
                "batch_size": 16,
                "num_epochs": 80,
                "learning_rate": 1e-3,
                "weight_decay": 1e-4,
                "seed": 42,
            }


        def parse_args():
            parser = argparse.ArgumentParser(description="U-Net binary segmentation")
            parser.add_argument("--data-dir", type=str, required=True,
                                help="Folder with images and *_seg.png masks")
            parser.add_argument("--save-dir", type=str, default="./results")
            parser.add_argument("--epochs", type=int, default=100)
            return parser.parse_args()


        def main():
            args = parse_args()
            config = get_config()
            config["save_dir"] = args.save_dir
            dataset = SegmentationDataset(args.data_dir, image_size=config["image_size"])
            model = UNet(in_channels=1, out_channels=1)
            optimizer = torch.optim.AdamW(
                model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"]
            )
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=5)
            criterion = DiceBCELoss()
            loader = DataLoader(dataset, batch_size=config["batch_size"], shuffle=True)
            train_model(model, {"train": loader}, criterion, optimizer, "cpu", num_epochs=args.epochs,
                        save_dir=config["save_dir"])


        if __name__ == "__main__":
            main()
    '''),
}


def test_hyperparameters_of_a_gpt_style_reply_with_module_constants():
    assert read_hyperparameters(GPT_STYLE) == {
        "epochs": "50",
        "batch_size": "8",
        "lr": "0.0001",
        "weight_decay": "1e-05",
        "optimizer": "Adam",
        "loss": "BCEWithLogitsLoss",
        "input_size": "256x256",
    }


def test_hyperparameters_of_a_claude_style_reply_with_config_dict_and_argparse():
    # the argparse default wins over the config dict and train.py's default; BCE inside the Loss is a part
    assert read_hyperparameters(CLAUDE_STYLE) == {
        "epochs": "100",
        "batch_size": "16",
        "lr": "0.001",
        "weight_decay": "0.0001",
        "optimizer": "AdamW",
        "loss": "DiceBCELoss",
        "input_size": "256x256",
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("t = A.Compose([A.Resize(320, 480), A.Normalize()])", {"input_size": "320x480"}),
        ("img = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)", {"input_size": "224x224"}),
        ("summary(model, input_size=(8, 1, 128, 128))", {"input_size": "128x128"}),
        ("IMG_SIZE = 512\nt = transforms.Resize(IMG_SIZE)", {"input_size": "512x512"}),
        (
            "s = torch.optim.lr_scheduler.StepLR(o, step_size=10)\no = torch.optim.SGD(p, lr=0.01, momentum=0.9)",
            {"lr": "0.01", "optimizer": "SGD"},
        ),
        ('OPTIMIZER = "adamw"\nLOSS_FN = "dice"', {"optimizer": "adamw", "loss": "dice"}),
    ],
)
def test_hyperparameters_from_resize_calls_shapes_and_names(line, expected):
    assert read_hyperparameters({"main.py": line + "\n"}) == expected


def test_missing_hyperparameters_are_absent_and_losses_are_joined():
    code = src("""
        import torch.nn as nn
        from losses import DiceLoss
        bce, dice = nn.BCEWithLogitsLoss(), DiceLoss(mode="binary")
        extra = nn.BCEWithLogitsLoss(pos_weight=None)
    """)
    assert read_hyperparameters({"train.py": code}) == {"loss": "BCEWithLogitsLoss+DiceLoss"}
    assert read_hyperparameters({"main.py": "x = 1\n"}) == {}


def test_override_gpt_style_reply():
    new, changes = apply_overrides(GPT_STYLE, POOL)
    assert [(c.file, c.name, c.new) for c in changes] == [
        ("main.py", "IMAGE_DIR", "'/x/pool/images'"),
        ("main.py", "MASK_DIR", "'/x/pool/masks'"),
        ("main.py", "SAVE_PATH", "'/x/out'"),
        ("main.py", "NUM_EPOCHS", "2"),
    ]
    assert new["dataset.py"] == GPT_STYLE["dataset.py"] and new["train.py"] == GPT_STYLE["train.py"]
    for file, code in new.items():
        compile(code, file, "exec")
    assert_only_values_changed(GPT_STYLE["main.py"], new["main.py"], changes)


def test_override_claude_style_reply(monkeypatch):
    new, changes = apply_overrides(CLAUDE_STYLE, POOL)
    assert [(c.file, c.name, c.old) for c in changes] == [
        ("train.py", "num_epochs", "50"),
        ("train.py", "save_dir", '"results"'),
        ("main.py", '"save_dir"', '"./results"'),
        ("main.py", '"num_epochs"', "80"),
        ("main.py", "--data-dir", "None"),
        ("main.py", "--save-dir", '"./results"'),
        ("main.py", "--epochs", "100"),
    ]
    assert new["dataset.py"] == CLAUDE_STYLE["dataset.py"]  # per-sample paths are not folder settings
    for file, code in new.items():
        compile(code, file, "exec")
        assert_only_values_changed(CLAUDE_STYLE[file], code, [c for c in changes if c.file == file])
    monkeypatch.setattr(sys, "argv", ["main.py"])  # the sandbox runs plain `python main.py`
    args = function_from(new["main.py"], "parse_args")()
    assert (args.data_dir, args.save_dir, args.epochs) == ("/x/pool", "/x/out", 2)
