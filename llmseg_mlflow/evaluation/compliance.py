"""Prompt compliance: the Appendix D items that can be checked mechanically, each 0 or 1.

Checked on the final code (syntax tree), on what the full training run wrote and printed, and on the
saved-model kinds the sandboxed evaluator found (unpickling happens only in the sandbox).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from llmseg_mlflow.pipeline import architecture
from llmseg_mlflow.pipeline.results import ResultsError, read_rows
from llmseg_mlflow.untrusted import Caps, walk

EXPECTED_FILES = ("dataset.py", "model.py", "train.py", "main.py")
AUGMENTATIONS = (
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "RandomRotation",
    "RandomAffine",
    "ColorJitter",
    "RandomResizedCrop",
    "RandomCrop",
    "HorizontalFlip",
    "VerticalFlip",
    "ElasticTransform",
    "RandomBrightnessContrast",
    "ShiftScaleRotate",
    "RandomRotate90",
)
_SPLIT_LINE = re.compile(r"(train|val|test)", re.IGNORECASE)


def _calls(files: Mapping[str, str]) -> list[tuple[str, ast.Call]]:
    """(callee name, call) for every call in the code."""
    found = []
    for src in files.values():
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                found.append((f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""), node))
    return found


def _names_used(files: Mapping[str, str]) -> set[str]:
    names: set[str] = set()
    for src in files.values():
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {a.name.split(".")[0] for a in node.names}
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module.split(".")[0])
    return names


def _outputs(results: Path) -> list[Path]:
    """The regular files the pipeline saved (links, FIFOs and devices are not looked at)."""
    return walk(results, Caps(max_file_bytes=1 << 62, max_total_bytes=1 << 62)).files


def _xlsx(outputs: list[Path], stem: str) -> Path | None:
    hits = sorted(p for p in outputs if p.name.startswith(stem) and p.suffix == ".xlsx")
    return hits[0] if hits else None


def _two_row_table(path: Path | None) -> bool:
    """Row 1 the epoch numbers 1..n (or 0..n-1), row 2 one number per epoch (items 7-8)."""
    if path is None:
        return False
    try:  # the pipeline wrote it: read within the same bounds as its curves
        rows = read_rows(path)
    except ResultsError:  # an unreadable file is simply not compliant
        return False
    if len(rows) != 2 or not rows[0] or all(math.isnan(v) for v in rows[1]):
        return False
    epochs = rows[0]
    n = len(epochs)
    return epochs in ([float(i) for i in range(1, n + 1)], [float(i) for i in range(n)])


def _subplots_5x3(calls: list[tuple[str, ast.Call]]) -> bool:
    for name, call in calls:
        if name != "subplots":
            continue
        args = [a.value for a in call.args[:2] if isinstance(a, ast.Constant)]
        kw = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
        if (
            args == [5, 3]
            or (kw.get("nrows") == 5 and kw.get("ncols") == 3)
            or (args[:1] == [5] and kw.get("ncols") == 3)
        ):
            return True
    return False


def _copies_files(calls: list[tuple[str, ast.Call]], used: set[str]) -> bool:
    """shutil copies, or os.symlink/os.link (the prompt forbids copying the split data)."""
    for name, call in calls:
        owner = getattr(call.func, "value", None)
        owner_name = getattr(owner, "id", None)
        if owner_name == "shutil" and name.startswith("copy"):
            return True
        if owner_name == "os" and name in ("symlink", "link"):
            return True
        if owner is None and name in ("copyfile", "copytree", "copy2") and "shutil" in used:
            return True
    return False


def _split_80_10_10(stdout: str, n_pool: int) -> bool:
    """The printed train/val/test sizes are 80/10/10 of the pool (item 16), within one image."""
    numbers = []
    for line in stdout.splitlines():
        if _SPLIT_LINE.search(line):
            numbers += [int(x) for x in re.findall(r"\b\d+\b", line)]
    target = (0.8 * n_pool, 0.1 * n_pool, 0.1 * n_pool)
    for i in range(len(numbers) - 2):
        a, b, c = numbers[i : i + 3]
        if a + b + c == n_pool and all(abs(x - t) <= 1.5 for x, t in zip((a, b, c), target)):
            return True
    return False


def check(
    files: Mapping[str, str], attempt: Path, stdout: str, n_pool: int, checkpoint_kinds: Mapping[str, str]
) -> dict[str, int]:
    """compliance.<item> -> 0/1 for every checkable Appendix D item (see docs/evaluation.md)."""
    results = attempt / "results"
    calls = _calls(files)
    called = {name for name, _ in calls}
    used = _names_used(files)
    outputs = _outputs(results)
    pngs = [p.name.lower() for p in outputs if p.suffix.lower() == ".png"]
    kinds = set(checkpoint_kinds.values())
    items: dict[str, Callable[[], bool]] = {
        "four_files": lambda: set(files) == set(EXPECTED_FILES),
        "train_losses_xlsx": lambda: _two_row_table(_xlsx(outputs, "train_losses")),
        "val_losses_xlsx": lambda: _two_row_table(_xlsx(outputs, "val_losses")),
        "validation_dice_xlsx": lambda: _xlsx(outputs, "validation_dice_scores") is not None,
        "test_dice_xlsx": lambda: _xlsx(outputs, "test_dice_scores") is not None,
        "whole_model_saved": lambda: "whole_model" in kinds,
        "state_dict_saved": lambda: "state_dict" in kinds,
        "loss_plot_png": lambda: any("loss" in p for p in pngs),
        "prediction_figure_5x3": lambda: _subplots_5x3(calls) and any("loss" not in p for p in pngs),
        "torchinfo_summary": lambda: "torchinfo" in used and architecture.torchinfo_summary(stdout) is not None,
        "params_printed": lambda: architecture.params_total(stdout) is not None,
        "training_time_printed": lambda: re.search(r"train\w*\s+time", stdout, re.IGNORECASE) is not None,
        "tqdm_used": lambda: "tqdm" in called,
        "split_indices_subset": lambda: "train_test_split" in called and "Subset" in called,
        "split_80_10_10": lambda: _split_80_10_10(stdout, n_pool),
        "no_data_copy": lambda: not _copies_files(calls, used),
        "no_augmentation": lambda: not used & set(AUGMENTATIONS),
        "no_plt_show": lambda: "show" not in called,
        "main_guard": lambda: "__name__" in files.get("main.py", "") and "__main__" in files.get("main.py", ""),
    }
    assert tuple(items) == ITEMS  # the names other writers (the synthetic study) use
    return {f"compliance.{name}": int(bool(test())) for name, test in items.items()}


ITEMS = (
    "four_files",
    "train_losses_xlsx",
    "val_losses_xlsx",
    "validation_dice_xlsx",
    "test_dice_xlsx",
    "whole_model_saved",
    "state_dict_saved",
    "loss_plot_png",
    "prediction_figure_5x3",
    "torchinfo_summary",
    "params_printed",
    "training_time_printed",
    "tqdm_used",
    "split_indices_subset",
    "split_80_10_10",
    "no_data_copy",
    "no_augmentation",
    "no_plt_show",
    "main_guard",
)
