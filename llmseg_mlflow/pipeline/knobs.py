"""Find, read and override the knobs (paths, epochs, hyperparameters) in LLM-written pipeline code.

Everything works on the syntax tree: a knob is a name (variable, dict key, argparse dest, parameter,
call keyword, class attribute) that matches a role's pattern and holds a literal of the right kind.
Overrides replace only the value's source segment, so the rest of the text stays byte-identical.
Which harness folder a path knob gets follows what its value named (knob_targets), its name only as a fallback.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
from dataclasses import dataclass, replace
from typing import cast

from llmseg_mlflow.pipeline import knob_targets

PATH_ROLES = ("data_dir", "image_dir", "mask_dir", "save_dir")
OVERRIDABLE = PATH_ROLES + ("epochs",)
HYPERPARAMETERS = ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "loss", "input_size")
ROLES = PATH_ROLES + HYPERPARAMETERS

_DIR = r"_?(?:dir|path|folder|root|directory)"
_PATTERNS = {  # matched against the lower-cased name with dashes as underscores
    "image_dir": rf"(?:train_|input_|raw_|src_|source_)?(?:images?|imgs?){_DIR}",
    "mask_dir": rf"(?:train_|raw_)?(?:masks?|labels?|gts?|ground_truths?|annotations?|segs?){_DIR}",
    "data_dir": rf"(?:data|dataset|datasets|base|root|pool|input){_DIR}|data|dataset|root",
    "save_dir": rf"(?:model_|best_)?(?:save|saved_models?|outputs?|out|results?|checkpoints?|ckpts?"
    rf"|models?|weights?){_DIR}",
    "epochs": r"(?:num_|n_|max_|total_|nb_|number_of_|train_|training_)?epochs"
    r"|(?:num|n|max|total|nb)_?epoch|num_train_epochs|epoch_(?:num|count)",
    "batch_size": r"(?:train_|training_)?batch_?size|bs",
    "lr": r"lr|learning_?rate|(?:init|initial|base)_lr",
    "weight_decay": r"weight_?decay|wd|l2_?(?:reg|lambda|penalty)?",
    "optimizer": r"optimi[sz]er(?:_name|_type)?|optim",
    "loss": r"loss_?(?:fn|func|function|type|name)|criterion(?:_name)?",
    "input_size": r"(?:image|img|input|target|resize|patch|crop)_?(?:size|shape|dims?|resolution|res)",
}
_ROLE_RX = {role: re.compile(rx) for role, rx in _PATTERNS.items()}
# A folder left as the reply's placeholder and passed straight to a call: Dataset('path_to_images', 'path_to_masks')
_PLACEHOLDER = re.compile(
    r"/?(?:path[_/ -]to[_/ -](?:your[_/ -])?|your[_/ -])(?P<what>[a-z]+)(?:[_/ -](?:dir|directory|folder|path))?/?"
)
# A literal ending like a file name is a file, not a folder (model_path = "unet.pth", f"{name}_seg.png").
_FILE_EXT = re.compile(
    r"\.(?:pth|pt|ckpt|png|jpe?g|tiff?|bmp|xlsx?|csv|json|txt|npy|npz|nii|gz|h5|ya?ml|pkl)$", re.IGNORECASE
)
_PATH_CALLS = {
    "join",
    "joinpath",
    "Path",
    "PurePath",
    "PosixPath",
    "abspath",
    "expanduser",
    "normpath",
    "realpath",
    "resolve",
    "absolute",
    "getenv",
    "get",
    "str",
    "format",
    "dirname",
    "getcwd",
    "cwd",
}
_PATH_TYPES = {"Path", "PurePath", "PosixPath"}
_MODULE_ROOTS = {"os", "pathlib", "Path", "sys"}
_OPTIMIZERS = {"Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "LBFGS"}
# For reading: main.py runs last and passes its values down, and an explicit setting beats a default.
_WHERE_RANK = {"argparse": 0, "constant": 1, "dict": 1, "attribute": 1, "call": 2, "keyword": 3, "default": 4}
_FILE_RANK = {"main.py": 0, "train.py": 1, "dataset.py": 2, "model.py": 3}
_MISSING = object()


@dataclass(frozen=True)
class Knob:
    """One place in the generated code that sets a role's value."""

    role: str  # data_dir|image_dir|mask_dir|save_dir|epochs|batch_size|lr|weight_decay|optimizer|loss|input_size
    file: str  # "main.py"
    lineno: int
    where: str  # constant|dict|argparse|default|keyword|attribute|call (optimizer/loss class, Resize size)
    name: str  # the name as written (NUM_EPOCHS, --epochs, "epochs")
    value: str  # source text of the current value ("None" for an argparse option without default)
    derived: bool = False  # value refers to another knob; not overridden


@dataclass(frozen=True)
class Override:
    """One value the harness replaced in the generated code."""

    role: str
    file: str
    lineno: int
    name: str
    old: str
    new: str


@dataclass(eq=False)
class _Hit:
    knob: Knob
    node: ast.expr | None  # the value expression to replace (None: argparse option without default)
    ref: str  # normalized name that other values refer to it by
    refs: frozenset[str]  # normalized names its value refers to (path roles)
    call: ast.Call | None  # the add_argument call of an argparse knob
    col: int
    file_name: str | None = None  # a single image or mask file: its name inside the harness's folder


def _line_starts(data: bytes) -> list[int]:
    """Byte offset of each line: ast columns count UTF-8 bytes."""
    return [0, *itertools.accumulate(map(len, data.splitlines(keepends=True)))]


def _norm(name: str) -> str:
    return name.strip().strip("'\"").lower().lstrip("-").replace("-", "_")


def _start(node: ast.expr | ast.keyword, starts: list[int]) -> int:
    """Byte offset where a parsed node's source begins."""
    return starts[node.lineno - 1] + node.col_offset


def _end(node: ast.expr | ast.keyword, starts: list[int]) -> int:
    """Byte offset where a parsed node's source ends (ast.parse always sets the end position)."""
    assert node.end_lineno is not None and node.end_col_offset is not None
    return starts[node.end_lineno - 1] + node.end_col_offset


def _role_of(name: str) -> str | None:
    return next((role for role, rx in _ROLE_RX.items() if rx.fullmatch(_norm(name))), None)


def _literal(node: ast.AST | str) -> object:
    try:
        return ast.literal_eval(ast.parse(f"({node})", mode="eval").body if isinstance(node, str) else node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _path_parts(node: ast.expr, lits: list[str], refs: set[str]) -> bool:
    """Collect the literals and referenced names of a path expression; False if it is not one."""
    if isinstance(node, ast.Constant):
        lits.extend([node.value] if isinstance(node.value, str) else [])
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.FormattedValue) else v for v in node.values]
        return all(_path_parts(p, lits, refs) for p in parts)
    if isinstance(node, ast.Name):
        refs.add(node.id)
        return True
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Call):  # Path(__file__).parent
            return _path_parts(node.value, lits, refs)
        refs.add(node.attr)  # args.data_dir, Config.DATA_DIR, self.root
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Add)):
        return _path_parts(node.left, lits, refs) and _path_parts(node.right, lits, refs)
    if isinstance(node, ast.Call) and _callee(node) in _PATH_CALLS:
        parts = [*node.args, *(k.value for k in node.keywords)]
        if isinstance(node.func, ast.Attribute) and _root_name(node.func.value) not in _MODULE_ROOTS:
            parts.append(node.func.value)  # "{}/x".format(D), Path("x").resolve(), DATA_DIR.joinpath("x")
        return all(_path_parts(p, lits, refs) for p in parts)
    return False  # a subscript, a method like .replace(): a per-sample path, not a folder setting


def _path_refs(node: ast.expr) -> frozenset[str] | None:
    """Names a hard-coded folder expression refers to, or None when the value is no folder literal."""
    lits: list[str] = []
    refs: set[str] = set()
    if not _path_parts(node, lits, refs) or not lits or any(_FILE_EXT.search(s) for s in lits):
        return None
    return frozenset(_norm(r) for r in refs) - {"__file__"}


def _accepts(role: str, node: ast.expr) -> bool:
    value = _literal(node)
    if role in ("epochs", "batch_size"):
        return type(value) is int
    if role in ("lr", "weight_decay"):
        return type(value) in (int, float)
    if role in ("optimizer", "loss"):
        return isinstance(value, str)
    ints = value if isinstance(value, (tuple, list)) else (value,)
    return 0 < len(ints) <= 4 and all(type(v) is int for v in ints)  # input_size: 256, (256, 256), (1, 256, 256)


def _signatures(files: dict[str, str]) -> dict[str, list[str]]:
    """Positional parameter names of the pipeline's own module-level functions and classes (their __init__ less
    self): a literal passed by position takes its parameter's name, `Dataset('data')` fills `image_dir`."""
    found: dict[str, list[str]] = {}
    for file, src in files.items():
        try:
            body = ast.parse(src).body if file.endswith(".py") else []
        except (SyntaxError, ValueError, RecursionError):
            continue
        for node in body:
            if isinstance(node, ast.ClassDef):
                init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
                if init is not None:
                    found[node.name] = [a.arg for a in init.args.posonlyargs + init.args.args][1:]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[node.name] = [a.arg for a in node.args.posonlyargs + node.args.args]
    return found


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str, src: str, folders: dict[str, str], signatures: dict[str, list[str]]) -> None:
        self.file, self.scopes, self.folders, self.signatures = file, ["module"], folders, signatures
        self.hits: list[_Hit] = []
        self.data = src.encode("utf-8")
        self.starts = _line_starts(self.data)  # ast.get_source_segment re-splits the file on every call
        self.in_loss = False  # inside a custom Loss class, whose parts are not the loss

    def _text(self, node: ast.expr) -> str:
        return self.data[_start(node, self.starts) : _end(node, self.starts)].decode("utf-8", "replace")

    def _add(
        self,
        name: str,
        node: ast.expr | None,
        where: str,
        at: ast.expr,
        ref: str | None = None,
        call: ast.Call | None = None,
        value: str | None = None,
        role: str | None = None,
    ) -> None:
        role = role or _role_of(ref or name)
        if role is None:
            return
        refs: frozenset[str] = frozenset()
        unset = node is None or (isinstance(node, ast.Constant) and node.value is None)
        if where == "call" or (where == "argparse" and unset):
            pass  # a class the code builds, or an option without default (which can still be given one)
        elif node is None:
            return  # nothing to read (only a built class or an argparse option comes without a value)
        elif role in PATH_ROLES:
            if (found := _path_refs(node)) is None:
                if role == "save_dir" or knob_targets.file_target(knob_targets.path_text(node), self.folders) is None:
                    return
                found = frozenset()  # IMAGE_PATH = "data/images/1.png": it gets the same name in our folder
            refs = found
        elif not _accepts(role, node):
            return
        text = value if value is not None else self._text(node) if node is not None else "None"
        knob = Knob(role, self.file, at.lineno, where, name, text)
        self.hits.append(_Hit(knob, node, _norm(ref or name), refs, call, at.col_offset))

    def _target(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)):
            for t, v in zip(target.elts, value.elts) if len(target.elts) == len(value.elts) else ():
                self._target(t, v)
        elif isinstance(target, ast.Name):
            self._add(target.id, value, "attribute" if self.scopes[-1] == "class" else "constant", value)
        elif isinstance(target, ast.Attribute):
            self._add(self._text(target), value, "attribute", value, ref=target.attr)
        elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
            if isinstance(target.slice.value, str):  # config["epochs"] = 25
                self._add(self._text(target.slice), value, "dict", value, ref=target.slice.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._target(node.target, node.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self._add(self._text(key), value, "dict", value, ref=key.value)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scopes.append("class")
        outer, self.in_loss = self.in_loss, self.in_loss or "Loss" in node.name
        self.generic_visit(node)
        self.scopes.pop()
        self.in_loss = outer

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        args = node.args
        positional = args.posonlyargs + args.args
        pairs = [
            *zip(positional[len(positional) - len(args.defaults) :], args.defaults),
            *zip(args.kwonlyargs, args.kw_defaults),
        ]
        for arg, default in pairs:
            if default is not None:
                self._add(arg.arg, default, "default", default)
        self.scopes.append("function")
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        name, func_text = _callee(node), self._text(node.func)
        if name == "add_argument":
            self._argparse(node)
        else:
            where = "dict" if isinstance(node.func, ast.Name) and name == "dict" else "keyword"
            for kw in node.keywords:
                if kw.arg:
                    self._add(kw.arg, kw.value, where, kw.value)
            params = self.signatures.get(name, [])
            for k, arg in enumerate(node.args):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if found := _PLACEHOLDER.fullmatch(arg.value.lower()):
                        self._add(arg.value, arg, "keyword", arg, role=_role_of(f"{found['what']}_dir"))
                    elif k < len(params):  # Llama 3.1 405B's BinarySegmentationDataset('data')
                        self._add(params[k], arg, "keyword", arg)
        in_optim = ".optim." in f".{func_text}." and "lr_scheduler" not in func_text
        if name in _OPTIMIZERS or (in_optim and name[:1].isupper()):
            self._add(func_text, None, "call", node, value=name, role="optimizer")
        elif re.fullmatch(r"[A-Z]\w*Loss", name) and not self.in_loss:
            self._add(func_text, None, "call", node, value=name, role="loss")
        elif name in ("Resize", "resize"):
            keywords = [k.value for k in node.keywords if k.arg in ("size", "dsize", "height", "width")]
            sizes = [a for a in [*node.args, *keywords] if _accepts("input_size", a)]
            # albumentations writes Resize(height, width): two int arguments are one size
            pair = len(sizes) > 1 and all(type(_literal(s)) is int for s in sizes[:2])
            if sizes:
                value = ", ".join(self._text(s) for s in sizes[: 2 if pair else 1])
                self._add(func_text, None, "call", node, value=value, role="input_size")
        self.generic_visit(node)

    def _argparse(self, call: ast.Call) -> None:
        opts = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if not opts or len(opts) != len(call.args):
            return
        kws = {k.arg: k.value for k in call.keywords if k.arg}
        name = next((o for o in opts if o.startswith("--")), opts[0])
        dest = kws.get("dest")
        ref = dest.value if isinstance(dest, ast.Constant) and isinstance(dest.value, str) else name
        default = kws.get("default")
        self._add(name, default, "argparse", default or call, ref=ref, call=call)


def _scan(files: dict[str, str], folders: dict[str, str] | None = None) -> list[tuple[_Hit, str]]:
    """Every knob hit with its file's source, derived paths marked, path roles as their values say, in order."""
    found: list[tuple[_Hit, str]] = []
    signatures = _signatures(files)
    for file, src in files.items():
        if not file.endswith(".py"):
            continue
        scanner = _Scanner(file, src, folders or {}, signatures)
        try:
            scanner.visit(ast.parse(src, filename=file))
        except (SyntaxError, ValueError, RecursionError):  # the sandbox run reports it; nothing to locate
            continue
        found += [(hit, src) for hit in sorted(scanner.hits, key=lambda h: (h.knob.lineno, h.col))]
    located = {hit.ref for hit, _ in found if hit.knob.role in PATH_ROLES}
    kept = []
    for hit, src in found:
        if hit.refs & located:  # follows another knob, e.g. os.path.join(DATA_DIR, "images")
            hit.knob = replace(hit.knob, derived=True)
        elif any(_role_of(r) not in PATH_ROLES for r in hit.refs):  # built from a loop variable etc.
            continue
        kept.append((hit, src))  # a literal, or anchored on a folder we cannot set (BASE_DIR = __file__)
    _retarget([hit for hit, _ in kept], folders or {})
    return kept


def _retarget(hits: list[_Hit], folders: dict[str, str]) -> None:
    """Give each path knob the role its value named (DATA_PATH = ".../images" is the images folder)."""
    anchors = set().union(*(hit.refs for hit in hits if hit.knob.derived))
    paths = [hit for hit in hits if hit.knob.role in PATH_ROLES and not hit.knob.derived]
    found = knob_targets.targets(
        [
            knob_targets.PathKnob(
                hit.knob.file,
                hit.knob.role,
                None if hit.node is None else knob_targets.path_text(hit.node),
                hit.ref in anchors,
            )
            for hit in paths
        ],
        folders,
    )
    for hit, (role, file_name) in zip(paths, found):
        hit.knob, hit.file_name = replace(hit.knob, role=role), file_name


def locate(files: dict[str, str]) -> list[Knob]:
    """Every knob in the files, in file/line order."""
    return [hit.knob for hit, _ in _scan(files)]


def _short(knob: Knob) -> str | None:
    if knob.where == "call" and knob.role in ("optimizer", "loss"):
        return knob.value
    value = _literal(knob.value)
    if value is None or value is _MISSING:
        return None
    if knob.role == "input_size":
        # _accepts let only an int or a tuple or list of ints through: (C, H, W) -> HxW
        dims = [value, value] if type(value) is int else list(cast("tuple[int, ...] | list[int]", value))[-2:]
        return "x".join(str(d) for d in dims)
    return value if isinstance(value, str) else repr(value)


def read_hyperparameters(files: dict[str, str]) -> dict[str, str]:
    """The hyperparameters the LLM chose as role -> short text (MLflow params); missing roles are absent."""
    knobs = [k for k in locate(files) if k.role in HYPERPARAMETERS and _short(k) is not None]
    result: dict[str, str] = {}
    for role in HYPERPARAMETERS:
        mine = [k for k in knobs if k.role == role]
        if role in ("optimizer", "loss") and any(k.where == "call" for k in mine):
            mine = [k for k in mine if k.where == "call"]  # the class really built beats a config string
        mine.sort(key=lambda k: (_FILE_RANK.get(os.path.basename(k.file), 4), _WHERE_RANK[k.where], k.lineno))
        if mine:
            shorts = [_short(k) for k in (mine if role == "loss" else mine[:1])]
            result[role] = "+".join(dict.fromkeys(s for s in shorts if s))
    return result


def _replacements(values: dict[str, object]) -> dict[str, str]:
    unknown = sorted(set(values) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(
            f"cannot override {', '.join(map(repr, unknown))}: "
            f"the roles that can be overridden are {', '.join(OVERRIDABLE)}"
        )
    texts = {}
    for role, value in values.items():
        if role == "epochs":
            if type(value) is not int or value < 1:
                raise ValueError(f"the epochs override must be a positive int, got {value!r}")
            texts[role] = repr(value)
        elif isinstance(value, (str, os.PathLike)):
            texts[role] = repr(os.fspath(value))
        else:
            raise ValueError(f"the {role} override must be a path (str or pathlib.Path), got {value!r}")
    return texts


def _path_type(node: ast.expr | None, src: str) -> str | None:
    """The Path class a path expression evaluates to (so the override keeps its type), else None."""
    while node is not None:
        if isinstance(node, ast.Call) and _callee(node) in _PATH_TYPES:
            return ast.get_source_segment(src, node.func)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            node = node.left
        elif isinstance(node, ast.Attribute) and node.attr == "parent":
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _callee(node) in _PATH_CALLS:
            node = node.func.value
        else:
            return None
    return None


def _edits(hit: _Hit, new: str, starts: list[int]) -> list[tuple[int, int, str]]:
    """Byte spans to replace (start, end, text); an argparse option may also get required=False and a default."""

    def span(node: ast.expr | ast.keyword, text: str, insert: bool = False) -> tuple[int, int, str]:
        end = _end(node, starts)
        return (end if insert else _start(node, starts)), end, text

    if hit.call is None:
        assert hit.node is not None  # only an argparse option (hit.call set) may have no value
        return [span(hit.node, new)]
    kws = {k.arg: k.value for k in hit.call.keywords if k.arg}
    edits = [] if hit.node is None else [span(hit.node, new)]
    if (required := kws.get("required")) is not None and _literal(required) is not False:
        edits.append(span(required, "False"))
    insert = "" if hit.node is not None else f", default={new}"
    if not hit.knob.name.startswith("-") and "nargs" not in kws:
        insert += ", nargs='?'"  # a positional argument is required unless it may be absent
    nodes: list[ast.expr | ast.keyword] = [*hit.call.args, *hit.call.keywords]
    last = max(nodes, key=lambda n: (n.end_lineno or 0, n.end_col_offset or 0))
    return edits + ([span(last, insert, insert=True)] if insert else [])


def apply_overrides(files: dict[str, str], values: dict[str, object]) -> tuple[dict[str, str], list[Override]]:
    """New files with each located knob of a role in `values` set to repr(value); the list says what changed."""
    texts = _replacements(values)
    paths = {role: value for role, value in values.items() if isinstance(value, (str, os.PathLike))}
    folders = knob_targets.folder_names(paths)
    data = {file: src.encode("utf-8") for file, src in files.items()}
    starts: dict[str, list[int]] = {}
    spans: dict[str, dict[tuple[int, int], str]] = {}
    changes: list[Override] = []
    for hit, src in _scan(files, folders):
        knob = hit.knob
        if knob.derived or knob.role not in texts:
            continue
        new = (
            texts[knob.role]
            if hit.file_name is None
            else repr(os.path.join(os.fspath(paths[knob.role]), hit.file_name))
        )
        if knob.role in PATH_ROLES and (ctor := _path_type(hit.node, src)):
            new = f"{ctor}({new})"  # keep a Path a Path: the code may go on with DATA_DIR / "images"
        if knob.file not in starts:
            starts[knob.file] = _line_starts(data[knob.file])
        taken = spans.setdefault(knob.file, {})
        edits = [e for e in _edits(hit, new, starts[knob.file]) if data[knob.file][e[0] : e[1]] != e[2].encode()]
        if any(taken.get(e[:2], e[2]) != e[2] for e in edits):
            continue  # IMAGE_DIR = MASK_DIR = "x": one value, two roles; the first name keeps it
        if edits:
            taken.update({e[:2]: e[2] for e in edits})
            changes.append(Override(knob.role, knob.file, knob.lineno, knob.name, knob.value, new))
    out = dict(files)
    for file, file_edits in spans.items():
        text = data[file]
        for (start, end), new in sorted(file_edits.items(), reverse=True):  # bottom-up keeps earlier offsets valid
            text = text[:start] + new.encode("utf-8") + text[end:]
        out[file] = text.decode("utf-8")
    return out, changes
