"""The model catalog: built-in models.yaml plus the user's own YAML, as typed ModelSpec objects."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmseg_mlflow.catalog.replay_folder import FOLDER_LAYOUT, has_replies

BUILTIN_FILE = Path(__file__).with_name("models.yaml")
FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
MODELS_FILE_ENV = "LLMSEG_MODELS_FILE"
REPLAY_PREFIX = "replay:"

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Providers that need no API model id: recorded replies, or no API at all (chat interface only).
_NO_API = {"replay", "none"}
_FIELDS = (
    "key",
    "title",
    "provider",
    "api_model",
    "year",
    "reasoning",
    "settings",
    "base_url",
    "api_key_env",
    "price_in_per_mtok",
    "price_out_per_mtok",
    "replay_dir",
    "fixture",
    "parameters",
    "notes",
)


@dataclass(frozen=True)
class ModelSpec:
    """One model the platform can ask for a pipeline, with how to reach it and what it costs."""

    key: str
    title: str
    provider: str
    api_model: str | None = None
    year: int | None = None
    reasoning: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    api_key_env: str | None = None
    price_in_per_mtok: float | None = None
    price_out_per_mtok: float | None = None
    replay_dir: Path | None = None
    fixture: bool = False
    notes: str = ""
    parameters: str = ""

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
        for key, entry in _read_entries(user_file, user_file.resolve().parent).items():
            # An existing key changes only the fields the user gives (e.g. a newer api_model).
            raw[key] = {**raw.get(key, {}), **entry}
    return {key: _to_spec(entry) for key, entry in raw.items()}


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


def _read_entries(path: Path, base_dir: Path) -> dict[str, dict[str, Any]]:
    """Raw, field-checked entries of one YAML file by key; replay_dir made absolute against base_dir."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise ValueError(f"{path}: expected a top-level `models:` list of entries, as in {BUILTIN_FILE.name}")
    entries: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(doc["models"], start=1):
        where = f"{path}: model entry #{index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping of fields (key: ..., provider: ...), got {entry!r}")
        key = entry.get("key")
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(
                f"{where}: field 'key' must be a name like 'my-model' (letters, digits, . _ -), got {key!r}"
            )
        where = f"{path}: model entry {key!r}"
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r}; valid fields: {', '.join(_FIELDS)}")
        if key in entries:
            raise ValueError(f"{where}: field 'key' repeats an earlier entry; keep one entry per model")
        entry = dict(entry, _where=where)
        if isinstance(entry.get("replay_dir"), str):
            entry["replay_dir"] = str(base_dir / Path(entry["replay_dir"]).expanduser())
        entries[key] = entry
    return entries


def _to_spec(entry: dict[str, Any]) -> ModelSpec:
    """Validate one merged raw entry and build its ModelSpec; ValueError names the entry and field."""
    where = entry["_where"]

    def bad(name: str, need: str) -> ValueError:
        return ValueError(f"{where}: field {name!r} must be {need}, got {entry.get(name)!r}")

    def text(name: str, required: bool = False) -> str | None:
        value = entry.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise bad(name, "a non-empty string")
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad(name, "a string")
        return str(value).strip()

    def price(name: str) -> float | None:
        value = entry.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise bad(name, "a non-negative number (USD per million tokens) or null")
        return float(value)

    provider = text("provider", required=True)
    assert provider is not None
    api_model = text("api_model", required=provider not in _NO_API)
    year = entry.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 1990 <= year <= 2100):
        raise bad("year", "a year such as 2025, or null")
    reasoning = entry.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, bool):
        raise bad("reasoning", "true or false (as the paper classifies the model), or null")
    settings = entry.get("settings") or {}
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        raise bad("settings", "a mapping such as {temperature: 1.0, max_tokens: 8192}")
    base_url = text("base_url", required=provider == "openai-compatible")
    if base_url is not None:
        ref = _ENV_REF.match(base_url)
        if ref and os.environ.get(ref.group(1)):
            base_url = os.environ[ref.group(1)]
        elif not ref and not re.match(r"^https?://", base_url):
            raise bad("base_url", "an http(s) URL or ${ENV_VAR}")
    api_key_env = text("api_key_env")
    if api_key_env is not None and not _ENV_NAME.match(api_key_env):
        raise bad("api_key_env", "the name of an environment variable, such as OPENAI_API_KEY")
    replay_dir = text("replay_dir", required=provider == "replay")
    fixture = entry.get("fixture", False)
    if not isinstance(fixture, bool):
        raise bad("fixture", "true or false")
    return ModelSpec(
        key=entry["key"],
        title=text("title") or entry["key"],
        provider=provider,
        api_model=api_model,
        year=year,
        reasoning=reasoning,
        settings=dict(settings),
        base_url=base_url,
        api_key_env=api_key_env,
        price_in_per_mtok=price("price_in_per_mtok"),
        price_out_per_mtok=price("price_out_per_mtok"),
        replay_dir=Path(replay_dir) if replay_dir else None,
        fixture=fixture,
        notes=text("notes") or "",
        parameters=text("parameters") or "",
    )
