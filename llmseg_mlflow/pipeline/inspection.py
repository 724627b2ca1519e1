"""The paper's Tables 1-2 row of a pipeline folder without training, and what the sandbox offers (doctor).

Static fields (batch size, epochs, optimizer, lr, weight decay, loss, input size) are read from the
code's syntax tree (`knobs.read_hyperparameters`). The network fields come from the network itself,
built INSIDE the sandbox by `inspect_net.py` (generated code never runs in the harness process) and
run once on a dummy batch (batch 1, the first conv's in_channels, the pipeline's input size or 256)
with forward hooks on every leaf module and a torch-function mode for functions called in forward():

- conv outputs are taken in execution order with their spatial resolution; the LAST conv is the
  final layer, the others are split at the lowest resolution they reach:
- encoder: convs before the first one at the lowest resolution; each distinct resolution is a stage,
  its width (`encoder_channels`) the output channels of its last conv;
- bottleneck: the convs at the lowest resolution; `bottleneck_channels` is the channel path through
  them: the first one's in_channels, then each one's out_channels, repeats collapsed (a DoubleConv
  512->1024 gives [512, 1024]);
- decoder: the convs after the last one at the lowest resolution, staged by resolution the same way;
- conv_block: the ops of the first encoder stage (the bottleneck when there is no encoder), e.g.
  "(Conv->BN->ReLU)x2", prefixed with the class of the code that holds exactly its convs
  ("DoubleConv: (Conv->BN->ReLU)x2");
- final_layer: the last conv, e.g. "Conv2d(64->1)", with "+Sigmoid" / "+Softmax" when one runs after
  it inside the model (an nn.Sigmoid or a torch.sigmoid in forward, in eval mode);
- params_total: every parameter of the built network.

The network is built from a class of model.py: those main.py (else train.py) instantiates, else those no
other model.py class uses, names containing "unet" first; with the literal arguments of that call
(module-level constants resolved), else defaults, with required in/out/width arguments guessed by the
evaluation worker's name sets (in = the dataset's channels, default 3; out = 1; width = 64).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmseg_mlflow import untrusted
from llmseg_mlflow.pipeline import knobs, sandbox

SCRIPT = Path(__file__).with_name("inspect_net.py")
WORKER = Path(__file__).parents[1] / "evaluation" / "worker.py"  # inspect_net imports its name sets
WORK_INSIDE = Path("/workspace")
PIPELINE_FILES = ("dataset.py", "model.py", "train.py", "main.py")
DEFAULT_SIZE = 256
DEFAULT_LIMITS = sandbox.Limits(timeout_s=600, memory_gb=8, output_mb=5, disk_gb=1)
STATIC = ("batch_size", "epochs", "optimizer", "lr", "weight_decay", "loss", "input_size")
NETWORK = (
    "encoder_stages",
    "decoder_stages",
    "conv_block",
    "encoder_channels",
    "decoder_channels",
    "bottleneck_channels",
    "final_layer",
    "params_total",
)
MAX_SIZE = 1024  # a larger input is probed at this size: the same stages, bounded memory
# Keep albumentations from calling home at import (no network in the sandbox: a warning and a delay).
_QUIET = {"NO_ALBUMENTATIONS_UPDATE": "1"}
_CPU = {**_QUIET, "CUDA_VISIBLE_DEVICES": ""}  # one forward pass needs no GPU, and a training may hold it


class NoModelClassError(ValueError):
    """The folder has no model.py, or model.py defines no nn.Module class."""


@dataclass(frozen=True)
class NetworkRow:
    """One pipeline's Tables 1-2 row: static choices from the code, network facts from a forward pass."""

    batch_size: int | None = None
    epochs: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    loss: str | None = None
    input_size: str | None = None
    encoder_stages: int | None = None
    decoder_stages: int | None = None
    conv_block: str | None = None
    encoder_channels: tuple[int, ...] | None = None
    decoder_channels: tuple[int, ...] | None = None
    bottleneck_channels: tuple[int, ...] | None = None
    final_layer: str | None = None
    params_total: int | None = None
    unavailable: str | None = None  # why the network fields are missing
    model_class: str | None = None
    constructed_with: str | None = None
    probe_input: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The JSON object of `llmseg inspect --json` (`unavailable` only when it applies)."""
        row = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {k: v for k, v in row.items() if k != "unavailable" or v is not None}

    def as_params(self) -> dict[str, str]:
        """The network fields as MLflow params (the static ones are logged from the same code already)."""
        params = {
            k: json.dumps(list(v)) if isinstance(v, tuple) else str(v)
            for k in NETWORK
            if k != "params_total" and (v := getattr(self, k)) is not None
        }
        if self.unavailable:
            params["network_unavailable"] = self.unavailable[:500]
        return params


def _number(text: str | None, kind: type) -> object:
    try:
        return kind(text) if text is not None else None
    except ValueError:
        return text  # "1e-3*2" and the like stay text


def static_fields(files: dict[str, str]) -> dict[str, object]:
    """The hyperparameters read from the code's syntax tree, numbers as numbers."""
    hp = knobs.read_hyperparameters(files)
    kinds = {"batch_size": int, "epochs": int, "lr": float, "weight_decay": float}
    return {k: _number(hp.get(k), kinds.get(k, str)) for k in STATIC}


def probe_size(input_size: object) -> list[int]:
    """ "256x256", "(1, 128, 160)" or 256 as [H, W] (at most MAX_SIZE); DEFAULT_SIZE when the code names none."""
    dims = [min(int(d), MAX_SIZE) for d in re.findall(r"\d{1,9}", str(input_size or ""))][-2:]
    return dims * 2 if len(dims) == 1 else dims or [DEFAULT_SIZE, DEFAULT_SIZE]


# ---- constructor calls, read from the syntax tree ------------------------------------------------

_UNRESOLVED = object()
_OPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Div: lambda a, b: a / b,
}


def _value(node: ast.expr, consts: dict[str, object]) -> object:
    """A literal, a module-level constant, or simple arithmetic/containers of them; else _UNRESOLVED."""
    if isinstance(node, ast.Constant):  # JSON-able kinds only: the value travels in config.json
        return node.value if isinstance(node.value, (int, float, str, type(None))) else _UNRESOLVED
    if isinstance(node, ast.Name):
        return consts.get(node.id, _UNRESOLVED)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):  # Config.BASE, args.base
        return consts.get(f"{node.value.id}.{node.attr}", consts.get(f"--{node.attr}", _UNRESOLVED))
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(e, consts) for e in node.elts]
        return _UNRESOLVED if _UNRESOLVED in items else items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        keys = [k for k in node.keys if isinstance(k, ast.Constant)]
        if len(keys) < len(node.keys):  # a computed key or a **spread
            return _UNRESOLVED
        entries = {k.value: _value(v, consts) for k, v in zip(keys, node.values)}
        return _UNRESOLVED if _UNRESOLVED in entries.values() else entries
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _value(node.operand, consts)
        return -v if isinstance(v, (int, float)) else _UNRESOLVED
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _value(node.left, consts), _value(node.right, consts)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a) < 1e9 and abs(b) < 1e9:
            try:
                return _OPS[type(node.op)](a, b)
            except ZeroDivisionError:
                return _UNRESOLVED
    if isinstance(node, ast.Subscript):  # CONFIG["base"], SIZES[0]
        box, key = _value(node.value, consts), _value(node.slice, consts)
        try:
            if isinstance(box, dict):
                return box[key]
            # a list or tuple index that is no int raised TypeError: unresolved either way
            return box[key] if isinstance(box, (list, tuple)) and isinstance(key, int) else _UNRESOLVED
        except (KeyError, IndexError, TypeError):
            return _UNRESOLVED
    return _UNRESOLVED


def _encode(value: object) -> object:
    """JSON for the config; tuples survive as {"__tuple__": [...]}."""
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def constructor_calls(files: dict[str, str], classes: set[str]) -> dict[str, dict]:
    """For each model.py class main.py (else train.py) instantiates: its first call's literal arguments.

    Names resolve to module-level constants, class attributes (Config.BASE) and argparse defaults (args.base).
    """
    calls: dict[str, dict] = {}
    for file in ("main.py", "train.py"):
        try:
            found = _calls_in(ast.parse(files.get(file, "")), file, classes)
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # a pathological file: no call read
            continue
        for name, call in found.items():
            calls.setdefault(name, call)  # main.py's call wins over train.py's
    return calls


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level NAME = value, class attributes as "Cls.NAME", argparse defaults as "--dest"."""
    consts: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            kws = {k.arg: k.value for k in node.keywords if k.arg}
            opts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dest_node = kws.get("dest")
            dest = (
                dest_node.value
                if isinstance(dest_node, ast.Constant)
                else next((o for o in opts if o.startswith("--")), opts[0] if opts else "")
            )
            if "default" in kws and (v := _value(kws["default"], consts)) is not _UNRESOLVED:
                consts["--" + str(dest).lstrip("-").replace("-", "_")] = v
    for node in tree.body:
        body, prefix = (node.body, f"{node.name}.") if isinstance(node, ast.ClassDef) else ([node], "")
        for item in body:
            if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
                if (v := _value(item.value, consts)) is not _UNRESOLVED:
                    consts[prefix + item.targets[0].id] = v
    return consts


def _calls_in(tree: ast.Module, file: str, classes: set[str]) -> dict[str, dict]:
    """The first call (in source order) of each class in one file, its arguments resolved where simple."""
    consts = _constants(tree)
    calls: dict[str, dict] = {}
    aliases, modules = {c: c for c in classes}, {"model"}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "model":
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in classes})
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name == "model" and a.asname)
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    for call in sorted(found, key=lambda n: (n.lineno, n.col_offset)):
        func = call.func
        name = (
            aliases.get(func.id)
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in modules
            and func.attr in classes
            else None
        )
        if name is None or name in calls:
            continue
        args: list[object] = []
        unresolved: list[str] = []
        for arg in call.args:
            v = _value(arg, consts)
            if v is _UNRESOLVED or isinstance(arg, ast.Starred) or unresolved:
                unresolved.append(ast.unparse(arg))  # later positionals cannot be placed either
            else:
                args.append(v)
        kwargs: dict[str, object] = {}
        for kw in call.keywords:
            v = _value(kw.value, consts) if kw.arg else _UNRESOLVED
            if v is _UNRESOLVED or not kw.arg:
                unresolved.append(f"{kw.arg or '**'}={ast.unparse(kw.value)}")
            else:
                kwargs[kw.arg] = v
        calls[name] = {
            "args": _encode(args),
            "kwargs": _encode(kwargs),
            "unresolved": unresolved,
            "where": f"{file}:{call.lineno}",
        }
    return calls


def model_classes(source: str) -> tuple[list[str], set[str]]:
    """model.py's class names, and those other model.py classes instantiate (components, not the network)."""
    tree = ast.parse(source, filename="model.py")
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    names = {c.name for c in classes}
    used = {
        n.func.id
        for c in classes
        for n in ast.walk(c)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names and n.func.id != c.name
    }
    return [c.name for c in classes], used


# ---- the sandbox run ------------------------------------------------------------------------------


def read_code(folder: Path) -> dict[str, str]:
    """The folder's Python files, read as untrusted (it may be an attempt folder generated code wrote)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return untrusted.code_files(folder)


def _network(raw: object) -> dict[str, object]:
    """The sandbox's answer, checked field by field: it was written by a process running generated code."""
    if not isinstance(raw, dict):
        return {"unavailable": "the inspection wrote no JSON object"}
    out: dict[str, object] = {}
    for key in ("encoder_stages", "decoder_stages", "params_total"):
        if type(raw.get(key)) is int:
            out[key] = raw[key]
    for key in ("encoder_channels", "decoder_channels", "bottleneck_channels"):
        value = raw.get(key)
        if isinstance(value, list) and len(value) <= 64 and all(type(v) is int for v in value):
            out[key] = tuple(value)
    for key in ("conv_block", "final_layer", "unavailable", "model_class", "constructed_with", "probe_input"):
        if isinstance(raw.get(key), str):
            out[key] = raw[key][:1000]
    if not out.keys() & set(NETWORK) and "unavailable" not in out:
        out["unavailable"] = "the inspection wrote no network fields"
    return out


def inspect_pipeline(
    folder: Path, limits: sandbox.Limits | None = None, unsafe_no_sandbox: bool = False, channels: int | None = None
) -> NetworkRow:
    """The Tables 1-2 row of the pipeline in `folder`; NoModelClassError when it has no network class.

    `channels`: the dataset's image channels, used only when the constructor's in-channel argument must
    be guessed (default 3).
    """
    files = read_code(folder)
    read = ", ".join(f for f in PIPELINE_FILES if f in files) or "none of " + ", ".join(PIPELINE_FILES)
    if "model.py" not in files:
        raise NoModelClassError(f"no model.py in {folder} (read: {read})")
    try:
        classes, components = model_classes(files["model.py"])
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise NoModelClassError(f"model.py in {folder} does not parse: {exc} (read: {read})") from None
    if not classes:
        raise NoModelClassError(f"model.py in {folder} defines no class (read: {read})")
    static: dict[str, Any] = static_fields(files)  # NetworkRow's keyword arguments
    calls = constructor_calls(files, set(classes))
    work = Path(tempfile.mkdtemp(prefix="llmseg-inspect-"))
    try:
        box = work / "sandbox"  # the one folder the sandbox may write; its logs go beside it
        (box / "code").mkdir(parents=True)
        for name, text in files.items():
            (box / "code" / name).write_text(text)
        shutil.copy(SCRIPT, box / "inspect_net.py")
        shutil.copy(WORKER, box / "worker.py")
        at = box if unsafe_no_sandbox else WORK_INSIDE
        config = {
            "code_dir": str(at / "code"),
            "out": str(at / "out" / "network.json"),
            "input_size": probe_size(static["input_size"]),
            "channels": channels or 3,
            "calls": calls,
            "called": [c for c in calls if c in classes],
            "components": sorted(components),
        }
        (box / "config.json").write_text(json.dumps(config))
        mounts = sandbox.Mounts(box, workdir_at=None if unsafe_no_sandbox else WORK_INSIDE)
        result = sandbox.run(
            [sys.executable, "inspect_net.py", "config.json"],
            mounts,
            limits or DEFAULT_LIMITS,
            log_dir=work / "logs",
            env=_CPU,
            unsafe_no_sandbox=unsafe_no_sandbox,
            name="inspect",
        )
        try:
            raw = json.loads(untrusted.read_bytes(box / "out" / "network.json", 1024**2))
        except (OSError, ValueError, RecursionError):  # a missing, hostile or 10^5-deep JSON file
            why = "timed out" if result.timed_out else "ran out of memory" if result.out_of_memory else "failed"
            raw = {
                "unavailable": f"the inspection {why} (exit {result.returncode}): "
                f"{result.stderr_text().strip()[-500:] or 'no output'}"
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if isinstance(raw, dict) and raw.get("error") == "no_model_class":
        raise NoModelClassError(
            f"model.py in {folder} defines no nn.Module class (classes: {', '.join(classes)}; read: {read})"
        )
    network: dict[str, Any] = _network(raw)  # checked field by field
    return NetworkRow(**static, **network)


def _text(value: object) -> str:
    if value is None:
        return "-"
    return (
        ", ".join(map(str, value))
        if isinstance(value, (list, tuple))
        else f"{value:,}"
        if type(value) is int
        else str(value)
    )


def render_row(row: NetworkRow) -> list[str]:
    """`llmseg inspect`'s table: one field a line."""
    lines = [f"{k:20} {_text(getattr(row, k))}" for k in STATIC + NETWORK]
    if row.unavailable:
        lines.append(f"{'network':20} unavailable: {row.unavailable}")
    else:
        lines.append(f"{'built as':20} {row.model_class}({row.constructed_with}) on a {row.probe_input} dummy batch")
    return lines
