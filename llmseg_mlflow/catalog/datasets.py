"""The dataset catalog: typed entries read from datasets.yaml plus the user's own YAML."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails

from llmseg_mlflow.config import Strict, describe, field_names
from llmseg_mlflow.paths import llmseg_home

BUILTIN_FILE = Path(__file__).with_name("datasets.yaml")
ENV_VAR = "LLMSEG_DATASETS_FILE"

Colour = Literal["grayscale", "rgb"]
Layout = Literal["suffix", "folders"]
SourceFormat = Literal["images", "nifti"]
SplitBy = Literal["patient", "slice"]
COLOURS: tuple[str, ...] = get_args(Colour)
LAYOUTS: tuple[str, ...] = get_args(Layout)
SOURCE_FORMATS: tuple[str, ...] = get_args(SourceFormat)
SPLIT_BY: tuple[str, ...] = get_args(SplitBy)
USER_FILE_NAME = "datasets.yaml"
# Lossy formats would turn 0/255 masks into many grey values.
LOSSY_EXTS = ("jpg", "jpeg", "webp")
SUFFIX_DEFAULT = "_seg"  # the suffix layout's masks lie beside the images, so they need one
_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class PromptFills:
    """The filled brackets of the Appendix D prompt for one dataset."""

    colour_word: str
    mask_word: str
    layout_sentence: str
    n_samples: str
    extension: str
    foreground_hint: str
    transform_hint: str
    copy_instruction: str

    def as_dict(self) -> dict[str, str]:
        """The fills as a plain name -> text mapping (template variables)."""
        return asdict(self)


PROMPT_FILL_NAMES = tuple(f.name for f in fields(PromptFills))


# ---- the entry schema: field types and their checks ---------------------------------------------


class _Yaml(Strict):
    """Strict, and a YAML null (an empty value) means the field's default, as an omitted key does."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = field_names(cls)
            return {k: v for k, v in data.items() if v is not None or k not in known}
        return data


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _ext(value: str) -> str:
    ext = value.lower().lstrip(".")
    if not ext.isalnum():
        raise ValueError(f"expected a file extension such as 'png', got {value!r}")
    return ext


def _folder(value: str) -> str:
    folder = value.strip("/")
    if not folder or folder.startswith("~") or ".." in Path(folder).parts:
        raise ValueError(f"expected a folder name relative to the dataset such as 'images', got {value!r}")
    return folder


def _folders(value: Any) -> Any:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value:
        return tuple(value)
    if isinstance(value, tuple):  # from code, already checked
        return value
    raise ValueError(f"expected a folder name or a list of them (glob patterns allowed), got {value!r}")


def _mask_values(value: Any) -> Any:
    # One message for every wrong shape: what the two numbers mean matters more than which check failed.
    v = value
    if not (
        isinstance(v, (list, tuple))
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 65535 for x in v)
        and v[0] != v[1]
    ):
        raise ValueError(f"expected [background, foreground] such as [0, 255] or [0, 3], got {value!r}")
    return tuple(v)


def _sizes(value: Any) -> Any:
    if value is None:
        return None
    pairs = isinstance(value, (list, tuple)) and len(value) > 0
    pairs = pairs and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value)
    if not (pairs and all(isinstance(x, int) and not isinstance(x, bool) and x >= 16 for p in value for x in p)):
        raise ValueError(
            f"expected a list of [height, width] pairs of at least 16, such as [[256, 512]], got {value!r}"
        )
    return tuple((p[0], p[1]) for p in value)


def _window(value: Any) -> Any:
    v = value
    numbers = isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    if not (numbers and len(v) == 2 and 0 <= v[0] < v[1] <= 100):
        raise ValueError(f"expected [low, high] percentiles such as [1, 99], got {value!r}")
    return (float(v[0]), float(v[1]))


def _axis(value: int) -> int:
    if value not in (0, 1, 2):
        raise ValueError(f"expected 0, 1 or 2 (the voxel axis to slice along), got {value!r}")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


def _key(value: str) -> str:
    if not _KEY_RE.match(value):
        raise ValueError(
            f"{value!r} is not valid: use lower-case letters, digits, '.', '_' or '-' "
            "(it becomes a folder name and an MLflow tag)"
        )
    return value


Ext = Annotated[str, AfterValidator(_ext)]
Folder = Annotated[str, AfterValidator(_folder)]
Folders = Annotated[tuple[Folder, ...], BeforeValidator(_folders)]


class SyntheticSpec(_Yaml):
    """How a synthetic dataset is generated: count, square image size (or mixed sizes), seed."""

    n: int = Field(default=100, ge=2)
    size: int = Field(default=64, ge=16)
    seed: int = Field(default=0, ge=0)
    # Each image's (height, width) taken from this list in turn instead, as real sets such as BAGLS mix frame
    # sizes (code that stacks unresized images fails on them, as it did for the study's authors).
    sizes: Annotated[tuple[tuple[int, int], ...] | None, BeforeValidator(_sizes)] = None


class SourceSpec(_Yaml):
    """How the downloaded source is read, where it differs from the prepared layout.

    The entry's top-level fields describe the prepared layout (what the prompt tells the LLM);
    these describe the download: folder names to look for (glob patterns, several merge), the
    masks' suffix there, NIfTI volumes instead of 2-D images, and how patients are told apart.
    """

    format: Annotated[SourceFormat, BeforeValidator(_lower)] = "images"
    path: Annotated[str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)] = ""
    image_dirs: Folders = ()
    mask_dirs: Folders = ()
    mask_suffix: str | None = None
    group_pattern: Annotated[str, AfterValidator(_regex)] = ""
    slice_axis: Annotated[int, AfterValidator(_axis)] = 2
    window: Annotated[tuple[float, float], BeforeValidator(_window)] = (1.0, 99.0)

    @property
    def is_volumes(self) -> bool:
        """True when the source holds NIfTI image and label volumes."""
        return self.format == "nifti"


# `prompt:` in YAML: fill name -> text, each optional; stored on the spec as sorted (name, text) pairs.
_FILLS: dict[str, Any] = {name: (str | None, None) for name in PROMPT_FILL_NAMES}
_Prompt = create_model("prompt", __base__=_Yaml, **_FILLS)


def _prompt(value: Any) -> Any:
    if isinstance(value, tuple):  # from code, already pairs
        return value
    if isinstance(value, dict) and type(value.get("n_samples")) is int:
        value = {**value, "n_samples": str(value["n_samples"])}  # `n_samples: 5000` unquoted is what people write
    return tuple(sorted(_Prompt.model_validate(value).model_dump(exclude_none=True).items()))


class DatasetSpec(_Yaml):
    """One catalog entry: where the data lies, how it is laid out and encoded, how it is prompted."""

    key: Annotated[str, AfterValidator(_key)]
    title: str
    modality: str
    colour: Annotated[Colour, BeforeValidator(_lower)]
    layout: Annotated[Layout, BeforeValidator(_lower)]
    image_dir: Folder = "images"
    mask_dir: Folder = "masks"
    mask_suffix: str = ""  # SUFFIX_DEFAULT for the suffix layout
    image_ext: Ext = "png"
    mask_ext: Ext = "png"
    mask_values: Annotated[tuple[int, int], BeforeValidator(_mask_values)] = (0, 255)
    # False: the pool holds the source's files as they are (names, formats, mask values), what code
    # written for the real dataset expects. True: masks re-encoded as 0/255 under the entry's names.
    normalize: bool = False
    subset_size: int | None = Field(default=None, ge=2)
    heldout_fraction: float = Field(default=0.1, gt=0, lt=1)
    small_foreground: bool = False
    synthetic: Annotated[SyntheticSpec | None, BeforeValidator(lambda v: {} if v is True else v)] = None
    split_by: Annotated[SplitBy, BeforeValidator(_lower)] = "patient"
    source: SourceSpec = SourceSpec()
    source_url: str = ""
    notes: str = ""
    prompt_overrides: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_prompt)] = Field(
        default=(), alias="prompt"
    )

    @model_validator(mode="before")
    @classmethod
    def _suffix_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mask_suffix") is None and _lower(data.get("layout")) == "suffix":
            return {**data, "mask_suffix": SUFFIX_DEFAULT}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        # Rules across fields: every broken one at once, each reported on the field to change.
        wrong: list[tuple[str, str]] = []
        if self.layout == "suffix" and not self.mask_suffix:
            wrong.append(("mask_suffix", f"the 'suffix' layout needs a suffix such as {SUFFIX_DEFAULT!r}"))
        if self.normalize and self.mask_ext in LOSSY_EXTS:
            why = (
                f"{self.mask_ext!r} is lossy: normalised masks must be lossless: set mask_ext: png (source masks "
                f"in .{self.mask_ext} are still read and thresholded), or normalize: false to keep the source's files"
            )
            wrong.append(("mask_ext", why))
        clash = self.image_dir == self.mask_dir and not self.mask_suffix and self.image_ext == self.mask_ext
        if self.layout == "folders" and clash:
            wrong.append(("mask_dir", "equals image_dir: masks would overwrite images; use the 'suffix' layout"))
        if self.source.is_volumes and self.layout != "folders":
            why = (
                "NIfTI sources are prepared in folders (volumes as the source holds them, or with normalize: true "
                "slices in images/ and masks/): use layout: folders"
            )
            wrong.append(("layout", why))
        if wrong:
            # A ValidationError raised in a validator keeps its locations, so each line names its field.
            errors = [
                InitErrorDetails(type="value_error", loc=(name,), input=getattr(self, name), ctx={"error": why})
                for name, why in wrong
            ]
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @property
    def is_synthetic(self) -> bool:
        """True when the data is generated rather than read from a source folder."""
        return self.synthetic is not None

    @property
    def keeps_volumes(self) -> bool:
        """True when the pool holds NIfTI volumes as they are (a NIfTI source, not normalised to slices)."""
        return self.source.is_volumes and not self.normalize

    @property
    def background_value(self) -> int:
        """Pixel value of background in the source masks."""
        return self.mask_values[0]

    @property
    def foreground_value(self) -> int:
        """Pixel value of foreground in the source masks (255 in normalised copies)."""
        return self.mask_values[1]

    def images_dir(self, base: Path) -> Path:
        """Folder holding the images of a dataset laid out at `base`."""
        return base if self.layout == "suffix" else base / self.image_dir

    def masks_dir(self, base: Path) -> Path:
        """Folder holding the masks of a dataset laid out at `base`."""
        return base if self.layout == "suffix" else base / self.mask_dir

    def image_name(self, stem: str) -> str:
        """File name of the image with this stem."""
        return f"{stem}.{self.image_ext}"

    def mask_name(self, stem: str) -> str:
        """File name of the mask that belongs to the image with this stem."""
        return f"{stem}{self.mask_suffix}.{self.mask_ext}"

    def prompt_fills(self, n_total: int | None = None) -> dict[str, str]:
        """Template variables for the prompt; n_total (the prepared count) feeds n_samples if unset."""
        return build_prompt_fills(self, n_total).as_dict()


class UnknownDatasetError(LookupError):
    """A dataset key that is in neither the built-in catalog nor the user's YAML."""


def _round_count(n: int) -> str:
    """'around N samples': two significant digits, as the paper wrote 5000 for 5002."""
    if n < 100:
        return str(n)
    digits = len(str(n)) - 2
    return str(int(round(n / 10**digits)) * 10**digits)


def _layout_sentence(spec: DatasetSpec) -> str:
    """The prompt's sentence that tells the LLM where masks are."""
    if spec.keeps_volumes:
        return _volume_sentence(spec)
    example = f'like: "number.{spec.image_ext}" and the masks "{spec.mask_name("number")}"'
    if spec.layout == "suffix":
        return (
            f"which are located in the same path (the masks have the same name as the images with a suffix, {example})"
        )
    folders = f'"{spec.image_dir}" and "{spec.mask_dir}"'
    if spec.mask_suffix or spec.image_ext != spec.mask_ext:
        return (
            f"which are located in 2 different folders ({folders}, the masks have the same name "
            f"as the images with a suffix, {example})"
        )
    return f"which are located in 2 different folders ({folders}, with the same file names)"


def _volume_sentence(spec: DatasetSpec) -> str:
    """The prompt's sentence on where the volumes and their labels are."""
    ext = f".{spec.image_ext}"
    label = f"label {spec.foreground_value} is the foreground, other labels background"
    axis = {0: "first", 1: "second", 2: "last"}.get(spec.source.slice_axis, str(spec.source.slice_axis))
    slicing = f"use the 2D slices along the {axis} axis that contain the foreground"
    if spec.image_dir == spec.mask_dir and spec.mask_suffix:
        folder = "the dataset folder" if spec.image_dir == "." else f'"{spec.image_dir}"'
        where = (
            f"in one folder ({folder}, the label volumes have the same name as the images with a "
            f'suffix, like: "case{ext}" and "case{spec.mask_suffix}.{spec.mask_ext}")'
        )
    elif spec.image_dir == "." or spec.mask_dir == ".":
        where = "in one folder per case, each holding an image volume and its label volume"
    elif spec.mask_suffix:
        where = (
            f'in 2 different folders ("{spec.image_dir}" and "{spec.mask_dir}", the label volumes have the '
            f'same name as the images with a suffix, like: "case{ext}" and "case{spec.mask_suffix}.{spec.mask_ext}")'
        )
    else:
        where = f'in 2 different folders ("{spec.image_dir}" and "{spec.mask_dir}", with the same file names)'
    return f"stored as 3D NIfTI volumes ({ext}) {where}; {label}; {slicing}"


def _default_count(spec: DatasetSpec, n_total: int | None) -> str:
    """The count for the prompt from the prepared total, the synthetic size or the subset size."""
    if n_total is not None:
        return str(n_total) if spec.is_synthetic else _round_count(n_total)
    if spec.synthetic is not None:
        return str(spec.synthetic.n)
    if spec.subset_size is not None:
        return _round_count(spec.subset_size)
    raise ValueError(
        f"dataset {spec.key!r} has no sample count for the prompt: set subset_size or "
        f"prompt.n_samples in its YAML entry, or prepare it first and pass n_total"
    )


def build_prompt_fills(spec: DatasetSpec, n_total: int | None = None) -> PromptFills:
    """Derive every prompt fill from the entry's fields, then apply the entry's overrides."""
    overrides = dict(spec.prompt_overrides)
    colour_word = "grayscale" if spec.colour == "grayscale" else "RGB"
    if spec.image_ext == spec.mask_ext:
        extension = spec.image_ext
    else:
        extension = f"{spec.image_ext} (images) and {spec.mask_ext} (masks)"
    colour_phrase = "gray scale" if spec.colour == "grayscale" else "RGB"
    derived = {
        "colour_word": colour_word,
        "mask_word": "binary",
        "layout_sentence": _layout_sentence(spec),
        "n_samples": overrides.get("n_samples") or _default_count(spec, n_total),
        "extension": extension,
        "foreground_hint": "(with small foreground, mostly background)" if spec.small_foreground else "",
        "transform_hint": f"(Re-size images correctly, ensure {colour_phrase} and binary...)",
        "copy_instruction": "and do NOT duplicate or copy to new directory",
    }
    derived.update(overrides)
    return PromptFills(**derived)


# ---- YAML reading -------------------------------------------------------------------------------


def _read_raw(path: Path) -> dict[str, dict[str, Any]]:
    """The raw `datasets:` mapping of one YAML file."""
    if not path.is_file():
        raise FileNotFoundError(f"dataset catalog file {path} does not exist (check the path or {ENV_VAR})")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), dict):
        raise ValueError(f"{path}: expected a top-level 'datasets:' mapping of dataset key -> entry")
    return doc["datasets"]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Field-wise overlay; nested prompt/synthetic mappings merge too."""
    merged = dict(base)
    for name, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def default_user_file() -> Path:
    """$LLMSEG_HOME/datasets.yaml (~/.llmseg/datasets.yaml): where `datasets add` writes by default."""
    return llmseg_home() / USER_FILE_NAME


def user_datasets_file(extra: Path | None = None) -> Path:
    """The user's YAML: the given path, else $LLMSEG_DATASETS_FILE, else $LLMSEG_HOME/datasets.yaml."""
    if extra is not None:
        return Path(extra).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else default_user_file()


def _user_file(extra: Path | None) -> Path | None:
    """The user's YAML to read: an explicit path or the env var must exist; the default may be absent."""
    path = user_datasets_file(extra)
    if extra is None and not os.environ.get(ENV_VAR) and not path.is_file():
        return None
    return path


def load_datasets(extra: Path | None = None) -> dict[str, DatasetSpec]:
    """Built-in catalog plus the user's YAML (see user_datasets_file); user entries override."""
    raw = dict(_read_raw(BUILTIN_FILE))
    sources = {key: BUILTIN_FILE for key in raw}
    user = _user_file(extra)
    if user is not None:
        for key, entry in _read_raw(user).items():
            # A user entry for a built-in key only needs the fields it changes.
            if key in raw and isinstance(entry, dict) and isinstance(raw[key], dict):
                raw[key] = _merge(raw[key], entry)
            else:
                raw[key] = entry
            sources[key] = user
    return {key: parse_user_entry(key, entry, where=f"{sources[key]}: ") for key, entry in raw.items()}


def get_dataset(key: str, extra: Path | None = None) -> DatasetSpec:
    """The catalog entry for `key`, or UnknownDatasetError listing the valid keys."""
    catalog = load_datasets(extra)
    if key not in catalog:
        raise UnknownDatasetError(
            f"unknown dataset {key!r}; known datasets: {', '.join(sorted(catalog))}. "
            f"To add one, run `llmseg datasets add NAME --source DIR`, or write a YAML file with a "
            f"'datasets:' mapping (see {BUILTIN_FILE.name} for the fields) at {default_user_file()} "
            f"or set {ENV_VAR} to its path"
        )
    return catalog[key]


# ---- writing the user's YAML (`llmseg datasets add`) -------------------------------------------


def _scalar(value: Any) -> str:
    """One YAML value in flow style, quoted where YAML needs it."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def render_user_entry(key: str, entry: dict[str, Any], comments: dict[str, str] | None = None, header: str = "") -> str:
    """The YAML block of one entry (indented under `datasets:`), with comments and the prompt fills.

    The prompt fills are written commented out: they follow the fields until you uncomment one.
    """
    spec = parse_user_entry(key, entry)
    comments = comments or {}
    lines = [f"  {key}:"]
    lines += [f"    # {line}" for line in header.splitlines() if line.strip()]
    for name, value in entry.items():
        if name == "prompt":
            continue
        note = f"  # {comments[name]}" if name in comments else ""
        if isinstance(value, dict):
            lines.append(f"    {name}:{note}")
            lines += [f"      {sub}: {_scalar(v)}" for sub, v in value.items()]
        else:
            lines.append(f"    {name}: {_scalar(value)}{note}")
    fills = build_prompt_fills(spec, n_total=0).as_dict()
    overrides = dict(spec.prompt_overrides)
    lines.append("    prompt:  # what the prompt's brackets say; derived from the fields above,")
    lines.append("             # uncomment a line to say something else")
    for name in PROMPT_FILL_NAMES:
        if name == "n_samples" and name not in overrides:
            lines.append("      # n_samples: the prepared count, rounded (set it to fix the number)")
        elif name in overrides:
            lines.append(f"      {name}: {_scalar(overrides[name])}")
        else:
            lines.append(f"      # {name}: {_scalar(fills[name])}")
    return "\n".join(lines) + "\n"


def parse_user_entry(key: Any, entry: Any, where: str = "") -> DatasetSpec:
    """Validate one raw entry into a DatasetSpec; ValueError (led by `where`, the file) lists every problem."""
    heading = f"{where}dataset entry {key!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{heading}: expected a mapping of fields, got {entry!r}")
    if "key" in entry:
        raise ValueError(f"{heading}: unknown field 'key' (an entry's key is its name under 'datasets:')")
    try:
        return DatasetSpec.model_validate({**entry, "key": key})
    except ValidationError as exc:
        raise ValueError(describe(exc, heading)) from None


def check_user_entry(path: Path, key: str, replace: bool = False) -> None:
    """Raise ValueError unless `key` can be written to the user's YAML at path (before any work is done).

    Built-in keys are refused (an entry would silently overlay the study's dataset), and so is an
    existing user key unless replace is set, and a file an entry cannot be appended to.
    """
    path = Path(path).expanduser()
    if key in _read_raw(BUILTIN_FILE):
        raise ValueError(
            f"{key!r} is a built-in dataset: prepare it with `llmseg datasets prepare {key} --source DIR`, "
            "or choose another name for your own data"
        )
    if not _KEY_RE.match(key):
        raise ValueError(
            f"dataset name {key!r} is not valid: use lower-case letters, digits, '.', '_' or '-' "
            "(it becomes a folder name and an MLflow tag)"
        )
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.strip():
        return
    existing = _read_raw(path)
    if key in existing and not replace:
        raise ValueError(f"{path} already has a dataset {key!r}; pass --force to replace it, or choose another name")
    if not re.search(r"^datasets:\s*(#.*)?$", text, flags=re.M) or not _is_last_block(text):
        raise ValueError(
            f"{path}: cannot add an entry safely (expected a block-style 'datasets:' mapping at the end of "
            "the file); move 'datasets:' to the end or pass another file with --datasets-file"
        )


def write_user_entry(path: Path, key: str, block: str, replace: bool = False) -> Path:
    """Append (or with replace, swap in) one rendered entry in the user's YAML; the rest is kept as written."""
    path = Path(path).expanduser()
    check_user_entry(path, key, replace)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text.strip() and key in _read_raw(path):
        text = _drop_block(text, key, path)
    if not text.strip():
        text = "# Your datasets for llmseg (fields as in the built-in datasets.yaml).\ndatasets:\n"
    new_text = text.rstrip("\n") + "\n" + block
    parsed = yaml.safe_load(new_text)
    if not isinstance(parsed, dict) or key not in (parsed.get("datasets") or {}):
        raise ValueError(f"{path}: appending the entry did not give valid YAML; add this entry by hand:\n{block}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new_text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _is_last_block(text: str) -> bool:
    """True when no other top-level key follows `datasets:` (so appended entries land inside it)."""
    start = re.search(r"^datasets:", text, flags=re.M)
    assert start is not None  # callers check that the text has a `datasets:` line first
    after = text[start.end() :]
    return not re.search(r"^[^\s#]", after, flags=re.M)


def _drop_block(text: str, key: str, path: Path) -> str:
    """The text without the entry `key` (its indented lines under `datasets:`)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"^  {re.escape(key)}:", line)), None)
    if start is None:
        raise ValueError(f"{path}: entry {key!r} is not in the usual two-space block style; edit it by hand")
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith("   ")):
        end += 1
    return "".join(lines[:start] + lines[end:])
