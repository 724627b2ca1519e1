"""The model catalog: built-in models.yaml plus the user's own YAML, as typed ModelSpec objects."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from llmseg_mlflow.catalog.replay_folder import FOLDER_LAYOUT, has_replies
from llmseg_mlflow.config import LoosePath, Strict, describe

BUILTIN_FILE = Path(__file__).with_name("models.yaml")
FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
MODELS_FILE_ENV = "LLMSEG_MODELS_FILE"
REPLAY_PREFIX = "replay:"

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEY_NEED = "a name like 'my-model' (letters, digits, . _ -)"
# Providers that need no API model id: recorded replies, or no API at all (chat interface only).
_NO_API = {"replay", "none"}
# The provider that makes an otherwise optional field required.
_NEEDED_BY = {
    "api_model": lambda provider: provider not in _NO_API,
    "base_url": lambda provider: provider == "openai-compatible",
    "replay_dir": lambda provider: provider == "replay",
}


def _text(blank: str | None) -> BeforeValidator:
    """YAML text as entries write it: stripped, a bare number (a version, a size) taken as text, blank as `blank`."""

    def clean(value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
        return blank if value is None or value == "" else value

    return BeforeValidator(clean)


_Text = Annotated[str, _text("")]
_OptText = Annotated[str | None, _text(None)]


class ModelSpec(Strict):
    """One model the platform can ask for a pipeline, with how to reach it and what it costs."""

    # Defaults are validated too: that is where a field the provider requires is found missing.
    model_config = ConfigDict(validate_default=True)

    key: str
    title: _Text = ""  # blank: the key
    provider: _Text
    api_model: _OptText = None
    year: int | None = Field(default=None, ge=1990, le=2100)
    reasoning: bool | None = None  # as the paper classifies the model
    settings: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)] = Field(default_factory=dict)
    base_url: _OptText = None
    api_key_env: _OptText = None
    price_in_per_mtok: float | None = Field(default=None, ge=0)  # USD per million tokens
    price_out_per_mtok: float | None = Field(default=None, ge=0)
    replay_dir: Annotated[LoosePath | None, _text(None)] = None
    fixture: bool = False
    notes: _Text = ""
    parameters: _Text = ""

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        # A replay:DIR model is named after its folder, whatever the folder is called.
        if not _KEY.match(value) and not (value.startswith(REPLAY_PREFIX) and value != REPLAY_PREFIX):
            raise ValueError(f"expected {_KEY_NEED}, got {value!r}")
        return value

    @field_validator("title")
    @classmethod
    def _title(cls, value: str, info: ValidationInfo) -> str:
        return value or info.data.get("key", "")

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        if not value:
            raise ValueError("expected a provider: openai, anthropic, openai-compatible, replay or none; got ''")
        return value

    @field_validator(*_NEEDED_BY)
    @classmethod
    def _needed(cls, value: Any, info: ValidationInfo) -> Any:
        provider = info.data.get("provider")  # absent when the provider itself is wrong
        if value is None and provider is not None and _NEEDED_BY[str(info.field_name)](provider):
            raise ValueError(f"missing, required for provider {provider!r}")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        ref = _ENV_REF.match(value or "")
        if ref:  # taken from the environment when set; else endpoint() says what to export
            return os.environ.get(ref.group(1)) or value
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError(f"expected an http(s) URL or ${{ENV_VAR}}, got {value!r}")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"expected the name of an environment variable, such as OPENAI_API_KEY, got {value!r}")
        return value

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        """USD for one call at list price (reasoning tokens count as output); 0.0 when prices are unknown."""
        if self.price_in_per_mtok is None or self.price_out_per_mtok is None:
            return 0.0
        return (tokens_in * self.price_in_per_mtok + tokens_out * self.price_out_per_mtok) / 1_000_000

    def endpoint(self) -> str | None:
        """The base URL to call; raises ValueError when it comes from an environment variable that is unset."""
        if self.base_url is None:
            return None
        ref = _ENV_REF.match(self.base_url)
        if ref is None:
            return self.base_url
        raise ValueError(
            f"model {self.key!r} takes its endpoint from the environment variable {ref.group(1)}, which is "
            f"not set; export {ref.group(1)}=https://your-host/v1 (an OpenAI-compatible URL)"
        )


class UnknownModelError(LookupError):
    """A model name that is neither in the catalog nor a replay:DIR."""

    def __init__(self, key: str, known: list[str]) -> None:
        close = difflib.get_close_matches(key, known, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        super().__init__(
            f"unknown model {key!r}.{hint} Known models: {', '.join(known)}. "
            f"Or use replay:DIR for a folder of recorded replies (01.md, 02.md, ... or the four .py files). "
            f"To add a model, write a YAML file with a `models:` list in the layout of {BUILTIN_FILE.name} "
            f"(key, title, provider, api_model, year, reasoning, ...) and point the {MODELS_FILE_ENV} "
            f"environment variable at it."
        )


# A raw entry as read (overrides merged in) and the heading its problems are reported under.
_Raw = tuple[dict[str, Any], str]


def load_models(extra: Path | None = None) -> dict[str, ModelSpec]:
    """Built-in catalog plus the user's YAML (argument, else $LLMSEG_MODELS_FILE); user entries add or override."""
    raw = _read_entries(BUILTIN_FILE, FIXTURES_DIR)
    user_file = extra if extra is not None else _env_models_file()
    if user_file is not None:
        user_file = Path(user_file).expanduser()
        if not user_file.is_file():
            raise ValueError(
                f"models file {user_file} does not exist; pass an existing YAML file with a `models:` list"
            )
        for key, (entry, where) in _read_entries(user_file, user_file.resolve().parent).items():
            # An existing key changes only the fields the user gives (e.g. a newer api_model).
            raw[key] = ({**raw.get(key, ({}, ""))[0], **entry}, where)
    return {key: _validate(entry, where) for key, (entry, where) in raw.items()}


def get_model(key: str, extra: Path | None = None) -> ModelSpec:
    """The catalog entry for key, or a replay model for 'replay:DIR'."""
    if key.startswith(REPLAY_PREFIX):
        folder = key[len(REPLAY_PREFIX) :].strip()
        if not folder:
            raise ValueError("replay: needs a folder of recorded replies, e.g. replay:chats/github-copilot")
        return replay_model(Path(folder))
    models = load_models(extra)
    if key not in models:
        raise UnknownModelError(key, sorted(models))
    return models[key]


def replay_model(folder: Path) -> ModelSpec:
    """A model that replays the recorded replies in folder; ValueError when it holds none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"replay folder {str(folder)!r} does not exist; {FOLDER_LAYOUT}")
    if not has_replies(folder):
        raise ValueError(f"replay folder {folder} holds no replies; {FOLDER_LAYOUT}")
    folder = folder.resolve()
    return ModelSpec(
        key=f"{REPLAY_PREFIX}{folder.name}",
        title=f"Replay of {folder.name}",
        provider="replay",
        replay_dir=folder,
        notes=f"recorded replies from {folder}",
    )


def _env_models_file() -> Path | None:
    """The user's models file named by the environment, if any."""
    value = os.environ.get(MODELS_FILE_ENV, "").strip()
    return Path(value) if value else None


def _read_entries(path: Path, base_dir: Path) -> dict[str, _Raw]:
    """The raw entries of one YAML file by key, replay_dir made absolute against base_dir; fields are checked
    once overrides are merged."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise ValueError(f"{path}: expected a top-level `models:` list of entries, as in {BUILTIN_FILE.name}")
    entries: dict[str, _Raw] = {}
    for index, entry in enumerate(doc["models"], start=1):
        where = f"{path}: model entry #{index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping of fields (key: ..., provider: ...), got {entry!r}")
        key = entry.get("key")
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"{where}: key: expected {_KEY_NEED}, got {key!r}")
        where = f"{path}: model entry {key!r}"
        if key in entries:
            raise ValueError(f"{where}: key: repeats an earlier entry; keep one entry per model")
        replay_dir = entry.get("replay_dir")
        if isinstance(replay_dir, str) and replay_dir.strip():
            # Here, not in ModelSpec: after merging, which file gave the folder is no longer known.
            entry = {**entry, "replay_dir": base_dir / Path(replay_dir.strip()).expanduser()}
        entries[key] = (entry, where)
    return entries


def _validate(entry: dict[str, Any], where: str) -> ModelSpec:
    """The ModelSpec of one merged entry; ValueError lists every problem with its field."""
    try:
        return ModelSpec.model_validate(entry)
    except ValidationError as exc:
        raise ValueError(describe(exc, where)) from None
