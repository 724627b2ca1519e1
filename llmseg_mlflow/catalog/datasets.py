"""The dataset catalog: typed entries read from datasets.yaml plus the user's own YAML."""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

BUILTIN_FILE = Path(__file__).with_name("datasets.yaml")
ENV_VAR = "LLMSEG_DATASETS_FILE"

COLOURS = ("grayscale", "rgb")
LAYOUTS = ("suffix", "folders")
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
    subset_size: int | None = None
    heldout_fraction: float = 0.1
    small_foreground: bool = False
    synthetic: SyntheticSpec | None = None
    source_url: str = ""
    notes: str = ""
    prompt_overrides: tuple[tuple[str, str], ...] = ()

    @property
    def is_synthetic(self) -> bool:
        """True when the data is generated rather than read from a source folder."""
        return self.synthetic is not None

    @property
    def background_value(self) -> int:
        """Pixel value of background in the source masks."""
        return self.mask_values[0]

    @property
    def foreground_value(self) -> int:
        """Pixel value of foreground in the source masks (stored as 255 once prepared)."""
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
    example = f'like: "number.{spec.image_ext}" and the masks "{spec.mask_name("number")}"'
    if spec.layout == "suffix":
        return (
            "which are located in the same path (the masks have the same name as the images "
            f"with a suffix, {example})"
        )
    folders = f'"{spec.image_dir}" and "{spec.mask_dir}"'
    if spec.mask_suffix or spec.image_ext != spec.mask_ext:
        return (
            f"which are located in 2 different folders ({folders}, the masks have the same name "
            f"as the images with a suffix, {example})"
        )
    return f"which are located in 2 different folders ({folders}, with the same file names)"


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
    if mask_ext in LOSSY_EXTS:
        raise _fail(key, "mask_ext", f"{mask_ext!r} is lossy and breaks binary masks; convert masks to png")
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
        subset_size=None if subset is None else _as_int(key, "subset_size", subset, 2),
        heldout_fraction=float(fraction),
        small_foreground=small,
        synthetic=_parse_synthetic(key, raw.get("synthetic")),
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


def _user_file(extra: Path | None) -> Path | None:
    if extra is not None:
        return Path(extra)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else None


def load_datasets(extra: Path | None = None) -> dict[str, DatasetSpec]:
    """Built-in catalog plus the user's YAML (path arg or env LLMSEG_DATASETS_FILE); user entries override."""
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
            f"To add one, write a YAML file with a 'datasets:' mapping (see {BUILTIN_FILE.name} for "
            f"the fields) and set {ENV_VAR} to its path"
        )
    return catalog[key]
