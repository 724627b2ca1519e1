"""Build the pipeline's network inside the sandbox, run one dummy forward pass, describe what ran.

Runs as a standalone script (`python inspect_net.py config.json`) in the sandbox, because it imports
generated code; `inspection.py` copies it (with the evaluation worker, whose constructor-argument name
sets it reuses) into a scratch folder and reads back out/network.json. Definitions (the paper's
Tables 1-2 columns) are in `inspection.py`'s docstring.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import re
import sys
import traceback
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from worker import BASE_NAMES, IN_NAMES, OUT_NAMES  # copied beside this script by inspection.py

# Leaf modules by class name without its 1d/2d/3d suffix; others keep their name.
_SHORT = {
    "BatchNorm": "BN",
    "InstanceNorm": "IN",
    "GroupNorm": "GN",
    "LayerNorm": "LN",
    "ConvTranspose": "ConvT",
    "Conv": "Conv",
    "ReLU6": "ReLU",
    "Dropout": "Dropout",
    "AlphaDropout": "Dropout",
    "MaxPool": "MaxPool",
    "AvgPool": "AvgPool",
    "Upsample": "Upsample",
    "UpsamplingBilinear": "Upsample",
    "UpsamplingNearest": "Upsample",
    "AdaptiveAvgPool": "AvgPool",
    "AdaptiveMaxPool": "MaxPool",
}
# Functions called directly in a forward() (not inside a leaf module), by __name__.
_FUNCS = {
    "sigmoid": "Sigmoid",
    "sigmoid_": "Sigmoid",
    "softmax": "Softmax",
    "log_softmax": "Softmax",
    "relu": "ReLU",
    "relu_": "ReLU",
    "relu6": "ReLU",
    "leaky_relu": "LeakyReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "elu": "ELU",
    "tanh": "Tanh",
    "batch_norm": "BN",
    "instance_norm": "IN",
    "group_norm": "GN",
    "layer_norm": "LN",
    "dropout": "Dropout",
    "dropout2d": "Dropout",
    "interpolate": "Upsample",
}
# What may follow a block's last conv and still belong to the block.
_KEEP_AFTER_CONV = {
    "BN",
    "IN",
    "GN",
    "LN",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "GELU",
    "SiLU",
    "ELU",
    "Mish",
    "Tanh",
    "Dropout",
}
_OUTPUT_ACTIVATIONS = {"Sigmoid", "Softmax"}


def short_name(cls_name: str) -> str:
    """Conv2d -> Conv, BatchNorm2d -> BN, ...; unknown classes keep their name."""
    base = re.sub(r"[123]d$", "", cls_name)
    return _SHORT.get(base, base)


class Recorder(TorchFunctionMode):
    """Leaf-module calls (via global hooks) and functions called in forward() bodies, in execution order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict] = []
        self.stack: list[nn.Module] = []

    def pre(self, module, args):
        self.stack.append(module)

    def post(self, module, args, out):
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
        if next(module.children(), None) is not None:
            return
        event = {"op": short_name(type(module).__name__), "owners": [id(m) for m in self.stack], "module": module}
        if isinstance(module, nn.modules.conv._ConvNd) and isinstance(out, torch.Tensor):
            event.update(
                conv=type(module).__name__,
                cin=module.in_channels,
                cout=module.out_channels,
                k=list(module.kernel_size),
                res=list(out.shape[2:]),
            )
        if event["op"] != "Identity":
            self.add(event)

    def add(self, event: dict) -> None:
        event["i"] = len(self.events)  # events are compared by position: one module may run twice
        self.events.append(event)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        leaf = self.stack and next(self.stack[-1].children(), None) is None
        if not leaf and getattr(func, "__name__", "") in _FUNCS:  # inside a leaf it is the leaf's own work
            self.add({"op": _FUNCS[func.__name__], "owners": [id(m) for m in self.stack], "module": None})
        return func(*args, **(kwargs or {}))


def _decode(value):
    """Tuples travel as {"__tuple__": [...]} in the config."""
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _guess(param: inspect.Parameter, channels: int):
    """A value for a required constructor argument, by the evaluation worker's name sets."""
    name = param.name.lower()
    if name in IN_NAMES:
        return channels
    if name in OUT_NAMES:
        return 1
    if name in BASE_NAMES:
        return 64
    raise LookupError(param.name)


def candidates(cls: type, call: dict | None, channels: int) -> tuple[list[tuple[list, dict, str]], str]:
    """(args, kwargs, where) to try, and why none where there are none.

    main.py's own call first, then the defaults; either with required arguments it leaves out guessed
    by the evaluation worker's in/out/width name sets.
    """
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return [([], {}, "defaults")], ""
    tries, missing = [], []
    starts = ([(_decode(call["args"]), _decode(call["kwargs"]), call["where"])] if call else []) + [
        ([], {}, "defaults")
    ]
    for args, kwargs, where in starts:
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError as exc:
            missing.append(f"{where}: {exc}")
            continue
        added, unknown = {}, []
        for p in sig.parameters.values():
            if (
                p.name not in bound.arguments
                and p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ):
                try:
                    added[p.name] = _guess(p, channels)
                except LookupError:
                    unknown.append(p.name)
        if unknown:
            missing.append(
                f"{cls.__name__}() needs {', '.join(unknown)}"
                + (
                    f" ({call['where']} passes values known only at run time: {', '.join(call['unresolved'])})"
                    if call and call.get("unresolved")
                    else ""
                )
            )
            continue
        tries.append(
            (
                list(bound.args),
                {**bound.kwargs, **added},
                where + (f" + guessed {', '.join(f'{k}={v}' for k, v in added.items())}" if added else ""),
            )
        )
    return tries, "; ".join(dict.fromkeys(missing))


def _shape_of(input_size: list[int], conv: nn.modules.conv._ConvNd, channels: int) -> tuple[int, ...]:
    dims = len(conv.kernel_size)
    spatial = list(input_size[-dims:]) if len(input_size) >= dims else [input_size[-1]] * dims
    return (1, channels, *spatial)


def probe(model: nn.Module, input_size: list[int], channels: int) -> tuple[list[dict], list[int]]:
    """One forward pass of a dummy batch with recording on: the events and the input shape.

    Channels: the first registered conv's in_channels; when that conv is not the first to run
    (modules registered out of order), the pipeline's own channel count, then 1 and 3.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError("the network has no convolution")
    error: BaseException | None = None
    for c in dict.fromkeys([convs[0].in_channels, channels, 1, 3]):
        shape = _shape_of(input_size, convs[0], c)
        rec = Recorder()
        handles = [
            nn.modules.module.register_module_forward_pre_hook(rec.pre),
            nn.modules.module.register_module_forward_hook(rec.post),
        ]
        try:
            with torch.no_grad(), rec:
                model(torch.rand(shape))
            return rec.events, list(shape)
        except RuntimeError as exc:  # shape mismatches; anything else is the code's own failure
            error = error or exc
        finally:
            for h in handles:
                h.remove()
    assert error is not None  # every try above failed with one
    raise error


def _collapse(tokens: list[str]) -> str:
    """Conv BN ReLU Conv BN ReLU -> (Conv->BN->ReLU)x2; no repeating unit -> joined by ->."""
    n = len(tokens)
    for period in range(1, n // 2 + 1):
        if n % period == 0 and tokens == tokens[:period] * (n // period):
            unit = "->".join(tokens[:period])
            return f"({unit})x{n // period}" if period > 1 else f"{unit}x{n}"
    return "->".join(tokens)


def conv_block(events: list[dict], block: list[dict], root: nn.Module) -> str:
    """The ops of one stage from its first conv on, named after the deepest class of the code holding exactly its convs."""
    common = set.intersection(*(set(e["owners"]) for e in block))
    modules = {id(m): m for m in root.modules()}
    convs = [e for e in events if "conv" in e]
    owner = None
    for mid in reversed(block[0]["owners"]):  # deepest first
        m = modules.get(mid)
        if (
            mid in common
            and m is not None
            and m is not root
            and not type(m).__module__.startswith("torch.")
            and [c["i"] for c in convs if mid in c["owners"]] == [b["i"] for b in block]
        ):
            owner = m
            break
    if owner is not None:
        tokens = [e["op"] for e in events if id(owner) in e["owners"]]
    else:
        first, last = block[0]["i"], block[-1]["i"]
        tokens = [e["op"] for e in events[first : last + 1]]
        for e in events[last + 1 :]:
            if e["op"] not in _KEEP_AFTER_CONV:
                break
            tokens.append(e["op"])
    pattern = _collapse(tokens)
    return f"{type(owner).__name__}: {pattern}" if owner is not None else pattern


def describe(model: nn.Module, events: list[dict]) -> dict:
    """Stages, channels, block and final layer from the recorded conv resolutions (see inspection.py)."""
    convs = [e for e in events if "conv" in e]
    if not convs:
        raise ValueError("no convolution ran in the forward pass")
    final, body = convs[-1], convs[:-1]
    area = [math.prod(e["res"]) for e in body]
    low = min(area) if area else None
    first = area.index(low) if area else 0
    last = len(area) - 1 - area[::-1].index(low) if area else -1
    encoder, decoder = body[:first], body[last + 1 :]
    bottleneck = [e for e, a in zip(body[first : last + 1], area[first : last + 1]) if a == low]

    def stages(part: list[dict]) -> list[int]:
        by_res: dict[tuple, int] = {}
        for e in part:  # insertion order = first appearance; the value = the stage's last conv's width
            by_res[tuple(e["res"])] = e["cout"]
        return list(by_res.values())

    path = [bottleneck[0]["cin"]] + [e["cout"] for e in bottleneck] if bottleneck else []
    path = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    first_res = tuple(encoder[0]["res"]) if encoder else None
    block = [e for e in encoder if tuple(e["res"]) == first_res] if encoder else bottleneck
    kernel = "" if set(final["k"]) == {1} else f", k{'x'.join(map(str, final['k']))}"
    after = events[final["i"] + 1 :]
    act = next((e["op"] for e in after if e["op"] in _OUTPUT_ACTIVATIONS), None)
    enc, dec = stages(encoder), stages(decoder)
    return {
        "encoder_stages": len(enc),
        "decoder_stages": len(dec),
        "conv_block": conv_block(events, block, model) if block else "",
        "encoder_channels": enc,
        "decoder_channels": dec,
        "bottleneck_channels": path,
        "final_layer": f"{final['conv']}({final['cin']}->{final['cout']}{kernel})" + (f"+{act}" if act else ""),
        "params_total": sum(p.numel() for p in model.parameters()),
    }


def inspect_classes(cfg: dict) -> dict:
    """Try each candidate class and argument set until one builds and runs; the row's network part."""
    try:
        module = importlib.import_module("model")
    except BaseException as exc:  # noqa: BLE001 - generated code may raise anything, SystemExit included
        return {"unavailable": f"importing model.py raised {type(exc).__name__}: {str(exc)[:300]}"}
    classes = {
        name: c
        for name, c in vars(module).items()
        if inspect.isclass(c) and issubclass(c, nn.Module) and c.__module__ == module.__name__
    }
    if not classes:
        return {"error": "no_model_class"}

    def rank(n: str) -> tuple:
        size = len(inspect.getsource(classes[n])) if _has_source(classes[n]) else 0
        return "unet" not in n.lower(), "loss" in n.lower(), -size

    called = sorted((n for n in cfg["called"] if n in classes), key=rank)
    others = sorted((n for n in classes if n not in called and n not in cfg["components"]), key=rank)
    reasons = []
    # Classes main.py builds come first. The first class that is plainly the network (it needs values
    # main.py computes at run time, or it builds with convolutions) decides: no other class stands in.
    for name in called + (others or [n for n in classes if n not in called]):
        tries, missing = candidates(classes[name], cfg["calls"].get(name), cfg["channels"])
        if missing and not tries:
            reasons.append(missing)
            if cfg["calls"].get(name, {}).get("unresolved"):
                break
        for args, kwargs, where in tries:
            torch.manual_seed(0)
            try:
                model = classes[name](*args, **kwargs).eval()
            except BaseException as exc:  # noqa: BLE001
                reasons.append(f"{name}({where}) raised {type(exc).__name__}: {str(exc)[:200]}")
                continue
            if not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
                reasons.append(f"{name} has no convolution")
                break
            try:
                events, shape = probe(model, cfg["input_size"], cfg["channels"])
                row = describe(model, events)
            except BaseException as exc:  # noqa: BLE001
                reasons.append(f"{name}({where}): forward pass failed: {type(exc).__name__}: {str(exc)[:200]}")
                return {"unavailable": "; ".join(reasons)[:1000]}
            return {**row, "model_class": name, "constructed_with": where, "probe_input": "x".join(map(str, shape))}
    return {"unavailable": "; ".join(reasons)[:1000] or "no candidate class"}


def _has_source(cls: type) -> bool:
    try:
        inspect.getsource(cls)
        return True
    except (OSError, TypeError):
        return False


def main(config_path: str) -> None:
    """Write out/network.json for the code in config's code_dir."""
    cfg = json.loads(Path(config_path).read_text())
    out = Path(cfg["out"]).resolve()
    code_dir = Path(cfg["code_dir"]).resolve()
    sys.path.insert(0, str(code_dir))
    os.chdir(code_dir)
    sys.argv = ["model.py"]
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    result = inspect_classes(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
