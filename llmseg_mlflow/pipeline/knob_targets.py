"""Which harness folder a path knob is pointed at: what its value names first, then its siblings, then its name.

An LLM names knobs loosely (DATA_PATH = ".../Brain Meningioma/images" beside MASK_PATH = ".../Masks"), so the
role its name suggests is only the fallback; the path it held says which folder it meant.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

DATA_ROLES = ("data_dir", "image_dir", "mask_dir")
# Folder names are read as words (split at _, -, spaces, digits and camelCase: imagesTr, TrainImages, JPEGImages).
_IMAGE_WORDS = {"images", "image", "imgs", "img", "frames", "originals", "inputs"}
_MASK_WORDS = {
    "masks",
    "mask",
    "labels",
    "label",
    "segmentations",
    "gt",
    "gts",
    "groundtruth",
    "annotations",
    "annotation",
    "targets",
}
_MASK_NAMES = {"seg", "segs"}  # only as the whole name: "Kvasir-SEG" is a dataset root holding images/ and masks/
_ROOT_WORDS = {"data", "dataset", "datasets", "root"}
# A split below the images folder still names the images (data/images/train); "data/train" names no root.
_SPLITS = {"train", "training", "val", "valid", "validation", "test", "testing", "all"}
_IMAGE_FILE = re.compile(r"\.(?:png|jpe?g|tiff?|bmp|gif)$", re.IGNORECASE)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_WRAPPERS = {
    "str",
    "fspath",
    "Path",
    "PurePath",
    "PosixPath",
    "PureWindowsPath",
    "WindowsPath",
    "abspath",
    "normpath",
    "realpath",
    "expanduser",
    "resolve",
    "absolute",
}
_PATH_MODULES = {"os", "path", "posixpath", "ntpath"}


@dataclass(frozen=True)
class PathKnob:
    """What the target of one path knob is decided from."""

    file: str
    role: str  # the role its name matched
    text: str | None  # path_text of its value; None: no value (argparse option without default) or not a path
    anchor: bool  # a derived knob is built on it (IMAGE_DIR = os.path.join(DATA_DIR, "images")): a root


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def path_text(node: ast.expr) -> str | None:
    """The path an expression builds, "{NAME}" standing for each name it builds on; None if it is no plain path."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        return f"{{{node.id}}}"
    if isinstance(node, ast.Attribute):
        inner = path_text(node.value) if node.attr == "parent" else None
        return f"{inner}/.." if inner is not None else f"{{{node.attr}}}"
    if isinstance(node, ast.JoinedStr):
        pieces = [
            (path_text(v.value) or "{?}") if isinstance(v, ast.FormattedValue) else str(cast(ast.Constant, v).value)
            for v in node.values  # an f-string holds only FormattedValue and Constant parts
        ]
        return "".join(pieces)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Add)):
        left, right = path_text(node.left), path_text(node.right)
        sep = "/" if isinstance(node.op, ast.Div) else ""
        return None if left is None or right is None else f"{left}{sep}{right}"
    if not isinstance(node, ast.Call):
        return None
    name, func = _callee(node), node.func
    # The path value a method is called on: Path("x").resolve(), ROOT.joinpath
    on_value = func.value if isinstance(func, ast.Attribute) and not _module(func.value) else None
    if name in ("join", "joinpath") or (name in _WRAPPERS and len(node.args) > 1):
        parts = [*([on_value] if on_value is not None and name == "joinpath" else []), *node.args]
        texts = [path_text(p) for p in parts]
        known = [t for t in texts if t is not None]
        return "/".join(known) if texts and len(known) == len(texts) else None
    if name in _WRAPPERS:
        arg = node.args[0] if node.args else on_value
        return None if arg is None else path_text(arg)
    if name in ("getenv", "get") and len(node.args) > 1:  # os.getenv("DATA_DIR", "data/images"): the default
        return path_text(node.args[1])
    return None


def _module(node: ast.expr) -> bool:
    """os.path, pathlib and the like: a call on them is a function, not a method of a path value."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in _PATH_MODULES | {"pathlib"}


def _parts(text: str) -> list[str]:
    return [p for p in re.split(r"[\\/]+", text) if p not in ("", ".")]


def _words(name: str) -> set[str]:
    words = [w.lower() for w in _WORD.findall(name)]
    return {*words, *(a + b for a, b in zip(words, words[1:]))}  # Ground_Truth, GroundTruth


def folder_names(values: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """The harness's own images and masks folder names (lower case), where they are folders of their own."""
    paths = {role: os.fspath(values[role]) for role in ("data_dir", "image_dir", "mask_dir") if role in values}
    if paths.get("image_dir") == paths.get("mask_dir"):
        return {}  # the suffix layout: images and masks lie in the pool root, whose name says nothing
    return {
        role: _parts(path)[-1].lower()
        for role, path in paths.items()
        if role != "data_dir" and path != paths.get("data_dir") and _parts(path)
    }


def _named(name: str, folders: dict[str, str]) -> str | None:
    """image_dir or mask_dir when a folder's name says which; None when it says neither or both."""
    low = name.lower()
    if low.startswith("{"):
        return None  # a name the path is built on, not a folder it names
    for role, folder in folders.items():
        if low == folder:
            return role
    if low in _MASK_NAMES:
        return "mask_dir"
    words = _words(name)
    images, masks = bool(words & _IMAGE_WORDS), bool(words & _MASK_WORDS)
    return None if images == masks else "image_dir" if images else "mask_dir"


def folder_role(text: str, folders: dict[str, str] | None = None) -> str | None:
    """What a folder path names by its last components: image_dir, mask_dir, data_dir (a dataset root) or None."""
    parts = _parts(text)
    for part in reversed(parts):
        if role := _named(part, folders or {}):
            return role
        if part.lower() not in _SPLITS:
            break
    last = parts[-1] if parts else "{"
    return "data_dir" if not last.startswith("{") and _words(last) & _ROOT_WORDS else None


def file_target(text: str | None, folders: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(role, file name) for one image or mask file in a folder that says which; None for anything else."""
    if text is None or "{" in text or not _IMAGE_FILE.search(text):
        return None
    parts = _parts(text)
    role = folder_role("/".join(parts[:-1]), folders) if len(parts) > 1 else None
    return (role, parts[-1]) if role in ("image_dir", "mask_dir") else None


def _parallel(root: PathKnob, masks: list[PathKnob]) -> bool:
    """True when a root's value sits beside its mask siblings' (data/train, data/train_masks), not above them."""
    texts = [m.text for m in masks if m.text is not None]
    if root.text is None or not masks or len(texts) < len(masks):
        return False
    mine = [p.lower() for p in _parts(root.text)]
    for text in texts:
        theirs = [p.lower() for p in _parts(text)]
        if len(theirs) == 1 and not re.match(r"[\\/]|\w:|\{", text):
            return False  # mask_dir="masks": a subfolder the code joins onto the root
        if len(mine) < len(theirs) and theirs[: len(mine)] == mine:
            return False  # the root holds the masks folder, so it is the dataset root
    return True


def targets(knobs: list[PathKnob], folders: dict[str, str] | None = None) -> list[tuple[str, str | None]]:
    """(role, file name or None) each path knob is pointed at, in the order given."""
    decided: list[str | None] = []
    files: list[str | None] = []
    for knob in knobs:
        file = file_target(knob.text, folders) if knob.role in DATA_ROLES else None
        named = folder_role(knob.text, folders) if knob.text is not None and knob.role in DATA_ROLES else None
        if file is not None:
            role = file[0]
        elif knob.role not in DATA_ROLES or named in ("image_dir", "mask_dir"):
            role = named or knob.role
        elif knob.role == "data_dir" and named != "data_dir" and not knob.anchor:
            role = None  # a data path whose value says nothing: its siblings decide
        else:
            role = knob.role
        decided.append(role)
        files.append(file[1] if file else None)
    result = []
    for i, knob in enumerate(knobs):
        role = decided[i]
        if role is None:
            mine = [j for j, k in enumerate(knobs) if k.file == knob.file and files[j] is None]
            undecided = [j for j in mine if decided[j] is None]
            masks = [knobs[j] for j in mine if decided[j] == "mask_dir"]
            alone = undecided == [i] and not any(decided[j] == "image_dir" for j in mine)
            # DATA_PATH beside MASK_PATH with no image knob is where the images are
            role = "image_dir" if alone and _parallel(knob, masks) else "data_dir"
        result.append((role, files[i]))
    return result
