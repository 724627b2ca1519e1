"""The dataset catalog: typed entries read from datasets.yaml plus the user's own YAML."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from llmseg_mlflow.paths import llmseg_home

BUILTIN_FILE = Path(__file__).with_name("datasets.yaml")
ENV_VAR = "LLMSEG_DATASETS_FILE"

COLOURS = ("grayscale", "rgb")
LAYOUTS = ("suffix", "folders")
SOURCE_FORMATS = ("images", "nifti")
SPLIT_BY = ("patient", "slice")
USER_FILE_NAME = "datasets.yaml"
# Lossy formats would turn 0/255 masks into many grey values.
LOSSY_EXTS = ("jpg", "jpeg", "webp")
_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

PROMPT_FILL_NAMES = (
    "colour_word",
    "mask_word",
    "layout_sentence",
    "n_samples",
    "extension",
    "foreground_hint",
    "transform_hint",
    "copy_instruction",
)


@dataclass(frozen=True)
class SyntheticSpec:
    """How a synthetic dataset is generated: count, square image size, seed."""

    n: int = 100
    size: int = 64
    seed: int = 0


@dataclass(frozen=True)
class SourceSpec:
    """How the downloaded source is read, where it differs from the prepared layout.

    The entry's top-level fields describe the prepared layout (what the prompt tells the LLM);
    these describe the download: folder names to look for (glob patterns, several merge), the
    masks' suffix there, NIfTI volumes instead of 2-D images, and how patients are told apart.
    """

    format: str = "images"
    path: str = ""
    image_dirs: tuple[str, ...] = ()
    mask_dirs: tuple[str, ...] = ()
    mask_suffix: str | None = None
    group_pattern: str = ""
    slice_axis: int = 2
    window: tuple[float, float] = (1.0, 99.0)

    @property
    def is_volumes(self) -> bool:
        """True when the source holds NIfTI image and label volumes."""
        return self.format == "nifti"


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


@dataclass(frozen=True)
class DatasetSpec:
    """One catalog entry: where the data lies, how it is laid out and encoded, how it is prompted."""

    key: str
    title: str
    modality: str
    colour: str
    layout: str
    image_dir: str = "images"
    mask_dir: str = "masks"
    mask_suffix: str = ""
    image_ext: str = "png"
    mask_ext: str = "png"
    mask_values: tuple[int, int] = (0, 255)
    # False: the pool holds the source's files as they are (names, formats, mask values), what code
    # written for the real dataset expects. True: masks re-encoded as 0/255 under the entry's names.
    normalize: bool = False
    subset_size: int | None = None
    heldout_fraction: float = 0.1
    small_foreground: bool = False
    synthetic: SyntheticSpec | None = None
    split_by: str = "patient"
    source: SourceSpec = SourceSpec()
    source_url: str = ""
    notes: str = ""
    prompt_overrides: tuple[tuple[str, str], ...] = ()

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


# ---- YAML reading and validation -------------------------------------------------------------

_ALLOWED_FIELDS = tuple(f.name for f in fields(DatasetSpec) if f.name not in ("key", "prompt_overrides"))
_SOURCE_FIELDS = tuple(f.name for f in fields(SourceSpec))
_REQUIRED = ("title", "modality", "colour", "layout")


class _EntryError(ValueError):
    """A field error inside one entry; the loader adds the file name."""


def _fail(key: str, field: str, problem: str) -> _EntryError:
    return _EntryError(f"dataset entry {key!r}, field {field!r}: {problem}")


def _as_str(key: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(key, name, f"expected text, got {type(value).__name__} {value!r}")
    return value


def _as_int(key: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, name, f"expected a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise _fail(key, name, f"expected a whole number >= {minimum}, got {value}")
    return value


def _as_choice(key: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = value.lower() if isinstance(value, str) else value
    if text not in allowed:
        raise _fail(key, name, f"got {value!r}, allowed values: {', '.join(allowed)}")
    return text


def _as_ext(key: str, name: str, value: Any) -> str:
    ext = _as_str(key, name, value).lower().lstrip(".")
    if not ext or not ext.isalnum():
        raise _fail(key, name, f"expected a file extension such as 'png', got {value!r}")
    return ext


def _as_folder(key: str, name: str, value: Any) -> str:
    folder = _as_str(key, name, value).strip("/")
    if not folder or folder.startswith("~") or ".." in Path(folder).parts:
        raise _fail(key, name, f"expected a folder name relative to the dataset such as 'images', got {value!r}")
    return folder


def _parse_synthetic(key: str, value: Any) -> SyntheticSpec | None:
    if value is None:
        return None
    if value is True:
        return SyntheticSpec()
    if not isinstance(value, dict):
        raise _fail(key, "synthetic", f"expected null or a mapping with n, size, seed; got {value!r}")
    unknown = sorted(set(value) - {"n", "size", "seed"})
    if unknown:
        raise _fail(key, "synthetic", f"unknown keys {unknown}, allowed: n, size, seed")
    base = SyntheticSpec()
    return SyntheticSpec(
        n=_as_int(key, "synthetic.n", value.get("n", base.n), 2),
        size=_as_int(key, "synthetic.size", value.get("size", base.size), 16),
        seed=_as_int(key, "synthetic.seed", value.get("seed", base.seed), 0),
    )


def _as_names(key: str, name: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _fail(key, name, f"expected a folder name or a list of them (glob patterns allowed), got {value!r}")
    return tuple(_as_folder(key, name, item) for item in items)


def _parse_source(key: str, value: Any) -> SourceSpec:
    """Validate the optional `source:` mapping (how the download is read)."""
    if value is None:
        return SourceSpec()
    if not isinstance(value, dict):
        raise _fail(key, "source", f"expected a mapping with {', '.join(_SOURCE_FIELDS)}; got {value!r}")
    unknown = sorted(set(value) - set(_SOURCE_FIELDS))
    if unknown:
        raise _fail(key, f"source.{unknown[0]}", f"unknown field, allowed: {', '.join(_SOURCE_FIELDS)}")
    base = SourceSpec()
    pattern = _as_str(key, "source.group_pattern", value.get("group_pattern") or "")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail(key, "source.group_pattern", f"not a valid regular expression ({exc})") from None
    suffix = value.get("mask_suffix")
    window = value.get("window", list(base.window))
    if (
        not isinstance(window, list)
        or len(window) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in window)
        or not 0 <= window[0] < window[1] <= 100
    ):
        raise _fail(key, "source.window", f"expected [low, high] percentiles such as [1, 99], got {window!r}")
    axis = value.get("slice_axis", base.slice_axis)
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise _fail(key, "source.slice_axis", f"expected 0, 1 or 2 (the voxel axis to slice along), got {axis!r}")
    path = value.get("path") or ""
    return SourceSpec(
        format=_as_choice(key, "source.format", value.get("format", base.format), SOURCE_FORMATS),
        path=_as_str(key, "source.path", str(path) if isinstance(path, Path) else path),
        image_dirs=() if value.get("image_dirs") is None else _as_names(key, "source.image_dirs", value["image_dirs"]),
        mask_dirs=() if value.get("mask_dirs") is None else _as_names(key, "source.mask_dirs", value["mask_dirs"]),
        mask_suffix=None if suffix is None else _as_str(key, "source.mask_suffix", suffix),
        group_pattern=pattern,
        slice_axis=axis,
        window=(float(window[0]), float(window[1])),
    )


def _parse_prompt(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _fail(key, "prompt", f"expected a mapping of fill name -> text, got {value!r}")
    pairs = []
    for name, text in value.items():
        if name not in PROMPT_FILL_NAMES:
            raise _fail(key, f"prompt.{name}", f"unknown fill, allowed: {', '.join(PROMPT_FILL_NAMES)}")
        if name == "n_samples" and isinstance(text, int) and not isinstance(text, bool):
            text = str(text)  # `n_samples: 5000` unquoted is what people write
        pairs.append((name, _as_str(key, f"prompt.{name}", text)))
    return tuple(sorted(pairs))


def _parse_entry(key: Any, raw: Any) -> DatasetSpec:
    """Validate one raw YAML entry into a DatasetSpec."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise _EntryError(
            f"dataset key {key!r} is not valid: use lower-case letters, digits, '.', '_' or '-' "
            "(it becomes a folder name and an MLflow tag)"
        )
    if not isinstance(raw, dict):
        raise _EntryError(f"dataset entry {key!r}: expected a mapping of fields, got {raw!r}")
    unknown = sorted(set(raw) - set(_ALLOWED_FIELDS) - {"prompt"})
    if unknown:
        raise _fail(key, unknown[0], f"unknown field, allowed: {', '.join(_ALLOWED_FIELDS + ('prompt',))}")
    for name in _REQUIRED:
        if raw.get(name) is None:
            raise _fail(key, name, "missing (required: " + ", ".join(_REQUIRED) + ")")

    layout = _as_choice(key, "layout", raw["layout"], LAYOUTS)
    default_suffix = "_seg" if layout == "suffix" else ""
    image_ext = _as_ext(key, "image_ext", raw.get("image_ext", "png"))
    mask_ext = _as_ext(key, "mask_ext", raw.get("mask_ext", "png"))
    normalize = raw.get("normalize", False)
    if not isinstance(normalize, bool):
        raise _fail(key, "normalize", f"expected true or false, got {normalize!r}")
    if normalize and mask_ext in LOSSY_EXTS:
        raise _fail(
            key,
            "mask_ext",
            f"{mask_ext!r} is lossy: normalised masks must be lossless: set mask_ext: png (source masks in "
            f".{mask_ext} are still read and thresholded), or normalize: false to keep the source's files",
        )
    mask_suffix = _as_str(key, "mask_suffix", raw.get("mask_suffix", default_suffix))
    if layout == "suffix" and not mask_suffix:
        raise _fail(key, "mask_suffix", "the 'suffix' layout needs a suffix such as '_seg'")

    values = raw.get("mask_values", [0, 255])
    if (
        not isinstance(values, list)
        or len(values) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535 for v in values)
        or values[0] == values[1]
    ):
        raise _fail(key, "mask_values", f"expected [background, foreground] such as [0, 255] or [0, 3], got {values!r}")

    image_dir = _as_folder(key, "image_dir", raw.get("image_dir", "images"))
    mask_dir = _as_folder(key, "mask_dir", raw.get("mask_dir", "masks"))
    if layout == "folders" and image_dir == mask_dir and not mask_suffix and image_ext == mask_ext:
        raise _fail(key, "mask_dir", "equals image_dir: masks would overwrite images; use the 'suffix' layout")

    subset = raw.get("subset_size")
    fraction = raw.get("heldout_fraction", 0.1)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise _fail(key, "heldout_fraction", f"expected a number between 0 and 1 such as 0.1, got {fraction!r}")
    small = raw.get("small_foreground", False)
    if not isinstance(small, bool):
        raise _fail(key, "small_foreground", f"expected true or false, got {small!r}")

    split_by = _as_choice(key, "split_by", raw.get("split_by", "patient"), SPLIT_BY)
    source = _parse_source(key, raw.get("source"))
    if source.is_volumes and layout != "folders":
        raise _fail(
            key,
            "layout",
            "NIfTI sources are prepared in folders (volumes as the source holds them, or "
            "with normalize: true slices in images/ and masks/): use layout: folders",
        )

    return DatasetSpec(
        key=key,
        title=_as_str(key, "title", raw["title"]),
        modality=_as_str(key, "modality", raw["modality"]),
        colour=_as_choice(key, "colour", raw["colour"], COLOURS),
        layout=layout,
        image_dir=image_dir,
        mask_dir=mask_dir,
        mask_suffix=mask_suffix,
        image_ext=image_ext,
        mask_ext=mask_ext,
        mask_values=(values[0], values[1]),
        normalize=normalize,
        subset_size=None if subset is None else _as_int(key, "subset_size", subset, 2),
        heldout_fraction=float(fraction),
        small_foreground=small,
        synthetic=_parse_synthetic(key, raw.get("synthetic")),
        split_by=split_by,
        source=source,
        source_url=_as_str(key, "source_url", raw.get("source_url") or ""),
        notes=_as_str(key, "notes", raw.get("notes") or ""),
        prompt_overrides=_parse_prompt(key, raw.get("prompt")),
    )


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
    specs: dict[str, DatasetSpec] = {}
    for key, entry in raw.items():
        try:
            specs[key] = _parse_entry(key, entry)
        except _EntryError as exc:
            raise ValueError(f"{sources[key]}: {exc}") from None
    return specs


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


def parse_user_entry(key: str, entry: dict[str, Any]) -> DatasetSpec:
    """Validate one raw entry (as `datasets add` builds it) into a DatasetSpec; ValueError names the field."""
    try:
        return _parse_entry(key, entry)
    except _EntryError as exc:
        raise ValueError(str(exc)) from None


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
