"""Held-out inference inside the sandbox: load the pipeline's model, preprocess, predict, write masks.

Runs as a standalone script (`python worker.py config.json`) in the sandbox, because it imports
generated code; it uses only torch, numpy and Pillow. The harness scores the masks outside.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import runpy
import sys
import time
import traceback
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

CHECKPOINT_EXTS = (".pth", ".pt", ".ckpt", ".tar", ".pkl")
IN_NAMES = {
    "in_channels",
    "in_ch",
    "n_channels",
    "input_channels",
    "in_chans",
    "num_channels",
    "channels",
    "img_ch",
    "in_c",
    "inchannels",
    "n_input_channels",
    "input_nc",
    "in_features",
}
OUT_NAMES = {
    "out_channels",
    "out_ch",
    "n_classes",
    "num_classes",
    "classes",
    "output_channels",
    "out_chans",
    "output_ch",
    "n_out",
    "out_c",
    "outchannels",
    "num_outputs",
    "output_nc",
    "n_output_channels",
}
BASE_NAMES = {
    "features",
    "base_features",
    "init_features",
    "base_filters",
    "base_channels",
    "start_filters",
    "filters",
    "base_c",
    "nf",
    "base",
    "n_filters",
    "num_filters",
    "start_channels",
    "feature_channels",
    "base_ch",
    "ngf",
    "init_channels",
    "features_start",
    "base_n_filter",
}


# ---- model loading -------------------------------------------------------------------------------


def _state_dict_of(obj: object) -> dict[str, torch.Tensor] | None:
    """A state dict, directly or under a usual key of a checkpoint dict; DataParallel prefixes removed."""
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model", "net", "model_state"):
            if isinstance(obj.get(key), dict):
                return _state_dict_of(obj[key])
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    return None


def _shape_facts(sd: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(input channels, output channels, first conv width) read from the weights."""
    convs = [v for v in sd.values() if v.ndim == 4]
    first = convs[0]
    heads = [v for v in convs if v.shape[0] <= 4 and v.shape[-1] == 1] or convs
    return int(first.shape[1]), int(heads[-1].shape[0]), int(first.shape[0])


def _kwarg_candidates(cls: type[nn.Module], sd: dict[str, torch.Tensor]) -> list[dict[str, object]]:
    """Constructor arguments to try: the defaults, then values inferred from the weights."""
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return [{}]
    in_c, out_c, width = _shape_facts(sd)
    inferred: dict[str, object] = {}
    for p in params:
        name = p.name.lower()
        if name in IN_NAMES:
            inferred[p.name] = in_c
        elif name in OUT_NAMES:
            inferred[p.name] = out_c
        elif name in BASE_NAMES:
            default = p.default
            inferred[p.name] = (
                [width * 2**i for i in range(len(default))] if isinstance(default, (list, tuple)) else width
            )
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in inferred
    ]
    if required:
        return []
    channels_only = {k: v for k, v in inferred.items() if k.lower() not in BASE_NAMES}
    return [c for i, c in enumerate([{}, channels_only, inferred]) if c not in [{}, channels_only, inferred][:i]]


def _build(sd: dict[str, torch.Tensor], code_dir: Path) -> nn.Module:
    """An instance of a model.py class whose parameters match the state dict exactly."""
    import importlib

    module = importlib.import_module("model")
    classes = [
        c
        for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, nn.Module) and c.__module__ == module.__name__
    ]
    classes.sort(key=lambda c: ("unet" not in c.__name__.lower(), -len(inspect.getsource(c))))
    tried = []
    for cls in classes:
        for kwargs in _kwarg_candidates(cls, sd):
            try:
                model = cls(**kwargs)
                model.load_state_dict(sd, strict=True)
                return model
            except Exception as exc:  # noqa: BLE001 - any failure means "not this constructor"
                tried.append(f"{cls.__name__}({kwargs}): {type(exc).__name__}: {str(exc)[:200]}")
    raise RuntimeError("no class in model.py matches the saved state dict; tried:\n" + "\n".join(tried))


def load_model(checkpoints: Path, code_dir: Path) -> tuple[nn.Module, dict[str, object]]:
    """The model as the pipeline saved it: a pickled module if there is one, else a state dict + class."""
    found: list[tuple[int, float, Path, nn.Module | dict[str, torch.Tensor]]] = []
    kinds: dict[str, str] = {}
    for path in sorted(p for p in checkpoints.rglob("*") if p.suffix in CHECKPOINT_EXTS and p.is_file()):
        rel = str(path.relative_to(checkpoints))
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - unreadable files are reported, not fatal
            kinds[rel] = f"unreadable: {type(exc).__name__}"
            continue
        if isinstance(obj, nn.Module):
            kinds[rel] = "whole_model"
            found.append((0, -path.stat().st_mtime, path, obj))
        elif (sd := _state_dict_of(obj)) is not None:
            kinds[rel] = "state_dict"
            found.append((1, -path.stat().st_mtime, path, sd))
        else:
            kinds[rel] = f"other: {type(obj).__name__}"
    if not found:
        raise FileNotFoundError(f"no loadable model file under the pipeline's folder: {kinds or 'no .pth files'}")
    errors = []
    for rank, _, path, obj in sorted(found, key=lambda f: f[:2]):
        try:
            model = obj if isinstance(obj, nn.Module) else _build(obj, code_dir)  # rank 0: a whole model
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{path.name}: {exc}")
            continue
        info: dict[str, object] = {
            "eval_load": "whole_model" if rank == 0 else "state_dict",
            "eval_checkpoint": str(path.relative_to(checkpoints)),
            "checkpoints": kinds,
        }
        return model, info
    raise RuntimeError("no saved model could be loaded:\n" + "\n".join(errors))


def save_whole(model: nn.Module, path: Path) -> str:
    """torch.save of the module as loaded ("ok"), or why it cannot be pickled (lambdas, local classes)."""
    try:
        torch.save(model.eval(), path)
    except Exception as exc:  # noqa: BLE001 - the model is still evaluated, only not saved whole
        path.unlink(missing_ok=True)
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return "ok"


class _FirstConv(Exception):
    """Raised by the hook on the first convolution a forward pass reaches."""


def in_channels(model: nn.Module, size: int = 64) -> int:
    """Channels the network takes: those of the first convolution its forward pass runs.

    The first Conv2d *registered* is not always the first run (decoders are often defined first), so a
    dummy batch is pushed until a pre-hook on every convolution fires; any channel count that gets there
    tells the answer."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    seen: list[int] = []

    def hook(module, _inputs):
        seen.append(module.in_channels)
        raise _FirstConv

    handles = [m.register_forward_pre_hook(hook) for m in convs]
    device = next(model.parameters()).device
    try:
        for c in dict.fromkeys([convs[0].in_channels, 1, 3, 4]):
            try:
                with torch.inference_mode():
                    model(torch.zeros(1, c, size, size, device=device))
            except _FirstConv:
                return seen[0]
            except Exception:  # noqa: BLE001 - a layer before the first conv refused this count: try another
                continue
    finally:
        for h in handles:
            h.remove()
    return convs[0].in_channels


# ---- preprocessing -------------------------------------------------------------------------------


class _Captured(Exception):
    """Raised at the first DataLoader iteration: every loader main.py builds exists by then."""


def capture_datasets(code_dir: Path) -> tuple[list[object], str]:
    """Run main.py (its data knobs point at the held-out folder) until it iterates a DataLoader.

    Returns the base datasets (Subsets unwrapped) of every loader it built, last built first (the test
    loader, as the prompt orders them), then every other Dataset it made, latest first: main.py may stop
    before its loaders exist (a split sized for the pool fails on a small held-out set), and the datasets
    made by then still know how the pipeline reads an image. Also why no loader was reached.
    """
    built: list[object] = []
    made: list[object] = []
    original_init, original_iter = DataLoader.__init__, DataLoader.__iter__
    own_new = Dataset.__dict__.get("__new__")  # normally none: object's

    def init(self, dataset, *args, **kwargs):
        built.append(dataset)
        original_init(self, dataset, *args, **kwargs)  # workers start only on iteration, which stops here

    def stop(self):
        raise _Captured

    def new(cls, *args, **kwargs):
        obj = object.__new__(cls)
        made.append(obj)
        return obj

    # Patched on purpose (and restored below): mypy refuses assigning to methods.
    DataLoader.__init__, DataLoader.__iter__ = init, stop  # type: ignore[method-assign]
    Dataset.__new__ = new  # type: ignore[method-assign]
    argv = sys.argv
    sys.argv = ["main.py"]  # argparse pipelines: their defaults (knobs pointed at held-out) apply
    reason = ""
    try:
        runpy.run_path(str(code_dir / "main.py"), run_name="__main__")
    except _Captured:
        pass
    except BaseException as exc:  # noqa: BLE001 - the pipeline's own failure means: use what was made
        reason = f"main.py raised {type(exc).__name__} before iterating a DataLoader: {str(exc)[:200]}"
    finally:
        DataLoader.__init__, DataLoader.__iter__ = original_init, original_iter  # type: ignore[method-assign]
        if own_new is None:
            del Dataset.__new__
        else:
            Dataset.__new__ = own_new  # type: ignore[method-assign]
        sys.argv = argv
    bases: list[object] = []
    for dataset in [*reversed(built), *reversed(made)]:
        while isinstance(dataset, Subset):
            dataset = dataset.dataset
        if all(dataset is not b for b in bases):
            bases.append(dataset)
    return bases, reason or ("" if bases else "main.py built no DataLoader")


def own_items(
    datasets: list[object], names: list[str], slices: dict[tuple[str, int], str] | None = None
) -> tuple[dict[str, tuple[Any, int]], str]:
    """Held-out name -> (dataset, index) over all captured datasets (a split may spread the held-out
    images over a train, a validation and a test dataset); the reason when some stay uncovered.
    slices: (volume reference, slice index) -> name, when the held-out images are slices of volumes."""
    found: dict[str, tuple[Any, int]] = {}  # (a dataset main.py made, indexable as it pleases; an index)
    sizes = []
    for dataset in datasets:
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            continue
        sizes.append(n)
        order = slice_item_names(dataset, n, slices) if slices else item_names(dataset, n, names)
        for i, name in enumerate(order or []):
            if name is not None:
                found.setdefault(name, (dataset, i))
    if len(found) == len(names):
        return found, ""
    if not found:
        what = "names the volume and slice of its items" if slices else "keeps a list of the held-out file names"
        return {}, (
            f"no dataset {what} (DataLoader datasets of sizes {sizes})" if sizes else "main.py built no DataLoader"
        )
    return {}, f"the pipeline's datasets cover {len(found)} of the {len(names)} held-out images (sizes {sizes})"


def _image_path(entry: object) -> str | None:
    """The image path of one entry of a dataset's file list: a path, an (image, mask) pair, or a dict."""
    if isinstance(entry, (tuple, list)) and entry:
        entry = entry[0]
    elif isinstance(entry, dict):
        entry = next((entry[k] for k in ("image", "img", "image_path", "img_path", "path") if k in entry), None)
    return str(entry) if isinstance(entry, (str, os.PathLike)) else None


def item_names(dataset: object, n: int, names: list[str]) -> list[str] | None:
    """Held-out file name of each dataset index, from a list attribute of one path (or (image, mask) pair,
    or {"image": path} record) per item."""
    wanted = set(names)
    by_stem = {os.path.splitext(x)[0]: x for x in names}
    for value in getattr(dataset, "__dict__", {}).values():
        if not isinstance(value, (list, tuple)) or len(value) != n:
            continue
        paths = [p for p in map(_image_path, value) if p]
        if len(paths) != n:  # an item without a path
            continue
        base = [os.path.basename(p) for p in paths]
        if all(b in wanted for b in base):
            return base
        mapped = [m for m in (by_stem.get(os.path.splitext(b)[0]) for b in base) if m]
        if len(mapped) == n and len(set(mapped)) == n:
            return mapped
    return None


_TRAILING_INT = re.compile(r"(\d+)\D*$")


def volume_refs(key: str, volume_path: str) -> tuple[str, ...]:
    """The ways code names one volume: its key, its file name, its file name without .nii/.nii.gz."""
    base = os.path.basename(volume_path)
    return key, base, re.sub(r"\.nii(\.gz)?$", "", base)


def _slice_ref(entry: object, paths: list[list[str]]) -> tuple[str, int] | None:
    """(volume reference, slice index) of one entry of a dataset's per-item list: (path, k), (image, label, k),
    {"image": path, "slice": k}, (volume index, k) into a list of volume paths, or a name like 'case_003_slice42'."""
    if isinstance(entry, str) and os.path.sep not in entry:
        found = _TRAILING_INT.search(entry)
        return (entry[: found.start()].rstrip("_-. "), int(found.group(1))) if found else None
    values = (
        list(entry.values()) if isinstance(entry, dict) else list(entry) if isinstance(entry, (tuple, list)) else []
    )
    ints = [int(v) for v in values if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
    named = [p for p in (_image_path(v) for v in values if isinstance(v, (str, os.PathLike, tuple, list))) if p]
    if not ints:
        return None
    if named:
        return os.path.basename(named[0]), ints[-1]
    if len(ints) >= 2:
        for files in paths:
            if 0 <= ints[0] < len(files):
                return os.path.basename(files[ints[0]]), ints[-1]
    return None


def slice_item_names(dataset: object, n: int, slices: dict[tuple[str, int], str]) -> list[str | None] | None:
    """Held-out slice name (or None: a slice not scored) of each dataset index, from a list attribute that
    names each item's volume and slice index; None when no attribute does."""
    attrs = [v for v in getattr(dataset, "__dict__", {}).values() if isinstance(v, (list, tuple))]
    paths = [[p for p in map(_image_path, v)] for v in attrs if v and all(_image_path(x) for x in v)]
    prefixes = sorted({ref for ref, _ in slices}, key=len, reverse=True)
    for value in attrs:
        if len(value) != n or not n:
            continue
        refs = [_slice_ref(v, paths) for v in value]  # type: ignore[arg-type]
        if not all(refs):
            continue
        out: list[str | None] = []
        for ref, k in refs:  # type: ignore[misc]
            volume = next((p for p in prefixes if ref == p or (ref.startswith(p) and not ref[len(p)].isalnum())), ref)
            out.append(slices.get((volume, k)))
        if any(out):
            return out
    return None


def as_image_tensor(item: object) -> torch.Tensor:
    """The image of a dataset item (tuple, list or dict) as a float CxHxW tensor."""
    if isinstance(item, dict):
        key = next((k for k in ("image", "img", "input", "images", "x") if k in item), None)
        item = item[key] if key else next(iter(item.values()))
    elif isinstance(item, (tuple, list)):
        item = item[0]
    x = torch.as_tensor(np.asarray(item)) if not isinstance(item, torch.Tensor) else item
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3 and x.shape[-1] in (1, 3, 4) and x.shape[0] not in (1, 3, 4):
        x = x.permute(2, 0, 1)
    if x.ndim != 3:
        raise ValueError(f"dataset item image has shape {tuple(x.shape)}, expected CxHxW")
    return x.float()


def generic_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """Resize to size x size, the model's channel count, values in [0, 1]."""
    img = Image.open(path).convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


# ---- inference -----------------------------------------------------------------------------------


def foreground_probability(out: object, final_activation: str, mode: str | None) -> tuple[torch.Tensor, str]:
    """Foreground probability (B, h, w) from the model's output; the output kind is decided once."""
    if isinstance(out, dict):
        out = out.get("out", next(iter(out.values())))
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = cast(torch.Tensor, out)  # what the model returned, or held in a dict or a tuple: its output tensor
    if out.ndim == 3:
        out = out[:, None]
    if mode is None:
        in_range = bool(out.min() >= 0 and out.max() <= 1)
        if out.shape[1] > 1:
            in_range = in_range and bool(torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=1e-3))
        mode = "probabilities" if in_range and final_activation in ("sigmoid", "softmax") else "logits"
    if out.shape[1] == 1:
        prob = out[:, 0] if mode == "probabilities" else torch.sigmoid(out[:, 0])
    else:
        prob = (out if mode == "probabilities" else torch.softmax(out, 1))[:, 1:].sum(1)
    return prob, mode


def main(config_path: str) -> None:
    """Predict every held-out image; write out/predictions.npz and out/info.json."""
    cfg = json.loads(Path(config_path).read_text())
    code_dir, out_dir = Path(cfg["code_dir"]).resolve(), Path(cfg["out_dir"]).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [h["name"] for h in cfg["heldout"]]
    slices = {
        (ref, h["slice"]): h["name"]
        for h in cfg["heldout"]
        if "volume" in h
        for ref in volume_refs(h["volume_key"], h["volume"])
    }
    paths = {h["name"]: Path(h["image"]) for h in cfg["heldout"]}
    sizes = {h["name"]: tuple(h["size"]) for h in cfg["heldout"]}  # (H, W) of the ground truth
    os.chdir(code_dir)
    sys.path.insert(0, str(code_dir))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, info = load_model(Path(cfg["checkpoints_dir"]), code_dir)
    if cfg.get("save_model"):  # the whole module, on the CPU: the logged model's pytorch flavor
        info["model_saved"] = save_whole(model, Path(cfg["save_model"]))
    model = model.to(device).eval()

    size = int(cfg.get("input_size") or 256)
    channels = in_channels(model, min(size, 256))
    items: list[tuple[str, torch.Tensor]] | None = None
    reason = "generic preprocessing requested"
    if cfg["preprocessing"] == "auto":
        datasets, reason = capture_datasets(code_dir)
        where, why = own_items(datasets, names, slices) if datasets else ({}, "")
        reason = "; ".join(r for r in (reason, why) if r)
        if where:
            try:
                items = [(name, as_image_tensor(where[name][0][where[name][1]])) for name in names]
                if items[0][1].shape[0] != channels:
                    reason = f"the dataset gives {items[0][1].shape[0]} channels, the model wants {channels}"
                    items = None
            except Exception as exc:  # noqa: BLE001
                reason, items = f"reading the dataset failed: {type(exc).__name__}: {str(exc)[:200]}", None
    if items is None:
        items = [(n, generic_image(paths[n], channels, size)) for n in names]
        info.update(
            eval_preprocessing="generic",
            eval_fallback_reason=reason,
            eval_input_size=size,
            eval_input_channels=channels,
        )
    else:
        info.update(eval_preprocessing="own")
    info.setdefault("eval_input_channels", channels)

    predictions: dict[str, np.ndarray] = {}
    mode, forward_s, batch = None, 0.0, int(cfg.get("batch_size", 16))
    groups: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
    for name, x in items:  # batches of same-size inputs with the same ground-truth size
        groups.setdefault((tuple(x.shape), sizes[name]), []).append((name, x))
    with torch.inference_mode():
        for (_, gt_size), members in groups.items():
            for start in range(0, len(members), batch):
                chunk = members[start : start + batch]
                x = torch.stack([t for _, t in chunk]).to(device)
                t0 = time.perf_counter()
                prob, mode = foreground_probability(model(x), cfg.get("final_activation", "none"), mode)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                forward_s += time.perf_counter() - t0
                if tuple(prob.shape[-2:]) != gt_size:  # e.g. half-size outputs: compare at the GT's resolution
                    prob = F.interpolate(prob[:, None], size=gt_size, mode="bilinear", align_corners=False)[:, 0]
                masks = (prob > 0.5).to(torch.uint8).cpu().numpy()
                for (name, _), m in zip(chunk, masks):
                    predictions[name] = m
    # numpy's stub fears a key filling allow_pickle; the keys are image file names.
    np.savez_compressed(out_dir / "predictions.npz", **predictions)  # type: ignore[arg-type]
    info.update(eval_output=mode or "logits", forward_s=forward_s, device=device.type)
    (out_dir / "info.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
